"""Accuracy and fidelity of a (compressed) module on a loaded model's evaluation data.

Accuracy needs labels; the fidelity metrics compare with the uncompressed model, whose
outputs are computed once and kept in ``LoadedModel.cache``:

- top-1 agreement: the fraction of inputs whose arg-max class is unchanged;
- cosine similarity: the mean cosine between base and compressed output rows, with
  ``extras["nn_agreement"]``, the fraction of inputs whose nearest neighbour in the
  evaluation set (by cosine, excluding itself) is the same under both models.

>>> from compression.io.loading import load_model
>>> evaluate(load_model("mlp")).metric
'accuracy'
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from compression.errors import CompressionError, DataError, ModelLoadError
from compression.model import ACCURACY, AGREEMENT, COSINE, EvaluationData, LoadedModel

NN_AGREEMENT = "nn_agreement"
_BASELINE_KEY = "evaluation.baseline"
_SIMILARITY_ROWS = 1024  # rows of the N x N similarity matrix held at once


@dataclass(frozen=True)
class Evaluation:
    """One score: ``value`` for the module evaluated, ``baseline_value`` for the base model."""

    metric: str
    value: float
    baseline_value: float
    extras: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Baseline:
    outputs: torch.Tensor
    value: float
    neighbours: torch.Tensor | None  # nearest neighbour of each row, for cosine only


def evaluate(model: LoadedModel, module: nn.Module | None = None, *, samples: int | None = None) -> Evaluation:
    """Score ``module`` (default: the base model itself) on ``model``'s evaluation data.

    Deterministic: inference mode, fixed batch order, ``model.evaluation.batch_size`` rows
    per call. ``module`` must take the same inputs and give outputs of the same shape as the
    base module; it is not modified. ``samples`` scores only the first that many rows (a
    quicker, noisier number, for live views of large models).
    """
    data = evaluation_subset(require_evaluation(model), samples)
    baseline = _baseline(model, data)
    if module is None:
        extras = {NN_AGREEMENT: 1.0} if data.metric == COSINE else {}
        return Evaluation(data.metric, baseline.value, baseline.value, extras)
    outputs = model_outputs(module, data.inputs, data.batch_size)
    if outputs.shape != baseline.outputs.shape:
        raise CompressionError(
            f"module gives outputs of shape {tuple(outputs.shape)} but the base model "
            f"{model.name!r} gives {tuple(baseline.outputs.shape)}; compare modules of the same model."
        )
    if data.metric == ACCURACY:
        return Evaluation(ACCURACY, _accuracy(outputs, data.labels), baseline.value)
    if data.metric == AGREEMENT:
        agreement = (_classes(outputs) == _classes(baseline.outputs)).double().mean().item()
        return Evaluation(AGREEMENT, agreement, baseline.value)
    cosine = F.cosine_similarity(_rows(outputs).double(), _rows(baseline.outputs).double(), dim=1)
    cosine = cosine.clamp(-1.0, 1.0)  # rounding can give 1 + 4e-16 for identical rows
    same_neighbour = (_nearest_neighbours(outputs) == baseline.neighbours).double().mean().item()
    return Evaluation(COSINE, cosine.mean().item(), baseline.value, {NN_AGREEMENT: same_neighbour})


def evaluation_subset(data: EvaluationData, samples: int | None) -> EvaluationData:
    """The first ``samples`` rows of ``data`` (all of it when None or larger)."""
    if samples is None or samples >= data.size:
        return data
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise DataError(f"samples must be a positive integer or None; got {samples!r}.")
    return replace(
        data,
        inputs=tuple(tensor[:samples] for tensor in data.inputs),
        labels=None if data.labels is None else data.labels[:samples],
        description=f"the first {samples} of {data.description}",
    )


def require_evaluation(model: LoadedModel) -> EvaluationData:
    """The model's evaluation data, or a DataError saying why there is none and what to give."""
    if model.evaluation is None:
        raise DataError(
            f"{model.name!r} has no evaluation data: a {model.format} file does not record the "
            "shape of its inputs. Give a data file (--data x.npz, an .npz with an array 'x' of "
            "inputs and optionally integer labels 'y')."
        )
    return model.evaluation


