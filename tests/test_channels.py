"""Specification of channel removal: a smaller dense model with the engine-masked model's outputs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compression.graph.channels import ChannelResult, remove_channels
from compression.compress import compress
from compression.errors import CompressionError
from compression.evaluation import evaluate
from compression.io.loading import load_model
from compression.model import LoadedModel
from tensor_checks import assert_bitwise_equal, bitwise_copy, outputs, with_statistics

# The layers each digits model cannot lose channels from: the classifier, and bn_cnn's two
# convolutions whose outputs meet in the residual add.
KEPT_WHOLE = {"simplenet": ("fc1",), "mlp": ("fc3",), "bn_cnn": ("conv2", "conv4", "fc")}
PRUNED = {"simplenet": ("conv1", "conv2"), "mlp": ("fc1", "fc2"), "bn_cnn": ("conv1", "conv3")}
# Parameters after removal, from the channels each layer keeps (round(amount * channels) go).
PARAMETERS = {
    "simplenet": (8490, {0.25: 5633, 0.5: 3000}),
    "mlp": (50826, {0.25: 31978, 0.5: 17226}),
    "bn_cnn": (23738, {0.25: 17918, 0.5: 12098}),
}

_results: dict[tuple, ChannelResult] = {}


@pytest.fixture(scope="module")
def models() -> dict[str, LoadedModel]:
    return {name: load_model(name) for name in KEPT_WHOLE}


def removed(model: LoadedModel, amount: float, **options) -> ChannelResult:
    """remove_channels, memoised across tests: the result is never changed by a test that shares it."""
    key = (model.name, amount, tuple(sorted(options.items())))
    if key not in _results:
        _results[key] = remove_channels(model, amount, **options)
    return _results[key]


def masked(
    model: LoadedModel | nn.Module, amount: float, kept_whole, *, norm: str = "l1", scope: str = "layer"
) -> nn.Module:
    """The engine's structured masks on every layer but ``kept_whole``."""
    recipe = {
        "prune": {"method": "structured", "amount": amount, "norm": norm, "scope": scope},
        "overrides": {f"{layer}.weight": {"prune": None} for layer in kept_whole},
    }
    return compress(model, recipe).module


def images(channels: int = 2, size: int = 8, batch: int = 5) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(1))


# --- the digits models: the masked model's function, in fewer parameters ---------------------


@pytest.mark.parametrize("amount", [0.25, 0.5])
@pytest.mark.parametrize("name", ["simplenet", "mlp", "bn_cnn"])
def test_removed_channels_give_the_masked_models_outputs(models, name: str, amount: float) -> None:
    model = models[name]
    result = removed(model, amount)
    expected = outputs(masked(model, amount, KEPT_WHOLE[name]), model)
    torch.testing.assert_close(outputs(result.module, model), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["simplenet", "mlp", "bn_cnn"])
def test_every_layer_but_those_kept_whole_loses_channels(models, name: str) -> None:
    result = removed(models[name], 0.5)
    assert tuple(result.removed) == PRUNED[name]
    assert tuple(result.skipped) == KEPT_WHOLE[name]
    assert all(result.removed.values())


@pytest.mark.parametrize("amount", [0.25, 0.5])
@pytest.mark.parametrize("name", ["simplenet", "mlp", "bn_cnn"])
def test_the_parameter_count_drops_to_what_the_kept_channels_need(models, name: str, amount: float) -> None:
    result = removed(models[name], amount)
    before, after = PARAMETERS[name]
    assert result.parameters_before == before == sum(p.numel() for p in models[name].module.parameters())
    assert result.parameters_after == after[amount] == sum(p.numel() for p in result.module.parameters())


@pytest.mark.parametrize("name", ["simplenet", "mlp"])
def test_the_smaller_model_scores_the_masked_models_accuracy(models, name: str) -> None:
    model = models[name]
    masked_score = evaluate(model, masked(model, 0.5, KEPT_WHOLE[name]))
    assert evaluate(removed(model, 0.5).as_loaded(model)).value == masked_score.value


@pytest.mark.parametrize("options", [{"scope": "global"}, {"norm": "l2"}], ids=["global", "l2"])
@pytest.mark.parametrize("name", ["simplenet", "mlp"])
def test_global_scope_and_the_l2_norm_also_give_the_masked_models_outputs(models, name: str, options) -> None:
    model = models[name]
    result = removed(model, 0.5, **options)
    expected = outputs(masked(model, 0.5, result.skipped, **options), model)
    torch.testing.assert_close(outputs(result.module, model), expected, rtol=0, atol=1e-5)


