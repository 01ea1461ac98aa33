"""Per-layer sensitivity: how far the metric drops when one layer alone is compressed.

Han et al. (2015), "Learning both weights and connections for efficient neural networks"
(NeurIPS), pruned each layer on its own, read off its accuracy curve, and used the curves to
choose a threshold per layer: robust layers were pruned harder than fragile ones.
``sensitivity`` measures those curves, for pruning amounts and for quantization bit widths;
``allocate_sparsity`` turns the pruning curves into per-layer amounts for one global budget,
and ``allocation_recipe`` writes them as a recipe.

>>> from compression.io.loading import load_model
>>> frame = sensitivity(load_model("mlp"), amounts=[0, 0.5], bits=[4])
>>> frame[["layer", "kind", "level"]].head(3).to_dict("records")  # doctest: +NORMALIZE_WHITESPACE
[{'layer': 'fc1.weight', 'kind': 'prune', 'level': 0.0},
 {'layer': 'fc1.weight', 'kind': 'prune', 'level': 0.5},
 {'layer': 'fc1.weight', 'kind': 'quantize', 'level': 4.0}]
"""
from __future__ import annotations

import glob
import math
import os
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from compression.errors import RecipeError
from compression.evaluation import require_evaluation
from compression.model import LoadedModel
from compression.recipe import CALIBRATED_PRUNE_METHODS, CALIBRATED_SCHEME_BITS, PRUNE_METHODS, SCHEME_BITS, Recipe
from compression.workflows.executor import Executor
from compression.workflows.executors import running_on
from compression.workflows.journal import Journal
from compression.workflows.measurement import PointMeasurement, cache_key, measure_missing
from compression.workflows.model_source import ModelSource, loaded_model
from compression.workflows.sweep import NO_QUANTIZATION_BITS, Progress

Curves = Mapping[str, tuple[Sequence[float], Sequence[float]]]

DEFAULT_AMOUNTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
DEFAULT_BITS = (NO_QUANTIZATION_BITS, 8, 4, 3, 2)
# Those that take an amount; a calibrated one (Wanda, SparseGPT) reads the layer's inputs from
# the original model, as only that layer is compressed (measured by compress and evaluate).
AMOUNT_METHODS = tuple(method for method in PRUNE_METHODS + CALIBRATED_PRUNE_METHODS if method != "n:m")
ALL_SCHEME_BITS = {**SCHEME_BITS, **CALIBRATED_SCHEME_BITS}
SENSITIVITY_TASK = "sensitivity"  # the task's name in journal keys
# Plateau tie-break in allocate_sparsity, in metric units per unit of amount: far below one
# sample of accuracy on any evaluation set, so it only orders layers the curves cannot tell apart.
_TIE_SLOPE = 1e-6


def _layer_pattern(name: str) -> str:
    """A glob pattern that matches exactly this parameter name (``[``, ``*``, ``?`` escaped)."""
    return glob.escape(name)