def max_output_difference(model: LoadedModel, module: nn.Module, reference: nn.Module | None = None) -> float:
    """The largest |module(x) - reference(x)| over the model's evaluation inputs (reference: the
    base module): how far a rewrite that should change nothing (folding, channel removal) moved."""
    data = require_evaluation(model)
    reference = model.module if reference is None else reference
    ours, theirs = (model_outputs(m, data.inputs, data.batch_size) for m in (module, reference))
    return float((ours - theirs).abs().max())


def model_outputs(module: nn.Module, inputs: tuple[torch.Tensor, ...], batch_size: int) -> torch.Tensor:
    """The module's outputs for every row of ``inputs``, in order, as one float tensor.

    Every call sees exactly ``batch_size`` rows, so programs exported with a static batch run
    unchanged: a short last batch is padded by repeating its rows, and the padding is dropped.
    """
    count = int(inputs[0].shape[0])
    chunks = []
    with torch.inference_mode():
        for start in range(0, count, batch_size):
            batch = tuple(tensor[start : start + batch_size] for tensor in inputs)
            rows = int(batch[0].shape[0])
            if rows < batch_size:
                repeat = torch.arange(batch_size) % rows
                batch = tuple(tensor[repeat] for tensor in batch)
            chunks.append(output_tensor(module(*batch))[:rows].float())
    return torch.cat(chunks)


def output_tensor(output: object) -> torch.Tensor:
    """The tensor to score in what a module returned.

    A tensor as is; a Hugging Face output's ``logits``, or its ``last_hidden_state`` averaged
    over tokens; otherwise the first tensor of a tuple, list or mapping.
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        if isinstance(output.get("logits"), torch.Tensor):
            return output["logits"]
        if isinstance(output.get("last_hidden_state"), torch.Tensor):
            return output["last_hidden_state"].mean(dim=1)
        values = list(output.values())
    elif isinstance(output, (tuple, list)):
        values = list(output)
    else:
        values = []
    if values and isinstance(values[0], torch.Tensor):
        return values[0]
    raise ModelLoadError(
        f"the model returned {type(output).__name__}, which holds no tensor to score; it must "
        "return a tensor, a tuple or mapping whose first value is a tensor, or a Hugging Face "
        "output with logits or last_hidden_state."
    )


def _baseline(model: LoadedModel, data: EvaluationData) -> _Baseline:
    key = f"{_BASELINE_KEY}.{data.size}"
    cached = model.cache.get(key)
    if cached is None:
        outputs = model_outputs(model.module, data.inputs, data.batch_size)
        value = _accuracy(outputs, data.labels) if data.metric == ACCURACY else 1.0
        neighbours = _nearest_neighbours(outputs) if data.metric == COSINE else None
        cached = model.cache[key] = _Baseline(outputs, value, neighbours)
    return cached


def _rows(outputs: torch.Tensor) -> torch.Tensor:
    return outputs.reshape(outputs.shape[0], -1)


def _classes(outputs: torch.Tensor) -> torch.Tensor:
    return _rows(outputs).argmax(dim=1)


def _accuracy(outputs: torch.Tensor, labels: torch.Tensor | None) -> float:
    if labels is None:
        raise DataError("metric 'accuracy' needs labels; give a data file with integer labels 'y'.")
    return (_classes(outputs) == labels).double().mean().item()


def _nearest_neighbours(outputs: torch.Tensor) -> torch.Tensor:
    """Index of each row's most cosine-similar other row, computed in blocks of rows."""
    unit = F.normalize(_rows(outputs).float(), dim=1)
    count = unit.shape[0]
    nearest = torch.empty(count, dtype=torch.long)
    for start in range(0, count, _SIMILARITY_ROWS):
        stop = min(start + _SIMILARITY_ROWS, count)
        similarity = unit[start:stop] @ unit.T
        similarity[torch.arange(stop - start), torch.arange(start, stop)] = -torch.inf
        nearest[start:stop] = similarity.argmax(dim=1)
    return nearest