def test_with_global_scope_a_layer_entirely_below_the_cut_is_skipped_and_the_cut_recomputed(models) -> None:
    # mlp's fc2 has the smaller weights: pooled with fc1 at 0.5, all its 128 channels fall below
    # the cut. It is left whole, and fc1 alone is ranked: half of its channels go.
    result = removed(models["mlp"], 0.5, scope="global")
    assert "would remove all 128 of its output channels" in result.skipped["fc2"]
    assert len(result.removed["fc1"]) == 128


def test_the_masked_recipe_is_structured_pruning_without_the_skipped_layers(models) -> None:
    assert removed(models["bn_cnn"], 0.5).masked_recipe == {
        "prune": {"method": "structured", "amount": 0.5, "norm": "l1", "scope": "layer"},
        "overrides": {"conv2.weight": {"prune": None}, "conv4.weight": {"prune": None}, "fc.weight": {"prune": None}},
    }


def test_the_weights_shrink_and_the_model_runs_on_a_batch_of_64(models) -> None:
    module = removed(models["simplenet"], 0.5).module
    shapes = {name: tuple(p.shape) for name, p in module.named_parameters() if name.endswith("weight")}
    assert shapes == {"conv1.weight": (5, 1, 5, 5), "conv2.weight": (10, 5, 5, 5), "fc1.weight": (10, 160)}
    with torch.no_grad():
        assert module(torch.randn(64, 1, 28, 28)).shape == (64, 10)


def test_the_removed_indices_are_the_channels_the_engine_masks(models) -> None:
    model = models["simplenet"]
    result = removed(model, 0.5)
    module = masked(model, 0.5, KEPT_WHOLE["simplenet"])
    for layer, indices in result.removed.items():
        zero_rows = (module.get_submodule(layer).weight.flatten(1) == 0).all(dim=1)
        assert indices == torch.nonzero(zero_rows).flatten().tolist()


def test_the_module_is_in_eval_mode(models) -> None:
    assert not any(module.training for module in removed(models["bn_cnn"], 0.5).module.modules())


# --- bn_cnn: the residual add ties channels ---------------------------------------------------


def test_the_layers_tied_by_bn_cnns_residual_add_are_skipped_with_the_reason(models) -> None:
    skipped = removed(models["bn_cnn"], 0.5).skipped
    assert "residual add" in skipped["conv2"] and "residual add" in skipped["conv4"]
    assert "model's output" in skipped["fc"]


def test_the_batchnorms_after_removed_channels_shrink_with_them(models) -> None:
    module = removed(models["bn_cnn"], 0.5).module
    assert module.bn1.num_features == module.conv1.out_channels == module.conv2.in_channels == 8
    assert module.bn1.running_mean.shape == module.bn1.weight.shape == (8,)
    assert module.bn3.num_features == module.conv4.in_channels == 16
    assert module.bn2.num_features == module.bn4.num_features == 32


# --- the input is never changed ---------------------------------------------------------------


def test_the_input_model_is_not_changed() -> None:
    model = load_model("bn_cnn")
    before = bitwise_copy(model.module.state_dict())
    remove_channels(model, 0.5)
    assert_bitwise_equal(model.module.state_dict(), before)
    assert model.module.conv1.out_channels == 16 and type(model.module) is not torch.fx.GraphModule


def test_the_result_does_not_share_tensors_with_the_input(models) -> None:
    model = models["simplenet"]
    before = bitwise_copy(model.module.state_dict())
    result = remove_channels(model, 0.25)
    with torch.no_grad():
        for tensor in result.module.state_dict().values():
            tensor.fill_(7.0)
    assert_bitwise_equal(model.module.state_dict(), before)


def test_amount_zero_removes_nothing(models) -> None:
    model = models["simplenet"]
    result = remove_channels(model, 0)
    assert result.removed == {"conv1": [], "conv2": []}
    assert result.parameters_after == result.parameters_before
    assert torch.equal(outputs(result.module, model), outputs(model.module, model))


def test_the_smaller_loaded_model_keeps_the_evaluation_data_and_a_fresh_cache(models) -> None:
    model = models["mlp"]
    loaded = removed(model, 0.5).as_loaded(model)
    assert loaded.evaluation is model.evaluation and loaded.example_inputs is model.example_inputs
    assert loaded.layer_types == model.layer_types
    assert loaded.cache is not model.cache and loaded.cache == {}
    assert "192 channels removed from 2 layers" in loaded.description


# --- exact only: constants of masked channels, padding, flatten ------------------------------


def test_a_bias_free_consumer_gains_the_removed_channels_constant_as_its_bias() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 8, 3), with_statistics(nn.BatchNorm2d(8), 0), nn.ReLU(), nn.Conv2d(8, 4, 3, bias=False)
    ).eval()
    result = remove_channels(model, 0.5)
    consumer = result.module.get_submodule("3")
    assert consumer.in_channels == 4 and consumer.bias is not None
    with torch.no_grad():
        torch.testing.assert_close(result.module(images()), masked(model, 0.5, ["3"])(images()), rtol=0, atol=1e-5)


