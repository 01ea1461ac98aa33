"""Accuracy-budget search: the most pruning whose metric drop stays within a tolerance.

The metric is not monotone in the amount (pruning a little can even help), so a bisection
finds a boundary, not necessarily the last one: the amount returned was measured within
the tolerance, and the next amount on the grid was measured beyond it (``rejected_above``).
Every measurement is kept in ``steps``, with the cut θ it used, so the UI can show the
dynamic threshold as it moves. On an executor with k workers each round measures k amounts
at once (a k-ary search: log_{k+1} rounds instead of log_2); where the metric falls with the
amount, it finds the same boundary as bisection.

>>> from compression.io.loading import load_model
>>> result = search_sparsity(load_model("mlp"), tolerance=0.02, resolution=0.1)
>>> result.amount, result.rejected_above, result.evaluations
(0.6, 0.7, 5)
>>> result.steps[["amount", "accepted"]].to_dict("list")
{'amount': [0.0, 1.0, 0.5, 0.7, 0.6], 'accepted': [True, False, True, False, True]}
"""
from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from compression.errors import CompressionError, RecipeError
from compression.evaluation import require_evaluation
from compression.metrics import METRICS
from compression.model import LoadedModel
from compression.recipe import PRUNE_SCOPES, Recipe
from compression.workflows.executor import Executor
from compression.workflows.executors import running_on
from compression.workflows.measurement import cache_key, measure, measure_missing
from compression.workflows.model_source import ModelSource, loaded_model
from compression.workflows.sensitivity import AMOUNT_METHODS, Progress, allocate_sparsity, allocation_recipe

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
    ``allocation`` holds the per-layer amounts of a per-layer search. ``rounds``: rounds of
    measurements, each of k amounts at once on an executor of k workers (bisection: one each).
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
    rounds: int = 0

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


