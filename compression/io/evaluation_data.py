"""Evaluation data for a loaded model: a user's .npz file checked against the model, or seeded
random inputs shaped like the model's example inputs (text and image files:
``compression.io.data_files``).

A data file is an ``.npz`` (``numpy.savez``) holding ``x``, the inputs (one row per sample),
and optionally ``y``, integer class labels; text models may add ``attention_mask``. A model
with several inputs takes one array per input, named after it (``compression.io.input_arrays``).
With labels the metric is accuracy; without, it is fidelity to the uncompressed model.

>>> import numpy as np  # doctest: +SKIP
>>> np.savez("digits.npz", x=x_test.numpy(), y=y_test.numpy())  # doctest: +SKIP
"""
from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from compression.display_text import DisplayText
from compression.errors import CompressionError, DataError
from compression.evaluation import model_outputs
from compression.metrics import ACCURACY, AGREEMENT, COSINE, METRICS
from compression.io.image_data import ImageProtocol
from compression.io.input_arrays import input_rows
from compression.io.text_data import TextEvaluation
from compression.model import EvaluationData
from compression.model_inputs import ModelInput
from compression.io.safety import DEFAULT_MAX_FILE_BYTES, inspect_npz

NPZ_KEYS = ("x", "y", "attention_mask")
RANDOM_SAMPLES = 256
RANDOM_SEED = 0
DEFAULT_BATCH_SIZE = 256


@dataclass(frozen=True)
class InputSpec:
    """What the model's evaluation inputs must look like.

    ``example`` holds the model's example inputs (empty where the format records none);
    ``vocab_size`` is set for token-id models, whose inputs are ``(input_ids, attention_mask)``;
    ``fidelity_metric`` is the metric without labels (None: chosen from the output shape);
    ``text`` scores documents by the model's family protocol (a text model with a tokenizer);
    ``images`` prepares labelled images for it (a Hugging Face image classifier).
    """

    example: tuple[torch.Tensor, ...] = ()
    batch_size: int = DEFAULT_BATCH_SIZE
    fidelity_metric: str | None = None
    vocab_size: int | None = None
    text: TextEvaluation | None = None
    images: ImageProtocol | None = None

    @property
    def takes_tokens(self) -> bool:
        return self.vocab_size is not None or (
            len(self.example) == 2 and not self.example[0].is_floating_point()
        )


def evaluation_from_npz(
    path: str | os.PathLike,
    module: nn.Module,
    spec: InputSpec,
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    inputs: Sequence[ModelInput] = (),
) -> EvaluationData:
    """Read a user's .npz and check it against the model: shapes, lengths, labels, values.

    ``inputs`` are the model's input specs: a model with several takes arrays named after them.
    """
    path = Path(path)
    named = tuple(inputs) if len(inputs) > 1 else ()
    arrays = _read_npz(path, max_file_bytes, tuple(spec.name for spec in named))
    if "x" in arrays or not named:
        x = arrays["x"]
        tensors = _inputs(x, arrays.get("attention_mask"), spec, path.name)
        given = f"x (per-sample shape {x.shape[1:]}, dtype {x.dtype})"
    else:
        tensors = input_rows(arrays, named, path.name)
        given = f"its inputs ({', '.join(f'{s.name} {arrays[s.name].shape}' for s in named)})"
    count = len(tensors[0])
    try:
        first = model_outputs(module, tuple(t[: spec.batch_size] for t in tensors), spec.batch_size)
    except (RuntimeError, ValueError, TypeError, IndexError, AssertionError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"{path.name}: the model could not run on {given}: {reason}") from None
    if "y" in arrays:
        labels = _labels(arrays["y"], count, first, path.name)
        description = DisplayText("labelled_samples", f"{count} samples with labels from {path.name}",
                                  count=count, file=path.name)
        return EvaluationData(tensors, labels, ACCURACY, description, spec.batch_size)
    metric = spec.fidelity_metric or _fidelity_metric(first)
    description = DisplayText("unlabelled_samples", f"{count} samples from {path.name} (no labels: fidelity to the "
                              "original model)", count=count, file=path.name)
    return EvaluationData(tensors, None, metric, description, spec.batch_size)


