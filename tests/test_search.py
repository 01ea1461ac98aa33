"""Accuracy-budget search: the amount found never exceeds the tolerance, and every step is kept."""
from __future__ import annotations

import json
import math
import random
from collections.abc import Callable

import pandas as pd
import pytest

import compression.workflows.search
from compression.compress import compress
from compression.errors import CompressionError, RecipeError
from compression.evaluation import evaluate
from compression.io.loading import load_model
from compression.model import LoadedModel
from compression.recipe import Recipe
from compression.workflows.executor import Executor
from compression.workflows.search import SearchResult, search_layerwise, search_sparsity
from compression.workflows.sensitivity import sensitivity

TOLERANCES = [0.0, 0.005, 0.02]
ROUNDING = 1e-12  # drops are compared rounded to 12 decimals (9/450 is 0.02)


@pytest.fixture(scope="module")
def mlp() -> LoadedModel:
    return load_model("mlp")


@pytest.fixture(scope="module")
def cache() -> dict:
    return {}  # shared by the searches of this module: the same recipe is measured once


@pytest.fixture(scope="module")
def frame(mlp: LoadedModel, cache: dict) -> pd.DataFrame:
    return sensitivity(mlp, amounts=[0.0, 0.3, 0.6, 0.8, 0.9], bits=[], cache=cache)


def measured_drop(model: LoadedModel, recipe: dict) -> float:
    evaluation = evaluate(model, compress(model, recipe).module)
    return evaluation.baseline_value - evaluation.value


def step_at(result: SearchResult, amount: float) -> pd.Series:
    return result.steps.set_index("amount").loc[amount]


# --- search_sparsity ---------------------------------------------------------------------


@pytest.mark.parametrize("tolerance", TOLERANCES)
def test_the_amount_found_stays_within_the_tolerance_when_measured_again(
    mlp: LoadedModel, cache: dict, tolerance: float
) -> None:
    result = search_sparsity(mlp, tolerance=tolerance, cache=cache)
    assert result.recipe["prune"] == {"method": "magnitude", "amount": result.amount, "scope": "global"}
    assert measured_drop(mlp, result.recipe) <= tolerance + ROUNDING
    assert result.drop <= tolerance


@pytest.mark.parametrize("tolerance", TOLERANCES)
def test_the_next_amount_on_the_grid_was_measured_beyond_the_tolerance(
    mlp: LoadedModel, cache: dict, tolerance: float
) -> None:
    result = search_sparsity(mlp, tolerance=tolerance, cache=cache)
    assert result.rejected_above == pytest.approx(result.amount + 0.01)
    assert step_at(result, result.rejected_above)["drop"] > tolerance
    assert not step_at(result, result.rejected_above)["accepted"]


def test_a_larger_tolerance_never_finds_less_on_the_sample_model(mlp: LoadedModel, cache: dict) -> None:
    amounts = [search_sparsity(mlp, tolerance=tolerance, cache=cache).amount for tolerance in TOLERANCES]
    assert amounts == sorted(amounts) and amounts[0] > 0


def test_a_tolerance_of_one_accepts_the_whole_grid_in_two_evaluations(mlp: LoadedModel) -> None:
    result = search_sparsity(mlp, tolerance=1.0)
    assert (result.amount, result.rejected_above, result.evaluations) == (1.0, None, 2)


def test_the_search_takes_about_log2_of_the_grid_evaluations(mlp: LoadedModel, cache: dict) -> None:
    result = search_sparsity(mlp, tolerance=0.005, cache=cache)
    assert result.evaluations <= 2 + math.ceil(math.log2(100))
    assert result.steps["step"].tolist() == list(range(result.evaluations))


def test_every_step_records_the_cut_that_magnitude_pruning_used(mlp: LoadedModel, cache: dict) -> None:
    result = search_sparsity(mlp, tolerance=0.005, cache=cache)
    inside = result.steps[(result.steps["amount"] > 0) & (result.steps["amount"] < 1)]
    assert len(inside) >= 5
    for _, step in inside.iterrows():
        report = compress(mlp, json.loads(step["recipe"])).report
        assert step["threshold"] == report.layers[0].threshold
        assert step["thresholds"] == {layer.name: layer.threshold for layer in report.layers}
    ordered = inside.sort_values("amount")
    assert ordered["threshold"].is_monotonic_increasing  # θ rises with the amount