def single_layer_recipe(
    model: LoadedModel, layer: str, *, prune: Mapping[str, Any] | None = None, quantize: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A recipe that compresses ``layer`` and leaves every other parameter bit for bit as it was.

    Overrides would not do: a parameter that is selected but given no section is still
    re-encoded. Excluding all the others keeps them out of the compression altogether.

    >>> from compression.io.loading import load_model
    >>> single_layer_recipe(load_model("mlp"), "fc2.weight", prune={"amount": 0.5})
    {'prune': {'amount': 0.5}, 'exclude': ['fc1.weight', 'fc3.weight']}
    """
    recipe: dict[str, Any] = {}
    if prune is not None:
        recipe["prune"] = dict(prune)
    if quantize is not None:
        recipe["quantize"] = dict(quantize)
    if layer not in model.compressible:
        recipe["include"] = [_layer_pattern(layer)]
    others = [_layer_pattern(name) for name in model.compressible if name != layer]
    if others:
        recipe["exclude"] = others
    return recipe


def _check_amounts(amounts: Iterable[float], name: str = "amounts") -> list[float]:
    values = list(amounts)
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise RecipeError(f"{name} must be numbers between 0 and 1; got {value!r} in {values!r}.")
    return sorted({float(value) for value in values})


def _check_bits(bits: Iterable[int], scheme: str) -> list[int]:
    if scheme not in ALL_SCHEME_BITS:
        raise RecipeError(f"scheme must be one of {', '.join(map(repr, ALL_SCHEME_BITS))}; got {scheme!r}.")
    low, high = ALL_SCHEME_BITS[scheme]
    values = list(bits)
    for value in values:
        in_range = isinstance(value, int) and (low <= value <= high or value == NO_QUANTIZATION_BITS)
        if isinstance(value, bool) or not in_range:
            raise RecipeError(
                f"bits for scheme {scheme!r} must be integers between {low} and {high}, or "
                f"{NO_QUANTIZATION_BITS} for no quantization; got {value!r} in {values!r}."
            )
    return sorted(set(values), reverse=True)


def _check_layers(model: LoadedModel, layers: Sequence[str] | None) -> list[str]:
    if layers is None:
        return list(model.compressible)
    state = model.module.state_dict()
    for name in layers:
        if name not in state or not state[name].is_floating_point():
            raise RecipeError(
                f"layers must name floating-point parameters of {model.name!r}; got {name!r}. "
                f"LoadedModel.compressible lists the {len(model.compressible)} compressed by default."
            )
    return list(dict.fromkeys(layers))


def sensitivity(
    model: LoadedModel | ModelSource,
    *,
    amounts: Sequence[float] = DEFAULT_AMOUNTS,
    bits: Sequence[int] = DEFAULT_BITS,
    scheme: str = "linear",
    prune_method: str = "magnitude",
    layers: Sequence[str] | None = None,
    progress: Progress | None = None,
    samples: int | None = None,
    cache: MutableMapping[str, dict[str, Any]] | None = None,
    fast: bool = True,
    executor: Executor | str = "inline",
    journal: Journal | str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Compress one layer at a time, at each amount and each bit width, and score the model.

    One row per (layer, kind, level), layers in model order; ``kind`` is ``"prune"`` (level:
    the amount, ascending) or ``"quantize"`` (level: the bits, descending; 32 = float32, the
    layer untouched). Amount 0 and bits 32 are the baseline: their ``drop`` is 0. Columns:
    ``layer``, ``layer_type``, ``parameters``, ``kind``, ``level``, ``metric``, ``value``,
    ``baseline_value``, ``drop`` (baseline − value), ``sparsity`` (of that layer),
    ``model_sparsity`` (its zeros over all compressible weights), ``threshold`` (the layer's
    cut θ, NaN without one), ``encoded_bytes`` (the packed file's payload), ``file_bytes`` (the
    whole packed file) and ``recipe``.

    ``layers`` defaults to the model's compressible weights. ``progress(done, total, label)``
    is called at the start and as points finish, ``label`` naming the first point not finished
    yet (inline: the one about to run; "" at the end); ``cache`` keeps measurements across
    calls (amount 0 and bits 32 share one entry).

    ``fast`` measures each point with a ``LayerScorer`` (the same figures, up to float
    rounding, for a fraction of the work: only the layer is compressed, and only what it can
    change is run); ``fast=False`` compresses and evaluates the whole model at every point, the
    reference the fast way is tested against.

    ``executor`` and ``journal`` work as in ``sweep``: each point is a task of its own, and a
    pool's worker builds its own scorer once and keeps it for every point it is sent; the
    journal's points are keyed by the rows scored (the first ``samples``).
    """
    loaded = loaded_model(model) if isinstance(model, ModelSource) else model
    amount_levels = _check_amounts(amounts)
    bit_levels = _check_bits(bits, scheme)
    if prune_method not in AMOUNT_METHODS:
        raise RecipeError(f"prune_method must be one of {', '.join(map(repr, AMOUNT_METHODS))}; got {prune_method!r}.")
    if not amount_levels and not bit_levels:
        raise RecipeError("sensitivity needs at least one amount or one bit width; got none of either.")
    names = _check_layers(loaded, layers)
    require_evaluation(loaded)  # no data: say so before compressing, not after
    cache = {} if cache is None else cache
    journal = journal if journal is None or isinstance(journal, Journal) else Journal(journal)
    state = loaded.module.state_dict()
    total_weights = sum(state[name].numel() for name in dict.fromkeys([*loaded.compressible, *names]))

    points: list[tuple[str, str, float, Recipe]] = []
    for name in names:
        for amount in amount_levels:
            prune = {"method": prune_method, "amount": amount} if amount > 0 else None
            points.append((name, "prune", amount, Recipe.from_dict(single_layer_recipe(loaded, name, prune=prune))))
        for bit_width in bit_levels:
            quantize = {"scheme": scheme, "bits": bit_width} if bit_width != NO_QUANTIZATION_BITS else None
            recipe = Recipe.from_dict(single_layer_recipe(loaded, name, quantize=quantize))
            points.append((name, "quantize", float(bit_width), recipe))

    keys = [cache_key(recipe, samples) for *_, recipe in points]

    def report() -> None:
        unfinished = [index for index, key in enumerate(keys) if key not in cache]
        name, kind, level, _ = points[unfinished[0]] if unfinished else ("", "", 0.0, None)
        progress(len(keys) - len(unfinished), len(keys), f"{name}: {kind} {level:g}" if unfinished else "")

    if progress is not None:
        report()
    with running_on(executor) as running:
        task = PointMeasurement(samples, fast)
        for _ in measure_missing(running, task, model, [recipe for *_, recipe in points], samples=samples,
                                 cache=cache, journal=journal, task_name=SENSITIVITY_TASK):
            if progress is not None:
                report()
    rows = []
    for (name, kind, level, _), key in zip(points, keys):
        measured = cache[key]
        rows.append({
            "layer": name,
            "layer_type": loaded.layer_types.get(name, "included"),
            "parameters": state[name].numel(),
            "kind": kind,
            "level": level,
            "metric": measured["metric"],
            "value": measured["value"],
            "baseline_value": measured["baseline_value"],
            "drop": measured["drop"],
            "sparsity": measured["sparsity"],
            "model_sparsity": measured["zeros"] / total_weights,
            "threshold": measured["thresholds"].get(name, math.nan),
            "encoded_bytes": measured["encoded_bytes"],
            "file_bytes": measured["file_bytes"],
            "recipe": measured["recipe"],
        })
    return pd.DataFrame(rows)


def _curves_from(
    frame_or_curves: pd.DataFrame | Curves,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], float, dict[str, int]]:
    """(amounts, drops) per layer, the drop assumed at amount 1, and parameters if the frame has them."""
    if isinstance(frame_or_curves, pd.DataFrame):
        frame = frame_or_curves
        missing = {"layer", "kind", "level", "drop", "parameters", "baseline_value"} - set(frame.columns)
        if missing:
            raise RecipeError(
                f"the sensitivity frame lacks column(s) {', '.join(sorted(missing))}; pass sensitivity()'s output."
            )
        prune = frame[frame["kind"] == "prune"]
        if prune.empty:
            raise RecipeError("the sensitivity frame has no prune rows; measure it with at least one amount.")
        curves = {
            str(name): (rows["level"].to_numpy(float), rows["drop"].to_numpy(float))
            for name, rows in prune.groupby("layer", sort=False)
        }
        parameters = {str(name): int(rows["parameters"].iloc[0]) for name, rows in prune.groupby("layer", sort=False)}
        return curves, float(prune["baseline_value"].max()), parameters
    if not isinstance(frame_or_curves, Mapping) or not frame_or_curves:
        raise RecipeError(
            "frame_or_curves must be sensitivity()'s DataFrame or a non-empty mapping of layer to "
            f"(amounts, drops); got {type(frame_or_curves).__name__}."
        )
    curves = {}
    for name, curve in frame_or_curves.items():
        amounts, drops = (np.asarray(part, dtype=float) for part in curve)
        if amounts.shape != drops.shape or amounts.ndim != 1 or amounts.size == 0:
            raise RecipeError(f"curve for {name!r} must be two sequences of equal, non-zero length; got {curve!r}.")
        _check_amounts(amounts.tolist(), f"amounts of {name!r}")
        curves[str(name)] = (amounts, drops)
    return curves, 1.0, {}


