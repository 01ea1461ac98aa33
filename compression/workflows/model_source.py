"""A model named by where it comes from, so that a worker process loads it itself.

The local and Ray executors send this, never the module: a few hundred bytes per task instead
of the weights pickled each time. A process loads a source once and keeps it; a worker then
checks the fingerprints the driver measured, so every process evaluates the same weights on
the same rows, or says which differ (another file at that path on another machine).

>>> from compression.io.loading import load_model
>>> model = load_model("mlp")
>>> source = model_source(model, "mlp")
>>> loaded_model(source) is model  # this process loaded it already
True
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compression.calibration import calibration_fingerprint
from compression.errors import ModelLoadError
from compression.io import zoo
from compression.io.loading import load_model
from compression.model import EvaluationData, LoadedModel, weights_fingerprint

_FINGERPRINTS_KEY = "model_source.fingerprints"  # in LoadedModel.cache: hashing 90 MB costs 0.2 s


@dataclass(frozen=True)
class ModelSource:
    """``load_model``'s arguments and the fingerprints of what they gave in the driver.

    ``source`` is a zoo name or an absolute path (``data`` too), so it means the same in any
    working directory; on several machines the file must lie at that path on each.
    ``options`` are ``load_model``'s keywords (metric, family, input_shapes, limits).
    """

    source: str
    data: str | None
    weights: str  # weights_fingerprint of the module
    evaluation: str  # evaluation_fingerprint of the evaluation data
    options: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> tuple[str, str | None, str, str]:
        return self.source, self.data, self.weights, self.evaluation


def evaluation_fingerprint(data: EvaluationData | None) -> str:
    """The first 16 hex digits of a SHA-256 over the metric, the batch size, the inputs and
    the labels: equal fingerprints mean the same evaluation, row for row.

    >>> import torch
    >>> rows = EvaluationData((torch.zeros(2, 3),), None, "output_cosine", "zeros")
    >>> evaluation_fingerprint(rows) == evaluation_fingerprint(rows), evaluation_fingerprint(None)
    (True, 'none')
    """
    if data is None:
        return "none"
    rows = calibration_fingerprint(data.inputs + (() if data.labels is None else (data.labels,)))
    return hashlib.sha256(f"{data.metric}\0{data.batch_size}\0{rows}".encode()).hexdigest()[:16]


def fingerprints(model: LoadedModel) -> tuple[str, str]:
    """(weights, evaluation data) fingerprints of ``model``, computed once per model."""
    if _FINGERPRINTS_KEY not in model.cache:
        model.cache[_FINGERPRINTS_KEY] = (weights_fingerprint(model.module), evaluation_fingerprint(model.evaluation))
    return model.cache[_FINGERPRINTS_KEY]


# One model per process: a worker serves one sweep's model; a new source replaces it.
_loaded: dict[tuple, LoadedModel] = {}


def model_source(
    model: LoadedModel, source: str | os.PathLike, data: str | os.PathLike | None = None, **options: Any
) -> ModelSource:
    """Where ``model`` came from: ``load_model(source, data, **options)`` gave it.

    The model is kept as this process's copy of the source, so an inline run uses it as is.
    """
    weights, evaluation = fingerprints(model)
    named = ModelSource(_absolute(source, zoo_name=True), None if data is None else _absolute(data),
                        weights, evaluation, {name: value for name, value in options.items() if value is not None})
    _loaded.clear()
    _loaded[named.key] = model
    return named


def loaded_model(source: ModelSource) -> LoadedModel:
    """The model ``source`` names, loaded once per process and checked against its fingerprints."""
    if source.key not in _loaded:
        model = load_model(source.source, source.data, **source.options)
        weights, evaluation = fingerprints(model)
        if (weights, evaluation) != (source.weights, source.evaluation):
            what = "weights" if weights != source.weights else "evaluation data"
            raise ModelLoadError(
                f"{source.source} loaded on this machine has other {what} (fingerprints {weights}, {evaluation}) "
                f"than the driver's ({source.weights}, {source.evaluation}): give every machine the same files."
            )
        _loaded.clear()
        _loaded[source.key] = model
    return _loaded[source.key]


def _absolute(path: str | os.PathLike, zoo_name: bool = False) -> str:
    if zoo_name and str(path) in zoo.zoo_names():
        return str(path)
    return str(Path(path).resolve())
