"""Grids of recipes, each compressed and evaluated once, and the Pareto front of the results.

>>> from compression.io.loading import load_model
>>> frame = sweep(load_model("mlp"), amounts=[0, 0.5], bits=[8])
>>> list(frame.columns[:4])
['scheme', 'amount', 'bits', 'sparsity']
>>> bool(frame["pareto"].any())
True
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, MutableMapping

import numpy as np
import pandas as pd

from compression.compress import as_recipe, compress
from compression.errors import RecipeError
from compression.evaluation import evaluate
from compression.metrics import METRICS
from compression.model import LoadedModel
from compression.recipe import CALIBRATED_SCHEMES, FLOAT_FORMATS, Recipe

SWEEP_SCHEMES = ("linear", "pow2", "kmeans") + FLOAT_FORMATS  # what needs no data: the Trade-offs page's list
# GPTQ and AWQ sweep too, each grid point calibrated on the recipe's rows (the base recipe's
# calibration section, else 128 rows with seed 0).
ACCEPTED_SCHEMES = SWEEP_SCHEMES + CALIBRATED_SCHEMES
NO_QUANTIZATION_BITS = 32  # a "bits" entry of 32 means: prune only, keep float32

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
    model: LoadedModel,
    amounts: Iterable[float],
    bits: Iterable[int],
    schemes: Iterable[str] = ("linear",),
    base: Recipe | Mapping | None = None,
    *,
    cache: MutableMapping[str, dict[str, Any]] | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Compress and evaluate every grid point; one row each, with a ``pareto`` column.

    Rows are keyed by canonical recipe JSON in ``cache`` (a fresh dict if none is given), so
    an identical configuration is never computed twice, in this call or a later one that
    passes the same cache.
    """
    cache = {} if cache is None else cache
    points = grid_recipes(list(amounts), list(bits), list(schemes), base)
    rows = []
    for done, (scheme, amount, bit_width, recipe) in enumerate(points):
        key = recipe.to_json()
        if key not in cache:
            if progress is not None:
                progress(done, len(points), key)
            cache[key] = _measure(model, recipe)
        rows.append({"scheme": scheme, "amount": amount, "bits": bit_width, **cache[key], "recipe": key})
    if progress is not None:
        progress(len(points), len(points), "")
    frame = pd.DataFrame(rows).drop_duplicates(subset="recipe", ignore_index=True)
    higher_is_better = METRICS[frame["metric"].iloc[0]].higher_is_better
    frame["pareto"] = pareto_mask(frame["encoded_bytes"].to_numpy(), frame["value"].to_numpy(), higher_is_better)
    return frame


def _measure(model: LoadedModel, recipe: Recipe) -> dict[str, Any]:
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
