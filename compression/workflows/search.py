"""Accuracy-budget search: the most pruning whose metric drop stays within a tolerance.

The metric is not monotone in the amount (pruning a little can even help), so a bisection
finds a boundary, not necessarily the last one: the amount returned was measured within
the tolerance, and the next amount on the grid was measured beyond it (``rejected_above``).
Every measurement is kept in ``steps``, with the cut θ it used, so the UI can show the
dynamic threshold as it moves.

>>> from compression.io.loading import load_model
>>> result = search_sparsity(load_model("mlp"), tolerance=0.02, resolution=0.1)
>>> result.amount, result.rejected_above, result.evaluations
(0.6, 0.7, 5)
>>> result.steps[["amount", "accepted"]].to_dict("list")
{'amount': [0.0, 1.0, 0.5, 0.7, 0.6], 'accepted': [True, False, True, False, True]}
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from compression.errors import CompressionError, RecipeError
from compression.metrics import METRICS
from compression.model import LoadedModel
from compression.recipe import PRUNE_SCOPES, Recipe
from compression.workflows.sensitivity import (
    AMOUNT_METHODS,
    Progress,
    allocate_sparsity,
    allocation_recipe,
    measure,
)

STEP_COLUMNS = (
    "step", "amount", "threshold", "value", "drop", "accepted",
    "sparsity", "encoded_bytes", "file_bytes", "thresholds", "recipe",
)


@dataclass(frozen=True, eq=False)
class SearchResult:
    """The amount found, its measurement, and every step the search took.

    ``amount`` is the global amount (the parameter-weighted mean for a per-layer search);
    ``threshold`` the shared cut θ (NaN when layers have cuts of their own); ``drop`` is how
    much worse than the baseline (positive = worse), never above the tolerance: ``tolerance``
    itself, or for perplexity ``tolerance`` × the baseline (a relative tolerance: 0.05 = 5 %); ``rejected_above`` the next grid amount,
    measured beyond the tolerance (None when the top of the grid was accepted).
    ``allocation`` holds the per-layer amounts of a per-layer search.
    """

    amount: float
    threshold: float
    metric: str
    value: float
    baseline_value: float
    drop: float
    tolerance: float
    rejected_above: float | None
    recipe: dict[str, Any]
    steps: pd.DataFrame
    allocation: dict[str, float] | None = None

    @property
    def evaluations(self) -> int:
        """Compressions and evaluations run (cached ones included)."""
        return len(self.steps)


def _check_number(name: str, value: Any, low: float, high: float, allowed: str, low_open: bool = False) -> float:
    valid = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not valid or not (low < value if low_open else low <= value) or value > high:
        raise RecipeError(f"{name} must be {allowed}; got {value!r}.")
    return float(value)


def _grid(resolution: float, top: float) -> list[float]:
    """0, resolution, 2·resolution, … up to ``top``, free of float noise (0.07, not 0.07000000000000001)."""
    count = math.floor(top / resolution + 1e-9)
    return [min(round(k * resolution, 12), top) for k in range(count + 1)]


def _shared_threshold(thresholds: Mapping[str, float]) -> float:
    cuts = {cut for cut in thresholds.values() if not math.isnan(cut)}
    return cuts.pop() if len(cuts) == 1 and all(not math.isnan(cut) for cut in thresholds.values()) else math.nan


def _bisect(
    model: LoadedModel,
    recipe_at: Callable[[float], dict[str, Any]],
    grid: list[float],
    tolerance: float,
    *,
    progress: Progress | None,
    samples: int | None,
    cache: MutableMapping[str, dict[str, Any]] | None,
) -> tuple[int, int | None, list[dict[str, Any]]]:
    """Index of the amount found, index of the rejected amount above it, and the steps.

    Invariant: ``low`` is always a measured, accepted index and ``high`` a measured, rejected
    one, so the amount returned cannot exceed the tolerance whatever the metric's shape.
    """
    cache = {} if cache is None else cache
    top = len(grid) - 1
    total = 2 + math.ceil(math.log2(max(top, 1)))  # amount 0, the top, then halvings
    steps: list[dict[str, Any]] = []

    def accepted(index: int) -> bool:
        if progress is not None:
            progress(len(steps), total, f"amount {grid[index]:g}")
        measured = measure(model, recipe_at(grid[index]), samples=samples, cache=cache)
        within = measured["drop"] <= METRICS[measured["metric"]].allowed_drop(measured["baseline_value"], tolerance)
        steps.append({
            "step": len(steps),
            "amount": grid[index],
            "threshold": _shared_threshold(measured["thresholds"]),
            **{key: measured[key] for key in ("value", "drop")},
            "accepted": within,
            **{key: measured[key] for key in ("sparsity", "encoded_bytes", "file_bytes", "thresholds", "recipe")},
            "metric": measured["metric"],
            "baseline_value": measured["baseline_value"],
        })
        return within

    if not accepted(0):
        first = steps[0]
        raise CompressionError(
            f"without any pruning, the recipe {first['recipe']} already drops the {first['metric']} by "
            f"{first['drop']:.4g}, more than tolerance {tolerance:g}: raise the tolerance or quantize with more bits."
        )
    low, high = 0, None
    if top > 0 and not accepted(top):
        high = top
        while high - low > 1:
            middle = (low + high) // 2
            if accepted(middle):
                low = middle
            else:
                high = middle
    elif top > 0:
        low = top
    if progress is not None:
        progress(total, total, "")
    return low, high, steps


def _result(
    grid: list[float], found: int, rejected: int | None, steps: list[dict[str, Any]], tolerance: float,
    allocation: dict[str, float] | None = None,
) -> SearchResult:
    best = next(step for step in reversed(steps) if step["amount"] == grid[found])
    frame = pd.DataFrame(steps)
    return SearchResult(
        amount=grid[found],
        threshold=best["threshold"],
        metric=best["metric"],
        value=best["value"],
        baseline_value=best["baseline_value"],
        drop=best["drop"],
        tolerance=tolerance,
        rejected_above=None if rejected is None else grid[rejected],
        recipe=json.loads(best["recipe"]),
        steps=frame[list(STEP_COLUMNS)],
        allocation=allocation,
    )


def _check_quantize(quantize: Mapping[str, Any] | None) -> None:
    if quantize is not None:
        Recipe.from_dict({"quantize": quantize})  # names the field, before any compression


def search_sparsity(
    model: LoadedModel,
    *,
    tolerance: float,
    scope: str = "global",
    method: str = "magnitude",
    quantize: Mapping[str, Any] | None = None,
    resolution: float = 0.01,
    progress: Progress | None = None,
    samples: int | None = None,
    cache: MutableMapping[str, dict[str, Any]] | None = None,
) -> SearchResult:
    """The largest amount on a grid of ``resolution`` whose drop stays within ``tolerance``.

    Bisection over amounts 0, resolution, … (about log2(1/resolution) + 2 evaluations), with
    ``quantize`` (a recipe section) applied at every amount. Drops are measured on the
    model's evaluation data (its first ``samples`` rows when given): a tolerance met there
    is met there only. For perplexity the tolerance is relative (0.05: at most 5 % above the
    baseline). Raises CompressionError when ``quantize`` alone exceeds the tolerance.
    ``progress`` and ``cache`` work as in ``sweep``.
    """
    tolerance = _check_number("tolerance", tolerance, 0.0, math.inf, "a finite number >= 0")
    resolution = _check_number("resolution", resolution, 0.0, 0.5, "a number in (0, 0.5]", low_open=True)
    if scope not in PRUNE_SCOPES:
        raise RecipeError(f"scope must be one of {', '.join(map(repr, PRUNE_SCOPES))}; got {scope!r}.")
    if method not in AMOUNT_METHODS:
        raise RecipeError(f"method must be one of {', '.join(map(repr, AMOUNT_METHODS))}; got {method!r}.")
    _check_quantize(quantize)

    def recipe_at(amount: float) -> dict[str, Any]:
        recipe: dict[str, Any] = {"prune": {"method": method, "amount": amount, "scope": scope}} if amount > 0 else {}
        if quantize is not None:
            recipe["quantize"] = dict(quantize)
        return recipe

    grid = _grid(resolution, 1.0)
    found, rejected, steps = _bisect(
        model, recipe_at, grid, tolerance, progress=progress, samples=samples, cache=cache
    )
    return _result(grid, found, rejected, steps, tolerance)


def search_layerwise(
    model: LoadedModel,
    sensitivity_frame: pd.DataFrame,
    *,
    tolerance: float,
    method: str = "magnitude",
    quantize: Mapping[str, Any] | None = None,
    resolution: float = 0.01,
    max_amount: float = 1.0,
    progress: Progress | None = None,
    samples: int | None = None,
    cache: MutableMapping[str, dict[str, Any]] | None = None,
) -> SearchResult:
    """As ``search_sparsity``, over the global budget that ``allocate_sparsity`` spreads by layer.

    Each step allocates a global amount by ``sensitivity_frame``'s curves (robust layers get
    more) and measures the recipe of per-layer overrides; ``result.allocation`` and
    ``result.recipe`` are those of the amount found. Layers the frame does not name are
    pruned by the global amount itself.
    """
    tolerance = _check_number("tolerance", tolerance, 0.0, math.inf, "a finite number >= 0")
    resolution = _check_number("resolution", resolution, 0.0, 0.5, "a number in (0, 0.5]", low_open=True)
    max_amount = _check_number("max_amount", max_amount, 0.0, 1.0, "a number in (0, 1]", low_open=True)
    if method not in AMOUNT_METHODS:
        raise RecipeError(f"method must be one of {', '.join(map(repr, AMOUNT_METHODS))}; got {method!r}.")
    _check_quantize(quantize)
    allocations: dict[float, dict[str, float]] = {}

    def recipe_at(amount: float) -> dict[str, Any]:
        allocations[amount] = allocate_sparsity(sensitivity_frame, amount, max_amount=max_amount)
        return allocation_recipe(allocations[amount], amount, method=method, quantize=quantize)

    allocate_sparsity(sensitivity_frame, 0.0, max_amount=max_amount)  # a bad frame fails before any compression
    grid = _grid(resolution, max_amount)
    found, rejected, steps = _bisect(
        model, recipe_at, grid, tolerance, progress=progress, samples=samples, cache=cache
    )
    return _result(grid, found, rejected, steps, tolerance, allocation=allocations[grid[found]])
