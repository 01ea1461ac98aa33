"""Per-layer sensitivity curves, the sparsity they allocate, and the recipe that applies it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from compression.compress import compress
from compression.errors import DataError, RecipeError
from compression.evaluation import evaluate
from compression.io.loading import load_model
from compression.model import LoadedModel
from compression.workflows.sensitivity import (
    allocate_sparsity,
    allocation_recipe,
    sensitivity,
    single_layer_recipe,
)

AMOUNTS = [0.0, 0.5, 0.9]
BITS = [32, 4]
LAYERS = ["fc1.weight", "fc2.weight", "fc3.weight"]


@pytest.fixture(scope="module")
def mlp() -> LoadedModel:
    return load_model("mlp")


@pytest.fixture(scope="module")
def frame(mlp: LoadedModel) -> pd.DataFrame:
    return sensitivity(mlp, amounts=AMOUNTS, bits=BITS)


def assert_bitwise_equal(first: torch.Tensor, second: torch.Tensor) -> None:
    assert torch.equal(first.view(torch.int32), second.view(torch.int32))


def weighted_mean(allocation: dict[str, float], parameters: dict[str, int]) -> float:
    return sum(allocation[name] * parameters[name] for name in allocation) / sum(parameters[name] for name in allocation)


# --- the table ---------------------------------------------------------------------------


def test_there_is_one_row_per_layer_kind_and_level_in_model_order(frame: pd.DataFrame) -> None:
    assert list(zip(frame["layer"], frame["kind"], frame["level"])) == [
        (layer, kind, float(level))
        for layer in LAYERS
        for kind, levels in (("prune", AMOUNTS), ("quantize", BITS))
        for level in levels
    ]


def test_amounts_come_ascending_and_bits_descending_whatever_the_order_given(mlp: LoadedModel) -> None:
    frame = sensitivity(mlp, amounts=[0.5, 0.0, 0.5], bits=[4, 32], layers=["fc3.weight"])
    assert frame["level"].tolist() == [0.0, 0.5, 32.0, 4.0]


def test_amount_zero_and_float32_are_the_baseline_with_no_drop(frame: pd.DataFrame) -> None:
    baseline = frame[(frame["level"] == 0.0) | (frame["level"] == 32.0)]
    assert len(baseline) == 2 * len(LAYERS)
    assert (baseline["drop"] == 0.0).all()
    assert (baseline["value"] == baseline["baseline_value"]).all()


def test_drop_is_the_baseline_minus_the_value(frame: pd.DataFrame) -> None:
    assert np.allclose(frame["drop"], frame["baseline_value"] - frame["value"], atol=1e-12)
    assert (frame["metric"] == "accuracy").all()


def test_a_prune_row_reports_that_layers_sparsity_and_cut(mlp: LoadedModel, frame: pd.DataFrame) -> None:
    row = frame[(frame["layer"] == "fc2.weight") & (frame["kind"] == "prune") & (frame["level"] == 0.5)].iloc[0]
    weight = mlp.module.state_dict()["fc2.weight"]
    assert row["sparsity"] == pytest.approx(0.5, abs=1 / weight.numel())
    assert row["threshold"] == pytest.approx(float(weight.abs().flatten().kthvalue(weight.numel() // 2 + 1).values))
    total = sum(mlp.module.state_dict()[name].numel() for name in LAYERS)
    assert row["model_sparsity"] == pytest.approx(row["sparsity"] * weight.numel() / total)


def test_a_quantize_row_has_no_cut_and_its_layers_payload_shrinks(frame: pd.DataFrame) -> None:
    rows = frame[(frame["layer"] == "fc1.weight") & (frame["kind"] == "quantize")].set_index("level")
    assert rows["threshold"].isna().all()
    assert rows.loc[4.0, "encoded_bytes"] < rows.loc[32.0, "encoded_bytes"]


@pytest.mark.parametrize("layer", LAYERS)
def test_compressing_one_layer_leaves_every_other_weight_bit_identical(
    mlp: LoadedModel, frame: pd.DataFrame, layer: str
) -> None:
    row = frame[(frame["layer"] == layer) & (frame["level"] == 0.9)].iloc[0]
    result = compress(mlp, row["recipe"])
    assert [report.name for report in result.report.layers] == [layer]
    original = mlp.module.state_dict()
    for name, tensor in result.module.state_dict().items():
        if name == layer:
            assert not torch.equal(tensor, original[name])
        else:
            assert_bitwise_equal(tensor, original[name])


def test_a_parameter_outside_the_default_set_can_be_measured_alone(mlp: LoadedModel) -> None:
    frame = sensitivity(mlp, amounts=[0.5], bits=[], layers=["fc1.bias"])
    assert frame[["layer", "layer_type", "parameters"]].values.tolist() == [["fc1.bias", "included", 256]]
    result = compress(mlp, single_layer_recipe(mlp, "fc1.bias", prune={"amount": 0.5}))
    assert [report.name for report in result.report.layers] == ["fc1.bias"]
    assert_bitwise_equal(result.module.state_dict()["fc1.weight"], mlp.module.state_dict()["fc1.weight"])


def test_samples_scores_only_the_first_rows(mlp: LoadedModel) -> None:
    frame = sensitivity(mlp, amounts=[0.0], bits=[], layers=["fc3.weight"], samples=100)
    assert frame["baseline_value"].iloc[0] == evaluate(mlp, samples=100).value


def test_a_model_without_evaluation_data_is_refused_before_any_compression(mlp: LoadedModel) -> None:
    bare = LoadedModel("bare", "module", mlp.module, dict(mlp.layer_types), (), None)
    with pytest.raises(DataError, match="'bare' has no evaluation data"):
        sensitivity(bare, amounts=[0.5], bits=[])


def test_progress_is_told_before_each_point_and_once_at_the_end(mlp: LoadedModel) -> None:
    calls = []
    sensitivity(mlp, amounts=[0.0, 0.5], bits=[4], layers=["fc3.weight"], progress=lambda *call: calls.append(call))
    assert [(done, total) for done, total, _ in calls] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert calls[1][2] == "fc3.weight: prune 0.5" and calls[-1][2] == ""


def test_the_cache_measures_amount_zero_and_float32_once(mlp: LoadedModel) -> None:
    cache: dict = {}
    first = sensitivity(mlp, amounts=AMOUNTS, bits=BITS, cache=cache)
    assert len(cache) == len(LAYERS) * (len(AMOUNTS) + len(BITS) - 1)
    second = sensitivity(mlp, amounts=AMOUNTS, bits=BITS, cache=cache)
    pd.testing.assert_frame_equal(first, second)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"amounts": [0.5, 1.5]}, r"amounts must be numbers between 0 and 1; got 1.5"),
        ({"amounts": [True]}, r"amounts must be numbers between 0 and 1; got True"),
        ({"bits": [0]}, r"bits for scheme 'linear' must be integers between 1 and 16, or 32 for no quantization; got 0"),
        ({"bits": [1], "scheme": "pow2"}, r"bits for scheme 'pow2' must be integers between 2 and 8"),
        ({"scheme": "float"}, r"scheme must be one of 'linear', 'pow2', 'kmeans', 'gptq', 'awq'; got 'float'"),
        ({"prune_method": "n:m"}, r"prune_method must be one of 'magnitude', 'random', 'structured', 'wanda', 'sparsegpt'; got 'n:m'"),
        ({"layers": ["fc9.weight"]}, r"layers must name floating-point parameters of 'mlp'; got 'fc9.weight'"),
        ({"amounts": [], "bits": []}, r"at least one amount or one bit width"),
    ],
    ids=["amount-above-1", "amount-bool", "bits-0", "pow2-1-bit", "float-scheme", "n:m", "unknown-layer", "nothing"],
)
def test_bad_arguments_are_refused_with_the_value_and_what_is_allowed(
    mlp: LoadedModel, arguments: dict, message: str
) -> None:
    with pytest.raises(RecipeError, match=message):
        sensitivity(mlp, **arguments)


# --- allocate_sparsity -------------------------------------------------------------------

ROBUST = ([0.0, 0.5, 0.9], [0.0, 0.0, 0.01])
FRAGILE = ([0.0, 0.5, 0.9], [0.0, 0.2, 0.5])


@pytest.mark.parametrize("global_amount", [0.05, 0.37, 0.5, 0.8, 0.99])
def test_the_parameter_weighted_mean_is_the_global_amount(frame: pd.DataFrame, global_amount: float) -> None:
    allocation = allocate_sparsity(frame, global_amount)
    parameters = frame.groupby("layer")["parameters"].first().to_dict()
    assert list(allocation) == LAYERS
    assert weighted_mean(allocation, parameters) == pytest.approx(global_amount, abs=1e-6)


def test_a_more_robust_layer_gets_more_pruning() -> None:
    allocation = allocate_sparsity({"robust": ROBUST, "fragile": FRAGILE}, 0.5, {"robust": 100, "fragile": 100})
    assert allocation["robust"] > 0.5 > allocation["fragile"]


def test_equal_curves_get_equal_amounts_whatever_their_sizes() -> None:
    allocation = allocate_sparsity({"a": ROBUST, "b": ROBUST, "c": FRAGILE}, 0.6, {"a": 10, "b": 10_000, "c": 500})
    assert allocation["a"] == pytest.approx(allocation["b"], abs=1e-9)


@pytest.mark.parametrize("global_amount", [0.1, 0.5, 0.55])
def test_amounts_stay_within_bounds_and_the_remainder_goes_elsewhere(global_amount: float) -> None:
    parameters = {"robust": 300, "fragile": 100}
    allocation = allocate_sparsity({"robust": ROBUST, "fragile": FRAGILE}, global_amount, parameters, max_amount=0.6)
    assert all(0.0 <= amount <= 0.6 for amount in allocation.values())
    assert weighted_mean(allocation, parameters) == pytest.approx(global_amount, abs=1e-6)


def test_a_global_amount_of_zero_prunes_nothing_and_of_one_everything(frame: pd.DataFrame) -> None:
    assert set(allocate_sparsity(frame, 0.0).values()) == {0.0}
    assert set(allocate_sparsity(frame, 1.0).values()) == {1.0}


def test_every_layers_amount_grows_with_the_global_amount(frame: pd.DataFrame) -> None:
    allocations = [allocate_sparsity(frame, amount) for amount in np.linspace(0, 1, 21)]
    for layer in LAYERS:
        amounts = [allocation[layer] for allocation in allocations]
        assert amounts == sorted(amounts)


def test_a_layer_whose_drop_dips_is_read_by_its_worst_drop_so_far() -> None:
    dipping = ([0.0, 0.3, 0.6], [0.0, 0.1, 0.0])  # the dip at 0.6 is noise: read as 0.1
    steady = ([0.0, 0.3, 0.6], [0.0, 0.1, 0.1])
    allocation = allocate_sparsity({"dipping": dipping, "steady": steady}, 0.4, {"dipping": 1, "steady": 1})
    assert allocation["dipping"] == pytest.approx(allocation["steady"])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"global_amount": 1.2}, r"global_amount must be a number between 0 and max_amount \(1\); got 1.2"),
        ({"global_amount": 0.7, "max_amount": 0.6}, r"global_amount must be a number between 0 and max_amount \(0.6\)"),
        ({"max_amount": 0}, r"max_amount must be a number in \(0, 1\]; got 0"),
        ({"parameters": {"robust": 1}}, r"missing 'fragile'"),
        ({"parameters": {"robust": 1, "fragile": 0}}, r"parameters must be positive counts"),
    ],
    ids=["above-1", "above-max", "max-0", "missing-count", "zero-count"],
)
def test_bad_allocation_arguments_are_refused(arguments: dict, message: str) -> None:
    values = {"global_amount": 0.5, "parameters": {"robust": 1, "fragile": 1}, **arguments}
    with pytest.raises(RecipeError, match=message):
        allocate_sparsity({"robust": ROBUST, "fragile": FRAGILE}, **values)


def test_a_frame_without_prune_rows_is_refused(frame: pd.DataFrame) -> None:
    with pytest.raises(RecipeError, match="has no prune rows"):
        allocate_sparsity(frame[frame["kind"] == "quantize"], 0.5)


# --- allocation_recipe -------------------------------------------------------------------


def test_the_allocation_recipe_prunes_each_layer_by_its_amount(mlp: LoadedModel, frame: pd.DataFrame) -> None:
    allocation = allocate_sparsity(frame, 0.7)
    report = compress(mlp, allocation_recipe(allocation, 0.7)).report
    for layer in report.layers:
        assert layer.sparsity == pytest.approx(allocation[layer.name], abs=1 / layer.parameters)


def test_the_allocation_recipe_carries_a_quantize_section(mlp: LoadedModel) -> None:
    recipe = allocation_recipe({"fc1.weight": 0.5}, 0.2, quantize={"scheme": "linear", "bits": 4})
    report = compress(mlp, recipe).report
    assert [(layer.name, layer.bits) for layer in report.layers] == [(name, 4) for name in LAYERS]
    # 4-bit rounding may zero a few more weights than pruning did: at least the amount, then
    assert report.layer("fc1.weight").sparsity >= 0.5
    assert report.layer("fc2.weight").sparsity >= 0.2


def test_the_allocation_recipe_refuses_a_method_without_an_amount() -> None:
    with pytest.raises(RecipeError, match="method must be one of 'magnitude', 'random', 'structured', 'wanda', 'sparsegpt'; got 'n:m'"):
        allocation_recipe({"fc1.weight": 0.5}, 0.5, method="n:m")


def test_calibrated_methods_are_measured_one_layer_at_a_time() -> None:
    """Wanda and GPTQ rows: the layer reads the original model's inputs, as it alone is compressed."""
    model = load_model("mlp")
    frame = sensitivity(model, amounts=[0.0, 0.5], bits=[32, 4], prune_method="wanda", scheme="gptq",
                        layers=["fc1.weight"])
    pruned = frame[(frame.kind == "prune") & (frame.level == 0.5)].iloc[0]
    assert pruned.sparsity == pytest.approx(0.5) and '"wanda"' in pruned.recipe
    quantized = frame[(frame.kind == "quantize") & (frame.level == 4)].iloc[0]
    assert '"gptq"' in quantized.recipe and quantized["drop"] < 0.05