def _splits(k: int, low: int, high: int) -> list[int]:
    """The ``k`` inner grid indices that split (low, high) into k + 1 near-equal parts (fewer
    where the bracket holds fewer); for k = 1 bisection's middle.

    >>> _splits(1, 0, 100), _splits(3, 0, 100), _splits(4, 10, 13)
    ([50], [25, 50, 75], [11, 12])
    """
    return sorted({low + (high - low) * part // (k + 1) for part in range(1, k + 1)} - {low, high})


def _rounds_at_most(k: int, span: int) -> int:
    """Rounds of ``_splits`` that narrow a bracket of ``span`` grid steps to one: each leaves at
    most ceil(span / (k + 1)).

    >>> _rounds_at_most(1, 100), _rounds_at_most(2, 100), _rounds_at_most(4, 100)
    (7, 5, 3)
    """
    rounds = 0
    while span > 1:
        span, rounds = -(-span // (k + 1)), rounds + 1
    return rounds


def _bracket(accepted: Mapping[int, bool]) -> tuple[int, int | None]:
    """(low, high): the largest accepted index, and the smallest rejected one above it (None
    where none was measured). Every index measured above ``high`` was rejected too."""
    low = max(index for index, within in accepted.items() if within)
    above = [index for index, within in accepted.items() if not within and index > low]
    return low, min(above) if above else None


def _k_ary_search(
    running: Executor,
    model: LoadedModel | ModelSource,
    recipe_at: Callable[[float], dict[str, Any]],
    grid: list[float],
    tolerance: float,
    *,
    progress: Progress | None,
    samples: int | None,
    cache: MutableMapping[str, dict[str, Any]] | None,
) -> tuple[int, int | None, list[dict[str, Any]], int]:
    """Index of the amount found, index of the rejected amount above it, the steps, the rounds.

    Each round measures ``running.workers`` = k amounts at once: first 0 and the top (and k − 2
    amounts between them), then the k amounts that split the bracket into k + 1 parts, about
    log_{k+1}(grid) rounds in all; k = 1 is bisection. Invariant: ``low`` is always a measured,
    accepted index and ``high`` a measured, rejected one, so the amount returned cannot exceed
    the tolerance whatever the metric's shape.
    """
    cache = {} if cache is None else cache
    k = running.workers
    top = len(grid) - 1
    opening = [0] if k == 1 or top == 0 else sorted({0, top, *_splits(k - 2, 0, top)})
    total = len(opening) + (k == 1 and top > 0) + k * _rounds_at_most(k, top)
    steps: list[dict[str, Any]] = []
    accepted: dict[int, bool] = {}
    task = functools.partial(measure, samples=samples)

    def measure_round(indices: list[int]) -> None:
        if progress is not None:
            progress(len(steps), total, ", ".join(f"amount {grid[index]:g}" for index in indices))
        recipes = [Recipe.from_dict(recipe_at(grid[index])) for index in indices]
        for _ in measure_missing(running, task, model, recipes, samples=samples, cache=cache):
            pass
        for index, recipe in zip(indices, recipes):
            measured = cache[cache_key(recipe, samples)]
            within = measured["drop"] <= METRICS[measured["metric"]].allowed_drop(measured["baseline_value"], tolerance)
            accepted[index] = within
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
        rounds.append(indices)

    rounds: list[list[int]] = []
    measure_round(opening)
    if not accepted[0]:
        first = steps[0]
        raise CompressionError(
            f"without any pruning, the recipe {first['recipe']} already drops the {first['metric']} by "
            f"{first['drop']:.4g}, more than tolerance {tolerance:g}: raise the tolerance or quantize with more bits."
        )
    if top > 0 and top not in accepted:
        measure_round([top])
    low, high = _bracket(accepted)
    while high is not None and high - low > 1:
        measure_round(_splits(k, low, high))
        low, high = _bracket(accepted)
    if progress is not None:
        progress(total, total, "")
    return low, high, steps, len(rounds)


def _search(
    model: LoadedModel | ModelSource,
    recipe_at: Callable[[float], dict[str, Any]],
    grid: list[float],
    tolerance: float,
    *,
    executor: Executor | str,
    progress: Progress | None,
    samples: int | None,
    cache: MutableMapping[str, dict[str, Any]] | None,
) -> tuple[int, int | None, list[dict[str, Any]], int]:
    """``_k_ary_search`` on ``executor``, once the model is known to have evaluation data."""
    require_evaluation(loaded_model(model) if isinstance(model, ModelSource) else model)
    with running_on(executor) as running:
        return _k_ary_search(running, model, recipe_at, grid, tolerance, progress=progress, samples=samples,
                             cache=cache)


def _result(
    grid: list[float], found: int, rejected: int | None, steps: list[dict[str, Any]], rounds: int,
    tolerance: float, allocation: dict[str, float] | None = None,
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
        rounds=rounds,
    )


def _check_quantize(quantize: Mapping[str, Any] | None) -> None:
    if quantize is not None:
        Recipe.from_dict({"quantize": quantize})  # names the field, before any compression


def search_sparsity(
    model: LoadedModel | ModelSource,
    *,
    tolerance: float,
    scope: str = "global",
    method: str = "magnitude",
    quantize: Mapping[str, Any] | None = None,
    resolution: float = 0.01,
    progress: Progress | None = None,
    samples: int | None = None,
    cache: MutableMapping[str, dict[str, Any]] | None = None,
    executor: Executor | str = "inline",
) -> SearchResult:
    """The largest amount on a grid of ``resolution`` whose drop stays within ``tolerance``.

    Bisection over amounts 0, resolution, … (about log2(1/resolution) + 2 evaluations), with
    ``quantize`` (a recipe section) applied at every amount. Drops are measured on the
    model's evaluation data (its first ``samples`` rows when given): a tolerance met there
    is met there only. For perplexity the tolerance is relative (0.05: at most 5 % above the
    baseline). Raises CompressionError when ``quantize`` alone exceeds the tolerance.
    ``progress`` and ``cache`` work as in ``sweep``; ``progress`` is told at the start of
    each round. ``executor`` as in ``sweep``: with k workers, k amounts per round (k-ary search).
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
    found, rejected, steps, rounds = _search(
        model, recipe_at, grid, tolerance, executor=executor, progress=progress, samples=samples, cache=cache
    )
    return _result(grid, found, rejected, steps, rounds, tolerance)


def search_layerwise(
    model: LoadedModel | ModelSource,
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
    executor: Executor | str = "inline",
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
    found, rejected, steps, rounds = _search(
        model, recipe_at, grid, tolerance, executor=executor, progress=progress, samples=samples, cache=cache
    )
    return _result(grid, found, rejected, steps, rounds, tolerance, allocation=allocations[grid[found]])
