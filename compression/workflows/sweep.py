"""Grids of recipes, each compressed and evaluated once, and the Pareto front of the results.

The points run on an executor (``executors.py``: inline, a local pool, Ray) with the same
numbers on each; a journal (``journal.py``) keeps every finished point, so a sweep that stops
resumes where it was.

>>> from compression.io.loading import load_model
>>> frame = sweep(load_model("mlp"), amounts=[0, 0.5], bits=[8])
>>> list(frame.columns[:4])
['scheme', 'amount', 'bits', 'sparsity']
>>> bool(frame["pareto"].any())
True
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Mapping, MutableMapping

import numpy as np
import pandas as pd

from compression.compress import as_recipe, compress
from compression.errors import RecipeError
from compression.evaluation import evaluate
from compression.metrics import METRICS
from compression.model import LoadedModel
from compression.recipe import CALIBRATED_SCHEMES, FLOAT_FORMATS, Recipe
from compression.workflows.executor import Executor
from compression.workflows.executors import running_on
from compression.workflows.journal import Journal, PointKey
from compression.workflows.model_source import ModelSource, fingerprints

SWEEP_SCHEMES = ("linear", "pow2", "kmeans") + FLOAT_FORMATS  # what needs no data: the Trade-offs page's list
# GPTQ and AWQ sweep too, each grid point calibrated on the recipe's rows (the base recipe's
# calibration section, else 128 rows with seed 0).
ACCEPTED_SCHEMES = SWEEP_SCHEMES + CALIBRATED_SCHEMES
NO_QUANTIZATION_BITS = 32  # a "bits" entry of 32 means: prune only, keep float32
SWEEP_TASK = "sweep"  # the task's name in journal keys

Progress = Callable[[int, int, str], None]


def grid_recipes(
    amounts: Iterable[float], bits: Iterable[int], schemes: Iterable[str] = ("linear",), base: Recipe | Mapping | None = None
) -> list[tuple[str, float, int, Recipe]]:
    """(scheme, amount, bits, recipe) for every grid point; the base supplies the other fields.

    Amount 0 drops the prune section and bits 32 the quantize section, so equivalent points
    share one canonical recipe (float formats ignore ``bits`` altogether).
    """
    base_dict = as_recipe(base).to_dict()
    prune_base = base_dict.get("prune", {"method": "magnitude", "scope": "global"})
    quantize_base = base_dict.get("quantize", {"granularity": "per_channel", "symmetric": True})
    points = []
    for scheme in schemes:
        if scheme not in ACCEPTED_SCHEMES:
            raise RecipeError(f"sweep scheme must be one of {', '.join(ACCEPTED_SCHEMES)}; got {scheme!r}.")
        for amount in amounts:
            for bit_width in bits:
                recipe = dict(base_dict)
                recipe.pop("prune", None)
                recipe.pop("quantize", None)
                if amount > 0:
                    prune = {k: v for k, v in prune_base.items() if k not in ("threshold", "n", "m")}
                    if prune.get("method") == "n:m":
                        prune["method"] = "magnitude"
                    recipe["prune"] = {**prune, "amount": amount}
                if scheme in FLOAT_FORMATS:
                    recipe["quantize"] = {"scheme": "float", "format": scheme}
                    bit_width = Recipe.from_dict(recipe).quantize.bits
                elif bit_width != NO_QUANTIZATION_BITS:
                    recipe["quantize"] = {
                        **{k: v for k, v in quantize_base.items() if k not in ("scheme", "format")},
                        "scheme": scheme,
                        "bits": bit_width,
                    }
                points.append((scheme, float(amount), int(bit_width), Recipe.from_dict(recipe)))
    return points


def pareto_mask(sizes: np.ndarray, values: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """True where no other point is at most as large and at least as good, one strictly.

    >>> pareto_mask(np.array([1, 2, 3]), np.array([30.0, 20.0, 25.0]), higher_is_better=False).tolist()
    [True, True, False]
    """
    values = values if higher_is_better else -values  # "better" is larger from here on
    order = np.lexsort((-values, sizes))  # by size ascending, then value descending
    best = -np.inf
    mask = np.zeros(len(sizes), dtype=bool)
    for index in order:
        if values[index] > best:
            mask[index] = True
            best = values[index]
    return mask


def sweep(
    model: LoadedModel | ModelSource,
    amounts: Iterable[float],
    bits: Iterable[int],
    schemes: Iterable[str] = ("linear",),
    base: Recipe | Mapping | None = None,
    *,
    cache: MutableMapping[str, dict[str, Any]] | None = None,
    progress: Progress | None = None,
    executor: Executor | str = "inline",
    journal: Journal | str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Compress and evaluate every grid point; one row each, with a ``pareto`` column.

    Rows are keyed by canonical recipe JSON in ``cache`` (a fresh dict if none is given), so
    an identical configuration is never computed twice, in this call or a later one that
    passes the same cache. ``executor`` runs the points: an ``Executor``, or a name of
    ``executors.EXECUTORS`` made and closed here; ``local`` and ``ray`` load the model in
    each worker, so they take a ``ModelSource`` (``model_source(model, source)``).
    ``journal`` (a path or a ``Journal``) gets every point as it finishes, and the points it
    already holds for this model, data and recipe are taken from it, not computed again.
    ``progress(done, total, recipe JSON)`` is called as points finish, in any order.
    """
    cache = {} if cache is None else cache
    points = grid_recipes(list(amounts), list(bits), list(schemes), base)
    recipes = {recipe.to_json(): recipe for *_, recipe in points}  # one per configuration, in grid order
    keys: dict[str, PointKey] = {}
    if journal is not None:
        journal = journal if isinstance(journal, Journal) else Journal(journal)
        weights, data = (model.weights, model.evaluation) if isinstance(model, ModelSource) else fingerprints(model)
        keys = {text: PointKey(SWEEP_TASK, weights, data, text) for text in recipes}
        recorded = journal.read()
        cache.update({text: recorded[key] for text, key in keys.items() if key in recorded and text not in cache})
    pending = [recipe for text, recipe in recipes.items() if text not in cache]
    done, total = len(recipes) - len(pending), len(recipes)
    if progress is not None:
        progress(done, total, "")
    with running_on(executor) as running:
        for index, measured in running.run(measure_recipe, model, pending):
            text = pending[index].to_json()
            cache[text] = measured
            if journal is not None:
                journal.append(keys[text], measured)
            done += 1
            if progress is not None:
                progress(done, total, text)
    rows = []
    for scheme, amount, bit_width, recipe in points:
        text = recipe.to_json()
        rows.append({"scheme": scheme, "amount": amount, "bits": bit_width, **cache[text], "recipe": text})
    frame = pd.DataFrame(rows).drop_duplicates(subset="recipe", ignore_index=True)
    higher_is_better = METRICS[frame["metric"].iloc[0]].higher_is_better
    frame["pareto"] = pareto_mask(frame["encoded_bytes"].to_numpy(), frame["value"].to_numpy(), higher_is_better)
    return frame


def measure_recipe(model: LoadedModel, recipe: Recipe) -> dict[str, Any]:
    """One grid point: the compression's sizes and the evaluation (a task of the executors)."""
    result = compress(model, recipe)
    evaluation = evaluate(model, result.module)
    report = result.report
    return {
        "sparsity": report.sparsity,
        "dense_fp32_bytes": report.dense_fp32_bytes,
        "encoded_bytes": report.encoded_bytes,
        "file_bytes": report.file_bytes,
        "metric": evaluation.metric,
        "value": evaluation.value,
        "baseline_value": evaluation.baseline_value,
    }