def test_the_result_carries_the_cut_of_the_amount_found(mlp: LoadedModel, cache: dict) -> None:
    result = search_sparsity(mlp, tolerance=0.02, cache=cache)
    assert result.threshold == step_at(result, result.amount)["threshold"] > 0
    assert result.value == pytest.approx(result.baseline_value - result.drop, abs=ROUNDING)


def test_amount_zero_and_one_have_no_finite_cut(mlp: LoadedModel, cache: dict) -> None:
    steps = search_sparsity(mlp, tolerance=0.005, cache=cache).steps.set_index("amount")
    assert math.isnan(steps.loc[0.0, "threshold"]) and math.isnan(steps.loc[1.0, "threshold"])


def test_layer_scope_gives_each_layer_its_own_cut(mlp: LoadedModel) -> None:
    result = search_sparsity(mlp, tolerance=0.02, scope="layer", resolution=0.1)
    assert result.recipe["prune"]["scope"] == "layer"
    assert math.isnan(result.threshold)
    cuts = step_at(result, result.amount)["thresholds"]
    assert len(set(cuts.values())) == 3


def test_a_coarser_resolution_searches_a_coarser_grid(mlp: LoadedModel) -> None:
    result = search_sparsity(mlp, tolerance=0.02, resolution=0.1)
    assert set(result.steps["amount"]) <= {round(k / 10, 1) for k in range(11)}


def test_quantize_is_applied_at_every_step(mlp: LoadedModel) -> None:
    quantize = {"scheme": "linear", "bits": 4}
    result = search_sparsity(mlp, tolerance=0.02, quantize=quantize, resolution=0.1)
    for recipe in result.steps["recipe"]:
        assert json.loads(recipe)["quantize"]["bits"] == 4
    assert measured_drop(mlp, result.recipe) <= 0.02 + ROUNDING


def test_quantization_that_alone_exceeds_the_tolerance_is_refused(mlp: LoadedModel) -> None:
    message = r"without any pruning, the recipe .* already drops the accuracy by 0\.\d+, more than tolerance 0"
    with pytest.raises(CompressionError, match=message):
        search_sparsity(mlp, tolerance=0.0, quantize={"scheme": "linear", "bits": 1})


def test_samples_measures_on_the_first_rows_only(mlp: LoadedModel) -> None:
    result = search_sparsity(mlp, tolerance=0.02, resolution=0.1, samples=100)
    assert result.baseline_value == evaluate(mlp, samples=100).value


def test_progress_counts_up_to_its_total(mlp: LoadedModel) -> None:
    calls = []
    result = search_sparsity(mlp, tolerance=0.02, resolution=0.1, progress=lambda *call: calls.append(call))
    total = calls[0][1]
    assert [done for done, _, _ in calls[:-1]] == list(range(result.evaluations))
    assert calls[-1] == (total, total, "") and result.evaluations <= total


class InProcess(Executor):
    """The inline executor, claiming ``workers``: the search measures that many amounts a round."""

    def __init__(self, workers: int) -> None:
        self.workers = workers


def fake_measure(drop_at: Callable[[float], float]) -> Callable[..., dict]:
    """``measure`` for a metric whose drop at each amount is ``drop_at(amount)``."""

    def measured(model: LoadedModel, recipe: Recipe, **_: object) -> dict:
        amount = recipe.prune.amount if recipe.prune is not None else 0.0
        drop = drop_at(amount)
        return {
            "thresholds": {}, "value": 0.9 - drop, "baseline_value": 0.9, "drop": drop, "metric": "accuracy",
            "sparsity": amount, "encoded_bytes": 0, "file_bytes": 0, "recipe": recipe.to_json(),
        }

    return measured


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("seed", range(20))
def test_whatever_the_metrics_shape_the_amount_returned_was_measured_within_the_tolerance(
    mlp: LoadedModel, monkeypatch: pytest.MonkeyPatch, seed: int, workers: int
) -> None:
    drops = random.Random(seed)
    noisy: dict[float, float] = {}

    def drop_at(amount: float) -> float:
        return noisy.setdefault(amount, 0.0 if amount == 0 else drops.choice([-0.01, 0.0, 0.004, 0.02]))

    monkeypatch.setattr(compression.workflows.search, "measure", fake_measure(drop_at))
    result = search_sparsity(mlp, tolerance=0.005, executor=InProcess(workers))
    assert noisy[result.amount] <= 0.005
    assert result.rejected_above is None or noisy[result.rejected_above] > 0.005
    assert result.rejected_above in (None, round(result.amount + 0.01, 2))  # the next amount on the grid