def _inverse_curve(amounts: np.ndarray, drops: np.ndarray, full_drop: float) -> tuple[np.ndarray, np.ndarray]:
    """Knots (cost, amount) of the layer's amount as a strictly increasing function of drop.

    The measured drops are read monotone (a running maximum, floored at 0, from drop 0 at
    amount 0 to ``full_drop`` at amount 1 when unmeasured), linearly between knots, and tilted
    by ``_TIE_SLOPE`` so that a flat stretch still inverts to a single amount.
    """
    order = np.argsort(amounts, kind="stable")
    amounts = np.r_[0.0, amounts[order]]
    drops = np.r_[0.0, np.maximum(np.nan_to_num(drops[order], nan=full_drop), 0.0)]
    if amounts[-1] < 1.0:
        amounts, drops = np.r_[amounts, 1.0], np.r_[drops, max(full_drop, drops.max())]
    drops = np.maximum.accumulate(drops)
    keep = np.r_[np.diff(amounts) > 0, True]  # an amount given twice: its last, worst, drop
    amounts, drops = amounts[keep], drops[keep]
    return drops + _TIE_SLOPE * amounts, amounts


def allocate_sparsity(
    frame_or_curves: pd.DataFrame | Curves,
    global_amount: float,
    parameters: Mapping[str, int] | None = None,
    *,
    max_amount: float = 1.0,
) -> dict[str, float]:
    """Per-layer pruning amounts whose parameter-weighted mean is ``global_amount``.

    The rule is equal sensitivity: every layer is pruned up to the same drop d of the metric
    on its own curve, and d is chosen so that the parameters removed add up to the budget. A
    layer whose metric drops less at a given amount therefore gets more pruning, equal curves
    get equal amounts, and amounts grow with the budget. Curves are read monotone (the worst
    drop so far), linearly between measured amounts; beyond the last measured amount the drop
    rises to the whole baseline at amount 1 (1.0 for bare curves). Where curves are flat (no
    measured drop), the amounts grow uniformly until one layer starts to hurt. Amounts above
    ``max_amount`` are clipped and the remainder goes to the other layers.

    The idea is Han et al. (2015)'s: sensitivity per layer sets each layer's threshold. Pure
    numpy on the curves (no evaluation): the mean of the piecewise-linear inverses is itself
    piecewise linear in d, so d is found exactly, in microseconds, on every slider move.

    ``frame_or_curves`` is ``sensitivity()``'s frame (its prune rows) or ``{layer: (amounts,
    drops)}``; ``parameters`` (weights per layer) defaults to the frame's own column.

    >>> curves = {"robust": ([0, 0.5, 0.9], [0, 0, 0.01]), "fragile": ([0, 0.5, 0.9], [0, 0.2, 0.5])}
    >>> allocation = allocate_sparsity(curves, 0.5, {"robust": 100, "fragile": 100})
    >>> {name: round(amount, 3) for name, amount in allocation.items()}
    {'robust': 0.903, 'fragile': 0.097}
    """
    curves, full_drop, frame_parameters = _curves_from(frame_or_curves)
    if isinstance(max_amount, bool) or not isinstance(max_amount, (int, float)) or not 0.0 < max_amount <= 1.0:
        raise RecipeError(f"max_amount must be a number in (0, 1]; got {max_amount!r}.")
    if isinstance(global_amount, bool) or not isinstance(global_amount, (int, float)) or not 0 <= global_amount <= max_amount:
        raise RecipeError(
            f"global_amount must be a number between 0 and max_amount ({max_amount:g}); got {global_amount!r}."
        )
    parameters = frame_parameters if parameters is None else parameters
    missing = [name for name in curves if name not in parameters]
    if missing:
        raise RecipeError(
            f"parameters must give a weight count for every layer; missing {', '.join(map(repr, missing))}."
        )
    counts = np.array([parameters[name] for name in curves], dtype=float)
    if (counts <= 0).any():
        raise RecipeError(f"parameters must be positive counts; got {dict(parameters)!r}.")
    weights = counts / counts.sum()

    knots = [_inverse_curve(amounts, drops, full_drop) for amounts, drops in curves.values()]
    # Every knot of every layer, and where each reaches max_amount: the weighted mean of the
    # clipped inverses is linear between consecutive levels, so interpolation is exact.
    levels = np.unique(np.concatenate(
        [costs for costs, _ in knots] + [np.interp([max_amount], amounts, costs) for costs, amounts in knots]
    ))

    def allocation_at(level: np.ndarray) -> np.ndarray:  # layers × levels
        return np.minimum(np.stack([np.interp(level, costs, amounts) for costs, amounts in knots]), max_amount)

    means = weights @ allocation_at(levels)  # non-decreasing, piecewise linear between the knots
    position = int(np.clip(np.searchsorted(means, global_amount), 1, len(levels) - 1))
    low, high = means[position - 1], means[position]
    fraction = 0.0 if high <= low else min(max((global_amount - low) / (high - low), 0.0), 1.0)
    level = levels[position - 1] + fraction * (levels[position] - levels[position - 1])
    amounts = np.clip(allocation_at(np.array([level]))[:, 0], 0.0, max_amount)
    return {name: float(amount) for name, amount in zip(curves, amounts)}