def random_evaluation(
    module: nn.Module, spec: InputSpec, samples: int = RANDOM_SAMPLES
) -> EvaluationData:
    """Seeded random inputs like the example's: normal floats, integers in the example's range.

    The sample count is rounded up to whole batches. Without labels the metric is fidelity.
    """
    generator = torch.Generator().manual_seed(RANDOM_SEED)
    count = -(-samples // spec.batch_size) * spec.batch_size
    inputs = tuple(_random_like(example, count, generator) for example in spec.example)
    first = model_outputs(module, tuple(t[: spec.batch_size] for t in inputs), spec.batch_size)
    metric = spec.fidelity_metric or _fidelity_metric(first)
    description = DisplayText("random_inputs", f"{count} seeded random inputs shaped like the example input (no labels: "
                              "fidelity to the original model; give a data file for accuracy on real data)", count=count)
    return EvaluationData(inputs, None, metric, description, spec.batch_size)


def _fidelity_metric(outputs: torch.Tensor) -> str:
    """Top-1 agreement for class scores ``[N, classes]``; cosine similarity for the rest.

    Rows of unit length are embeddings, not class scores; for one score per row, cosine
    similarity is the fraction of rows whose sign is unchanged.
    """
    if outputs.ndim != 2 or outputs.shape[1] < 2:
        return COSINE
    unit_rows = torch.allclose(outputs.norm(dim=1), torch.ones(len(outputs)), atol=1e-3)
    return COSINE if unit_rows else AGREEMENT


def check_metric(metric: str | None) -> None:
    """Refuse a metric name the evaluator does not know (None means the data's default)."""
    if metric is not None and metric not in METRICS:
        allowed = ", ".join(repr(m) for m in METRICS)
        raise CompressionError(f"metric must be one of {allowed} or None; got {metric!r}.")


def with_metric(evaluation: EvaluationData | None, metric: str | None) -> EvaluationData | None:
    """The evaluation scored with ``metric`` (checked by ``check_metric``) instead of its default."""
    if metric is None or evaluation is None or metric == evaluation.metric:
        return evaluation
    if METRICS[metric].needs_labels:
        raise DataError(
            f"metric={metric!r} needs labels, and the evaluation data ({evaluation.description}) "
            "has none; give a data file with integer labels 'y'."
        )
    return replace(evaluation, labels=None, metric=metric)


def _read_npz(path: Path, max_file_bytes: int, input_names: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The archive's arrays: ``x`` (or one per name in ``input_names``), ``y``, ``attention_mask``."""
    inspect_npz(path, max_file_bytes=max_file_bytes)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise DataError(
                f"{path.name} holds an object array (pickled Python objects), which is never "
                "loaded because unpickling can run code; save numeric arrays only."
            ) from None
        raise DataError(f"{path.name} is not a readable .npz archive ({error}).") from None
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise DataError(f"{path.name} is not a readable .npz archive ({error}).") from None
    allowed = (*NPZ_KEYS, *input_names)
    unknown = sorted(set(arrays) - set(allowed))
    if unknown:
        raise DataError(
            f"{path.name} holds array(s) {', '.join(map(repr, unknown))}; allowed names are "
            f"{', '.join(map(repr, allowed))}."
        )
    if "x" not in arrays and not input_names:
        raise DataError(f"{path.name} has no array named 'x' (the inputs); it holds {sorted(arrays)}.")
    for name, array in arrays.items():
        _check_array(name, array, path.name, scalar=name in input_names)
    return arrays


def _check_array(name: str, array: np.ndarray, where: str, *, scalar: bool = False) -> None:
    """Numbers, finite, at least one sample (``scalar``: an input that may be a single value)."""
    if array.dtype.kind not in "biuf":
        raise DataError(f"{where}: {name} has dtype {array.dtype}; expected numbers (bool, int or float).")
    if array.size == 0 or (array.ndim == 0 and not scalar):
        raise DataError(f"{where}: {name} is empty (shape {array.shape}); it needs at least one sample.")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise DataError(f"{where}: {name} holds NaN or infinite values.")


def _inputs(
    x: np.ndarray, mask: np.ndarray | None, spec: InputSpec, where: str
) -> tuple[torch.Tensor, ...]:
    if spec.takes_tokens or (not spec.example and mask is not None):
        return _token_inputs(x, mask, spec, where)
    if mask is not None:
        raise DataError(f"{where}: attention_mask is only for text models taking token ids.")
    if len(spec.example) > 1:
        raise DataError(
            f"{where}: the model takes {len(spec.example)} inputs, but a data file supplies one "
            "(x); give one array per input, named after it."
        )
    if spec.example:
        expected = tuple(spec.example[0].shape[1:])
        if x.shape[1:] != expected:
            raise DataError(
                f"{where}: x has per-sample shape {x.shape[1:]} but the model takes {expected} "
                f"(x must be shaped (n, {', '.join(map(str, expected))}))."
            )
        if not spec.example[0].is_floating_point() and x.dtype.kind == "f":
            raise DataError(
                f"{where}: x is {x.dtype} but the model takes integers ({spec.example[0].dtype})."
            )
        return (torch.from_numpy(x).to(spec.example[0].dtype),)
    return (torch.from_numpy(x).to(torch.float32 if x.dtype.kind == "f" else torch.int64),)


def _token_inputs(
    x: np.ndarray, mask: np.ndarray | None, spec: InputSpec, where: str
) -> tuple[torch.Tensor, torch.Tensor]:
    if x.ndim != 2 or x.dtype.kind not in "iu":
        raise DataError(
            f"{where}: x must hold integer token ids shaped (n, sequence_length) for this text "
            f"model; got dtype {x.dtype}, shape {x.shape}."
        )
    high = spec.vocab_size
    if x.min() < 0 or (high is not None and x.max() >= high):
        allowed = f"[0, {high}), the vocabulary" if high is not None else "non-negative"
        raise DataError(f"{where}: x holds token ids from {x.min()} to {x.max()}; they must be {allowed}.")
    if mask is None:
        mask = np.ones_like(x)
    elif mask.shape != x.shape or not np.isin(mask, (0, 1)).all():
        raise DataError(
            f"{where}: attention_mask must hold 0/1 with x's shape {x.shape}; got shape {mask.shape}."
        )
    return torch.from_numpy(x).to(torch.int64), torch.from_numpy(mask).to(torch.int64)


def _labels(y: np.ndarray, count: int, first: torch.Tensor, where: str) -> torch.Tensor:
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(
            f"{where}: y must be a 1-D array of integer class labels; got dtype {y.dtype}, shape {y.shape}."
        )
    if len(y) != count:
        raise DataError(f"{where}: x has {count} samples but y has {len(y)} labels; they must match.")
    if first.ndim != 2:
        raise DataError(
            f"{where}: labels need a classifier giving scores shaped (n, classes); this model "
            f"gives {tuple(first.shape)}. Leave out y to measure fidelity instead."
        )
    classes = first.shape[1]
    if y.min() < 0 or y.max() >= classes:
        raise DataError(
            f"{where}: y holds labels from {y.min()} to {y.max()}, but the model has {classes} "
            f"classes; labels must be integers in [0, {classes})."
        )
    return torch.from_numpy(y).to(torch.int64)


def _random_like(example: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    shape = (count, *example.shape[1:])
    if example.is_floating_point():
        return torch.randn(shape, generator=generator).to(example.dtype)
    if example.dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=generator).bool()
    low, high = int(example.min()), int(example.max()) + 1
    return torch.randint(low, high, shape, generator=generator).to(example.dtype)
