"""A (compressed) module's score on a loaded model's evaluation data, by the data's metric.

The base model's summary (``compression.metrics``) is computed once and kept in
``LoadedModel.cache``; a compressed module is scored against it:

- accuracy (needs labels) and top-1 agreement for classifiers;
- cosine similarity for embeddings, with ``extras["nn_agreement"]``, the fraction of inputs
  whose nearest neighbour in the evaluation set is the same under both models;
- perplexity of the next token for language models (lower is better), with
  ``extras["next_token_agreement"]``; next-token agreement alone without targets;
- output cosine for any other graph: every output compared row by row, with the largest
  relative error in ``extras["relative_error"]``.

>>> from compression.io.loading import load_model
>>> evaluate(load_model("mlp")).metric
'accuracy'
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import nn

from compression.display_text import DisplayText
from compression.errors import CompressionError, DataError
from compression.metrics import METRICS, Metric, Summary, metric, output_tensor, output_tensors
from compression.model import EvaluationData, LoadedModel
from compression.model_inputs import scoring_refusal

_BASELINE_KEY = "evaluation.baseline"


@dataclass(frozen=True)
class Evaluation:
    """One score: ``value`` for the module evaluated, ``baseline_value`` for the base model."""

    metric: str
    value: float
    baseline_value: float
    extras: dict[str, float] = field(default_factory=dict)

    @property
    def drop(self) -> float:
        """How much worse than the base model: positive = worse, whichever way the metric points."""
        return METRICS[self.metric].drop(self.baseline_value, self.value)


@dataclass(frozen=True)
class _Baseline:
    summary: Summary
    shape: tuple[int, ...]  # of the scored output, over all rows
    value: float


def evaluate(model: LoadedModel, module: nn.Module | None = None, *, samples: int | None = None) -> Evaluation:
    """Score ``module`` (default: the base model itself) on ``model``'s evaluation data.

    Deterministic: inference mode, fixed batch order, ``model.evaluation.batch_size`` rows
    per call. ``module`` must take the same inputs and give outputs of the same shape as the
    base module; it is not modified. ``samples`` scores only the first that many rows (a
    quicker, noisier number, for live views of large models).
    """
    data = evaluation_subset(require_evaluation(model), samples)
    scorer = metric(data.metric)
    baseline = _baseline(model, data, scorer)
    if module is None:
        return Evaluation(data.metric, baseline.value, baseline.value, dict(scorer.baseline_extras))
    summary, shape = summarize(module, data, scorer)
    if shape != baseline.shape:
        raise CompressionError(
            f"module gives outputs of shape {shape} but the base model {model.name!r} gives "
            f"{baseline.shape}; compare modules of the same model."
        )
    value, extras = scorer.score(summary, baseline.summary, data.labels)
    return Evaluation(data.metric, value, baseline.value, extras)


def summarize(module: nn.Module, data: EvaluationData, scorer: Metric) -> tuple[Summary, tuple]:
    """The metric's summary of ``module``'s outputs on every row of ``data``, batch by batch,
    and the shape of the scored output over all rows (what two modules must agree on; a tuple
    of shapes for a metric that reads every output of a module giving several)."""
    parts: dict[str, list[torch.Tensor]] = {}
    row_shapes: tuple[tuple[int, ...], ...] = ((),)
    for start, rows, output in _batch_outputs(module, data.inputs, data.batch_size):
        labels = None if data.labels is None else data.labels[start : start + rows]
        if labels is not None and rows < data.batch_size:  # padded like the inputs (see _batch_outputs)
            labels = labels[torch.arange(data.batch_size) % rows]
        scored = output_tensors(output) if scorer.every_output else (output_tensor(output),)
        row_shapes = tuple(tuple(tensor.shape[1:]) for tensor in scored)
        for key, tensor in scorer.summarize(output, labels).items():
            parts.setdefault(key, []).append(tensor[:rows])
    shapes = tuple((data.size, *row_shape) for row_shape in row_shapes)
    return {key: torch.cat(tensors) for key, tensors in parts.items()}, shapes[0] if len(shapes) == 1 else shapes


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
        description=DisplayText("first_rows", f"the first {samples} of {data.description}",
                                samples=samples, data=data.description),
    )


def require_evaluation(model: LoadedModel) -> EvaluationData:
    """The model's evaluation data, or a DataError saying why there is none and what to give."""
    if model.evaluation is None:
        refusal = scoring_refusal(model.name, model.input_specs)
        if refusal is not None:
            raise DataError(refusal)
        raise DataError(
            f"{model.name!r} has no evaluation data: a {model.format} file does not record the "
            "shape of its inputs. Give its input sizes (--input-shape [NAME=]1,3,32,32, the batch "
            "first) or a data file (--data x.npz, an .npz with an array 'x' of inputs and optionally "
            "integer labels 'y')."
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
    """The module's outputs for every row of ``inputs``, in order, as one float tensor."""
    return torch.cat([output_tensor(output)[:rows].float() for _, rows, output in _batch_outputs(module, inputs, batch_size)])


def every_output(
    module: nn.Module, inputs: tuple[torch.Tensor, ...], batch_size: int
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Every tensor the module returns (``output_tensors``) for every row of ``inputs``, each
    joined over the batches: one tensor for a module of one output, else a tuple."""
    batches = [tuple(tensor[:rows] for tensor in output_tensors(output))
               for _, rows, output in _batch_outputs(module, inputs, batch_size)]
    joined = tuple(torch.cat(parts) for parts in zip(*batches))
    return joined[0] if len(joined) == 1 else joined


def _batch_outputs(module: nn.Module, inputs: tuple[torch.Tensor, ...], batch_size: int):
    """``(start, rows, output)`` for each batch of ``inputs``, in order.

    Every call sees exactly ``batch_size`` rows, so programs exported with a static batch run
    unchanged: a short last batch is padded by repeating its rows (``rows`` says how many of
    the output's rows are real).
    """
    count = int(inputs[0].shape[0])
    with torch.inference_mode():
        for start in range(0, count, batch_size):
            batch = tuple(tensor[start : start + batch_size] for tensor in inputs)
            rows = int(batch[0].shape[0])
            if rows < batch_size:
                repeat = torch.arange(batch_size) % rows
                batch = tuple(tensor[repeat] for tensor in batch)
            yield start, rows, module(*batch)


def _baseline(model: LoadedModel, data: EvaluationData, scorer: Metric) -> _Baseline:
    key = f"{_BASELINE_KEY}.{data.metric}.{data.size}"
    cached = model.cache.get(key)
    if cached is None:
        summary, shape = summarize(model.module, data, scorer)
        cached = model.cache[key] = _Baseline(summary, shape, scorer.baseline(summary, data.labels))
    return cached