def allocation_recipe(
    allocation: Mapping[str, float],
    global_amount: float,
    *,
    method: str = "magnitude",
    quantize: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The recipe that prunes each layer by its allocated amount (per-layer overrides).

    ``global_amount`` prunes the compressible layers the allocation does not name. Scope is
    ``layer``: each layer's cut comes from its own amount. Amounts are rounded to 6 decimals.

    >>> allocation_recipe({"fc1.weight": 0.8, "fc2.weight": 0.4}, 0.6)  # doctest: +NORMALIZE_WHITESPACE
    {'prune': {'method': 'magnitude', 'amount': 0.6, 'scope': 'layer'},
     'overrides': {'fc1.weight': {'prune': {'amount': 0.8}}, 'fc2.weight': {'prune': {'amount': 0.4}}}}
    """
    if method not in AMOUNT_METHODS:
        raise RecipeError(f"method must be one of {', '.join(map(repr, AMOUNT_METHODS))}; got {method!r}.")
    recipe: dict[str, Any] = {
        "prune": {"method": method, "amount": round(float(global_amount), 6), "scope": "layer"},
        "overrides": {
            _layer_pattern(name): {"prune": {"amount": round(float(amount), 6)}} for name, amount in allocation.items()
        },
    }
    if quantize is not None:
        recipe["quantize"] = dict(quantize)
    Recipe.from_dict(recipe)  # fail here, naming the field, rather than at compression
    return recipe
