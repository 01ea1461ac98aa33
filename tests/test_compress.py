"""Specification of the verb ``compress``: a compressed copy, the input left alone, zeros kept."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import sample_models
from compression.compress import compress
from compression.model import LoadedModel
from compression.recipe import Recipe
from tensor_checks import assert_bitwise_equal, bitwise_copy

SCHEME_EXTREMES = [
    {"scheme": "linear", "bits": bits, "granularity": granularity, "symmetric": symmetric, "group_size": 5}
    for bits in (1, 2, 16)
    for granularity in ("per_tensor", "per_channel", "per_group")
    for symmetric in (True, False)
] + [
    {"scheme": "pow2", "bits": bits, "granularity": granularity}
    for bits in (2, 8)
    for granularity in ("per_tensor", "per_channel")
] + [{"scheme": "kmeans", "bits": bits} for bits in (1, 8)] + [
    {"scheme": "float", "format": name} for name in ("fp16", "bf16", "fp8_e4m3", "fp8_e5m2")
]


def section_id(section: dict) -> str:
    return "-".join(str(value) for value in section.values())


def small_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 9), nn.Linear(9, 4)
    ).eval()


def inputs(seed: int = 0) -> torch.Tensor:
    return torch.randn(5, 2, 6, 6, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def simplenet() -> nn.Module:
    return sample_models.load_trained("simplenet")


# --- the input is never mutated ----------------------------------------------------------


@pytest.mark.parametrize(
    "recipe",
    [
        {"prune": {"amount": 0.9}},
        {"prune": {"method": "structured", "amount": 0.5, "scope": "global"}},
        {"prune": {"method": "n:m"}, "quantize": {"bits": 1}},
        {"quantize": {"scheme": "pow2", "bits": 3}},
        {"quantize": {"scheme": "kmeans", "bits": 2}, "include": ["*.bias", "1.*"]},
        {"quantize": {"scheme": "float", "format": "fp8_e4m3"}, "include": ["*"]},
    ],
    ids=["magnitude", "structured", "n:m-binary", "pow2", "kmeans-include", "fp8-everything"],
)
def test_the_input_model_is_never_mutated(recipe: dict) -> None:
    model = small_model()
    before = bitwise_copy(model.state_dict())
    compress(model, recipe)
    assert_bitwise_equal(model.state_dict(), before)


def test_the_input_models_training_mode_is_left_alone() -> None:
    model = small_model().train()
    result = compress(model, {"quantize": {"bits": 4}})
    assert model.training and not result.module.training


def test_the_compressed_module_does_not_share_weights_with_the_input() -> None:
    model = small_model()
    result = compress(model, {"prune": {"amount": 0.5}})
    with torch.no_grad():
        for parameter in result.module.parameters():
            parameter.fill_(7.0)
    assert not any(bool((tensor == 7.0).all()) for tensor in model.state_dict().values() if tensor.is_floating_point())


def test_a_trained_sample_model_is_not_mutated(simplenet: nn.Module) -> None:
    before = bitwise_copy(simplenet.state_dict())
    compress(simplenet, {"prune": {"amount": 0.8, "scope": "global"}, "quantize": {"scheme": "kmeans", "bits": 3}})
    assert_bitwise_equal(simplenet.state_dict(), before)


# --- the empty recipe --------------------------------------------------------------------


@pytest.mark.parametrize("recipe", [None, {}, "{}", Recipe()], ids=["None", "dict", "json", "Recipe"])
def test_an_empty_recipe_changes_no_output(recipe: object) -> None:
    model = small_model()
    result = compress(model, recipe)
    with torch.no_grad():
        assert torch.equal(result.module(inputs()), model(inputs()))


def test_an_empty_recipe_changes_no_weight(simplenet: nn.Module) -> None:
    result = compress(simplenet, {})
    assert_bitwise_equal(result.module.state_dict(), simplenet.state_dict())


def test_an_empty_recipe_reports_no_sparsity_and_no_error() -> None:
    report = compress(small_model(), {}).report
    assert report.sparsity == 0.0
    assert all(layer.mse == 0.0 and layer.sqnr_db == math.inf for layer in report.layers)


# --- prune, then quantize ----------------------------------------------------------------


@pytest.mark.parametrize("quantize", SCHEME_EXTREMES, ids=section_id)
def test_a_pruned_weight_is_exactly_zero_after_every_quantization_scheme(quantize: dict) -> None:
    model = small_model()
    result = compress(model, {"prune": {"amount": 0.6}, "quantize": quantize})
    compressed = result.module.state_dict()
    for name in ("0.weight", "4.weight", "5.weight"):
        original = model.state_dict()[name]
        pruned = original.abs() < result.report.layer(name).threshold
        assert bool(pruned.any())
        assert compressed[name][pruned].view(torch.int32).eq(0).all(), name  # +0.0, bit for bit


@pytest.mark.parametrize("quantize", SCHEME_EXTREMES, ids=section_id)
def test_pruned_output_channels_stay_zero_after_every_quantization_scheme(quantize: dict) -> None:
    recipe = {"prune": {"method": "structured", "amount": 0.5, "norm": "l1"}, "quantize": quantize}
    weight = compress(small_model(), recipe).module.state_dict()["4.weight"]
    assert int((weight == 0).all(dim=1).sum()) == round(0.5 * 9)


def test_quantizing_a_pruned_model_keeps_its_sparsity_under_kmeans(simplenet: nn.Module) -> None:
    pruned = compress(simplenet, {"prune": {"amount": 0.7, "scope": "global"}}).report.sparsity
    both = compress(simplenet, {"prune": {"amount": 0.7, "scope": "global"}, "quantize": {"scheme": "kmeans", "bits": 4}})
    assert both.report.sparsity == pytest.approx(pruned)


def test_the_compressed_modules_weights_are_the_reports_values() -> None:
    result = compress(small_model(), {"prune": {"amount": 0.4}, "quantize": {"bits": 3}})
    for layer in result.report.layers:
        assert int((result.module.state_dict()[layer.name] == 0).sum()) == layer.zeros


# --- recipes and models accepted ---------------------------------------------------------


def test_a_recipe_as_dict_json_or_recipe_gives_the_same_weights() -> None:
    values = {"prune": {"amount": 0.5}, "quantize": {"scheme": "pow2", "bits": 4}}
    results = [compress(small_model(), recipe) for recipe in (values, Recipe.from_dict(values).to_json(), Recipe.from_dict(values))]
    for other in results[1:]:
        assert_bitwise_equal(other.module.state_dict(), results[0].module.state_dict())


def test_compressing_twice_gives_the_same_weights() -> None:
    recipe = {"prune": {"amount": 0.5, "scope": "global"}, "quantize": {"scheme": "kmeans", "bits": 3}}
    first, second = compress(small_model(), recipe), compress(small_model(), recipe)
    assert_bitwise_equal(first.module.state_dict(), second.module.state_dict())


def test_something_that_is_not_a_module_is_refused() -> None:
    with pytest.raises(TypeError, match="model must be a LoadedModel or a torch.nn.Module; got dict"):
        compress({"weight": torch.zeros(3)}, {})


def test_a_loaded_models_layer_types_set_the_default_compressible_parameters() -> None:
    model = small_model()
    loaded = LoadedModel(
        name="tiny", format="module", module=model, layer_types={"5.weight": "Linear"}, example_inputs=(), evaluation=None
    )
    result = compress(loaded, {"prune": {"amount": 0.5}})
    assert [layer.name for layer in result.report.layers] == ["5.weight"]
    assert result.report.model == "tiny"


def test_the_report_names_each_layers_type_and_scheme() -> None:
    result = compress(small_model(), {"quantize": {"bits": 4}, "include": ["4.bias"]})
    assert [(layer.name, layer.layer_type, layer.scheme, layer.bits) for layer in result.report.layers] == [
        ("0.weight", "Conv2d", "linear_symmetric", 4),
        ("4.weight", "Linear", "linear_symmetric", 4),
        ("4.bias", "included", "linear_symmetric", 4),
        ("5.weight", "Linear", "linear_symmetric", 4),
    ]


def test_the_report_carries_the_canonical_recipe() -> None:
    result = compress(small_model(), '{"prune": {"scope": "layer", "amount": 1}}')
    assert result.report.recipe == {"prune": {"method": "magnitude", "amount": 1.0, "scope": "layer"}}


def test_overrides_apply_per_layer_and_the_last_match_wins() -> None:
    recipe = {
        "quantize": {"bits": 8},
        "overrides": {"*.weight": {"quantize": {"bits": 4}}, "5.*": {"quantize": {"scheme": "float", "format": "bf16"}}},
    }
    report = compress(small_model(), recipe).report
    assert [(layer.scheme, layer.bits) for layer in report.layers] == [
        ("linear_symmetric", 4),
        ("linear_symmetric", 4),
        ("bf16", 16),
    ]


def test_a_pruned_sample_model_still_runs_and_reports_its_sparsity(simplenet: nn.Module) -> None:
    result = compress(simplenet, {"prune": {"amount": 0.5, "scope": "global"}, "quantize": {"bits": 8}})
    batch = torch.zeros(2, *sample_models.input_shape("simplenet"))
    with torch.no_grad():
        assert result.module(batch).shape == (2, 10)
    assert result.report.sparsity == pytest.approx(0.5, abs=1e-3)


def test_8_bit_quantization_barely_moves_a_trained_models_outputs(simplenet: nn.Module) -> None:
    batch = sample_models.digits_split("simplenet").x_test[:64]
    result = compress(simplenet, {"quantize": {"bits": 8}})
    with torch.no_grad():
        agreement = (result.module(batch).argmax(1) == simplenet(batch).argmax(1)).float().mean()
    assert float(agreement) >= 0.98


@pytest.mark.parametrize(("format_name", "non_finite"), [("fp16", 1), ("fp8_e5m2", 1), ("fp8_e4m3", 0), ("bf16", 0)])
def test_the_report_counts_weights_a_float_cast_made_infinite(format_name: str, non_finite: int) -> None:
    layer = nn.Linear(3, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1e5, 0.5, -0.25]]))  # beyond fp16 and e5m2; e4m3 saturates
    report = compress(layer, {"quantize": {"scheme": "float", "format": format_name}}).report
    assert report.layer("weight").non_finite == non_finite


def test_a_torchscript_modules_compressed_copy_holds_the_quantized_weights() -> None:
    torch.manual_seed(0)
    scripted = torch.jit.script(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval())
    original = {name: tensor.clone() for name, tensor in scripted.state_dict().items()}
    result = compress(scripted, {"quantize": {"scheme": "pow2", "bits": 3}})
    compressed = result.module.state_dict()
    assert len(torch.unique(compressed["0.weight"])) <= 2**3 - 1
    assert not torch.equal(compressed["0.weight"], original["0.weight"])
    assert all(torch.equal(original[name], tensor) for name, tensor in scripted.state_dict().items())