def test_where_the_metric_falls_with_the_amount_more_workers_find_bisections_amount_in_fewer_rounds(
    mlp: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compression.workflows.search, "measure", fake_measure(lambda amount: round(amount / 10, 12)))
    results = [search_sparsity(mlp, tolerance=0.0425, executor=InProcess(workers)) for workers in (1, 2, 3, 5)]
    assert [(result.amount, result.rejected_above) for result in results] == [(0.42, 0.43)] * 4
    assert [result.rounds for result in results] == [9, 6, 4, 3]  # the first round: 0, the top and k − 2 between


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"tolerance": -0.01}, r"tolerance must be a finite number >= 0; got -0.01"),
        ({"tolerance": math.nan}, r"tolerance must be a finite number >= 0; got nan"),
        ({"tolerance": True}, r"tolerance must be a finite number >= 0; got True"),
        ({"resolution": 0}, r"resolution must be a number in \(0, 0.5\]; got 0"),
        ({"resolution": 0.6}, r"resolution must be a number in \(0, 0.5\]; got 0.6"),
        ({"scope": "model"}, r"scope must be one of 'layer', 'global'; got 'model'"),
        ({"method": "n:m"}, r"method must be one of 'magnitude', 'random', 'structured', 'wanda', 'sparsegpt'; got 'n:m'"),
        ({"quantize": {"bits": 99}}, r"quantize.bits must be an integer between 1 and 16; got 99"),
    ],
    ids=["negative", "nan", "bool", "resolution-0", "resolution-coarse", "scope", "n:m", "quantize-bits"],
)
def test_bad_arguments_are_refused_before_any_compression(mlp: LoadedModel, arguments: dict, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        search_sparsity(mlp, **{"tolerance": 0.01, **arguments})


# --- search_layerwise --------------------------------------------------------------------


@pytest.mark.parametrize("tolerance", [0.005, 0.02])
def test_the_per_layer_recipe_found_stays_within_the_tolerance(
    mlp: LoadedModel, frame: pd.DataFrame, cache: dict, tolerance: float
) -> None:
    result = search_layerwise(mlp, frame, tolerance=tolerance, cache=cache)
    assert measured_drop(mlp, result.recipe) <= tolerance + ROUNDING
    assert step_at(result, result.rejected_above)["drop"] > tolerance


def test_the_per_layer_search_returns_the_allocation_of_the_amount_found(
    mlp: LoadedModel, frame: pd.DataFrame, cache: dict
) -> None:
    result = search_layerwise(mlp, frame, tolerance=0.02, cache=cache)
    parameters = frame.groupby("layer")["parameters"].first()
    mean = sum(result.allocation[name] * parameters[name] for name in result.allocation) / parameters.sum()
    assert mean == pytest.approx(result.amount, abs=1e-6)
    overrides = {name: {"prune": {"amount": round(amount, 6)}} for name, amount in result.allocation.items()}
    assert result.recipe["overrides"] == overrides
    assert math.isnan(result.threshold)


def test_the_per_layer_search_keeps_every_layer_under_max_amount(mlp: LoadedModel, frame: pd.DataFrame) -> None:
    result = search_layerwise(mlp, frame, tolerance=1.0, max_amount=0.9)
    assert result.amount == 0.9
    assert all(amount <= 0.9 for amount in result.allocation.values())


def test_the_per_layer_search_refuses_a_frame_without_prune_rows(mlp: LoadedModel, frame: pd.DataFrame) -> None:
    with pytest.raises(RecipeError, match="has no prune rows"):
        search_layerwise(mlp, frame.iloc[0:0], tolerance=0.01)
