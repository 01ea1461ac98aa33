"""One measured point of a sensitivity scan or a tolerance search, and those points on an executor.

``measure`` compresses with a recipe and evaluates; ``PointMeasurement`` is the same as an
executor task (``executor.py``), scoring a recipe that compresses one layer alone with a
``LayerScorer`` where it can; ``measure_missing`` runs the recipes that a cache and a journal
lack on an executor and keeps what comes back.

>>> from compression.io.loading import load_model
>>> row = measure(load_model("mlp"), {"quantize": {"bits": 4}})
>>> row["metric"], row["drop"] < 0.01
('accuracy', True)
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import Any

from compression.compress import CompressionReport, compress
from compression.evaluation import Evaluation, evaluate, evaluation_subset, require_evaluation
from compression.model import LoadedModel
from compression.packing import PackedModel
from compression.recipe import Recipe
from compression.workflows.executor import Executor, Task
from compression.workflows.journal import Journal, PointKey
from compression.workflows.layer_scoring import LayerScorer
from compression.workflows.model_source import ModelSource, evaluation_fingerprint, fingerprints, loaded_model

_SCORER_KEY = "measurement.layer_scorer"  # in a worker's LoadedModel.cache, per ``samples``


def measure(
    model: LoadedModel,
    recipe: Recipe | Mapping[str, Any],
    *,
    samples: int | None = None,
    cache: MutableMapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Compress with ``recipe``, evaluate, and return the figures a search or a table needs.

    ``drop`` is baseline minus value (positive: worse), rounded to 12 decimals so that a drop
    of 9 in 450 compares equal to a tolerance of 0.02 (the float sum gives 0.020000000000000018).
    ``thresholds`` maps each compressed layer to its cut θ (NaN where the method has none or
    the cut is ±inf). Results are kept in ``cache`` under ``cache_key``.
    """
    recipe = recipe if isinstance(recipe, Recipe) else Recipe.from_dict(recipe)
    require_evaluation(model)  # no data: say so before compressing, not after
    key = cache_key(recipe, samples)
    if cache is not None and key in cache:
        return cache[key]
    result = compress(model, recipe)
    row = measured_row(recipe, result.report, result.packed, evaluate(model, result.module, samples=samples))
    if cache is not None:
        cache[key] = row
    return row


def cache_key(recipe: Recipe, samples: int | None) -> str:
    """What a measurement is kept under: the canonical recipe JSON and the rows scored."""
    return f"{recipe.to_json()} samples={samples}"


def measured_row(
    recipe: Recipe, report: CompressionReport, packed: PackedModel, evaluation: Evaluation
) -> dict[str, Any]:
    """``measure``'s figures: the compressed layers' from ``report``, the file's from ``packed``."""
    return {
        "sparsity": report.sparsity,
        "zeros": sum(layer.zeros for layer in report.layers),
        "thresholds": {layer.name: _finite_or_nan(layer.threshold) for layer in report.layers},
        "encoded_bytes": packed.encoded_bytes,
        "file_bytes": packed.file_bytes,
        "metric": evaluation.metric,
        "value": evaluation.value,
        "baseline_value": evaluation.baseline_value,
        "drop": round(evaluation.drop, 12),
        "recipe": recipe.to_json(),
    }


def _finite_or_nan(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) else math.nan


class PointMeasurement:
    """An executor task: a recipe's row as ``measure`` gives it (on the first ``samples`` rows).

    With ``fast``, a recipe that compresses a single layer is scored by a ``LayerScorer``
    (the same figures up to float rounding, for a fraction of the work). Its set-up costs two
    passes over the evaluation data, so it is built once: in this process once per task object
    (one scan; the object is not shared between threads), in a pool's worker once per process
    and model, kept in that worker's own model's cache. The scorer never travels: a pickled task
    leaves it behind, and the worker's copy of the task uses the worker's scorer.
    """

    def __init__(self, samples: int | None = None, fast: bool = False) -> None:
        self.samples = samples
        self.fast = fast
        self._scorer: LayerScorer | None = None
        self._in_worker = False

    def __getstate__(self) -> dict[str, Any]:
        return {"samples": self.samples, "fast": self.fast}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)
        self._in_worker = True

    def __call__(self, model: LoadedModel, recipe: Recipe) -> dict[str, Any]:
        layer = only_layer(model, recipe) if self.fast else None
        if layer is not None:
            scorer = self._scorer_for(model)
            if scorer.handles(layer, recipe):
                point = scorer.measure(layer, recipe)
                return measured_row(recipe, point.report, point.packed, point.evaluation)
        return measure(model, recipe, samples=self.samples)

    def _scorer_for(self, model: LoadedModel) -> LayerScorer:
        if self._in_worker:  # a worker runs one task at a time, on a model only it holds
            key = f"{_SCORER_KEY}.samples={self.samples}"
            if key not in model.cache:
                model.cache[key] = LayerScorer(model, self.samples)
            return model.cache[key]
        if self._scorer is None or self._scorer.model is not model:
            self._scorer = LayerScorer(model, self.samples)
        return self._scorer


def only_layer(model: LoadedModel, recipe: Recipe) -> str | None:
    """The one parameter ``recipe`` compresses in ``model`` (``single_layer_recipe``'s), else None.

    >>> from compression.io.loading import load_model
    >>> only_layer(load_model("mlp"), Recipe.from_dict({"exclude": ["fc1.weight", "fc3.weight"]}))
    'fc2.weight'
    """
    selected = None
    for name, tensor in model.module.state_dict().items():
        if tensor.is_floating_point() and tensor.numel() and recipe.selects(name, name in model.layer_types):
            if selected is not None:
                return None
            selected = name
    return selected


def scored_fingerprints(model: LoadedModel | ModelSource, samples: int | None) -> tuple[str, str]:
    """(weights, evaluation data) fingerprints for a journal's keys: the data's are those of the
    rows scored, the first ``samples`` when given."""
    loaded = loaded_model(model) if isinstance(model, ModelSource) else model
    weights, data = fingerprints(loaded)
    if samples is not None:
        data = evaluation_fingerprint(evaluation_subset(require_evaluation(loaded), samples))
    return weights, data


def measure_missing(
    running: Executor,
    task: Task,
    model: LoadedModel | ModelSource,
    recipes: Sequence[Recipe],
    *,
    samples: int | None,
    cache: MutableMapping[str, dict[str, Any]],
    journal: Journal | None = None,
    task_name: str = "",
) -> Iterator[str]:
    """Fill ``cache`` with a row for each recipe, yielding each ``cache_key`` as its row arrives.

    Rows the cache holds are not yielded; rows ``journal`` holds (points ``task_name`` measured
    on this model and data) come first, then the others as ``running`` finishes them, each
    appended to the journal as it comes. Each distinct recipe runs once.
    """
    wanted = {cache_key(recipe, samples): recipe for recipe in recipes if cache_key(recipe, samples) not in cache}
    points: dict[str, PointKey] = {}
    if journal is not None:
        weights, data = scored_fingerprints(model, samples)
        points = {key: PointKey(task_name, weights, data, recipe.to_json()) for key, recipe in wanted.items()}
        recorded = journal.read()
        for key, point in points.items():
            if point in recorded:
                cache[key] = recorded[point]
                del wanted[key]
                yield key
    pending = list(wanted.items())
    for index, row in running.run(task, model, [recipe for _, recipe in pending]):
        key = pending[index][0]
        cache[key] = row
        if journal is not None:
            journal.append(points[key], row)
        yield key