def test_a_zero_padded_consumer_sees_the_removed_constant_channels_at_its_border_too() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1, stride=2)
    ).eval()
    with torch.no_grad():
        model[0].bias.fill_(0.5)  # every masked channel outputs relu(0.5): not zero
    result = remove_channels(model, 0.5)
    with torch.no_grad():
        torch.testing.assert_close(result.module(images()), masked(model, 0.5, ["2"])(images()), rtol=0, atol=1e-5)


def test_a_layer_the_mask_would_empty_is_skipped_and_keeps_its_channels() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 1), nn.ReLU(), nn.Linear(1, 6), nn.ReLU(), nn.Linear(6, 2)).eval()
    result = remove_channels(model, 0.9)
    assert "would remove all 1 of its output channels" in result.skipped["0"]
    assert list(result.removed) == ["2"] and len(result.removed["2"]) == 5  # round(0.9 * 6)
    x = torch.randn(3, 4)
    with torch.no_grad():
        torch.testing.assert_close(result.module(x), masked(model, 0.9, ["0", "4"])(x), rtol=0, atol=1e-5)


def test_a_flatten_is_followed_only_with_example_inputs(models) -> None:
    result = remove_channels(models["simplenet"].module, 0.5)
    assert "needs example_inputs" in result.skipped["conv2"]
    assert list(result.removed) == ["conv1"]


class ViewFlatten(nn.Module):
    """The tutorials' flatten: x.view(x.size(0), -1)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 6, 3)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(24, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv(x)))
        return self.fc(x.view(x.size(0), -1))


def test_a_view_to_batch_by_minus_one_is_followed_like_a_flatten() -> None:
    torch.manual_seed(0)
    model = ViewFlatten().eval()
    result = remove_channels(model, 0.5, example_inputs=images()[:2])
    assert len(result.removed["conv"]) == 3 and result.module.fc.in_features == 12
    with torch.no_grad():
        torch.testing.assert_close(result.module(images()), masked(model, 0.5, ["fc"])(images()), rtol=0, atol=1e-5)


class Concatenated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Conv2d(2, 4, 3)
        self.right = nn.Conv2d(2, 4, 3)
        self.head = nn.Conv2d(8, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.left(x), self.right(x)], dim=1))


def test_a_layer_whose_channels_are_concatenated_is_skipped() -> None:
    result = remove_channels(Concatenated().eval(), 0.5)
    assert "concatenation" in result.skipped["left"] and "concatenation" in result.skipped["right"]
    assert result.removed == {}


def test_a_layer_before_an_average_pool_that_counts_padding_is_skipped() -> None:
    # Padded zeros enter the mean: a masked channel is no longer constant after the pool.
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.AvgPool2d(2, padding=1), nn.Conv2d(4, 2, 3)).eval()
    assert "average pool that counts padding" in remove_channels(model, 0.5).skipped["0"]


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [1, 1.0, 1.5, -0.1, True, "0.5"])
def test_an_amount_outside_zero_to_one_is_refused(amount) -> None:
    with pytest.raises(CompressionError, match=r"amount must be a number in \[0, 1\).*got"):
        remove_channels(nn.Linear(4, 4), amount)


def test_amount_one_is_refused_as_removing_every_channel() -> None:
    with pytest.raises(CompressionError, match="would remove every channel"):
        remove_channels(nn.Linear(4, 4), 1.0)


def test_an_unknown_norm_or_scope_is_refused() -> None:
    with pytest.raises(CompressionError, match=r"norm must be one of 'l1', 'l2'; got 'l3'"):
        remove_channels(nn.Linear(4, 4), 0.5, norm="l3")
    with pytest.raises(CompressionError, match=r"scope must be one of 'layer', 'global'; got 'model'"):
        remove_channels(nn.Linear(4, 4), 0.5, scope="model")


class ValueDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) if x.sum() > 0 else x


def test_a_model_torch_fx_cannot_trace_is_refused() -> None:
    with pytest.raises(CompressionError, match=r"cannot be traced by torch\.fx.*fx-traceable"):
        remove_channels(ValueDependent().eval(), 0.5)


def test_a_torchscript_module_is_refused() -> None:
    with pytest.raises(CompressionError, match="TorchScript"):
        remove_channels(torch.jit.script(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))), 0.5)


def test_a_program_whose_layers_are_graph_operations_is_refused_not_masked_whole() -> None:
    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    program = torch.export.export(module, (torch.randn(2, 4),)).module()
    with pytest.raises(CompressionError, match="no Linear or Conv1d/2d/3d modules"):
        remove_channels(program, 0.5)


def test_something_other_than_a_model_is_refused() -> None:
    with pytest.raises(TypeError, match="LoadedModel or a torch.nn.Module; got dict"):
        remove_channels({}, 0.5)
