"""Specification of Conv+BatchNorm folding: same outputs, fewer ops, the input left alone."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from compression.compress import compress
from compression.errors import CompressionError
from compression.evaluation import evaluate
from compression.graph.fusion import FusionResult, check_fusion, fuse_conv_bn
from compression.io.loading import load_model
from compression.model import LoadedModel
from tensor_checks import assert_bitwise_equal, bitwise_copy, outputs, with_statistics

BN_CNN_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"), ("conv4", "bn4"))
BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@pytest.fixture(scope="module")
def bn_cnn() -> LoadedModel:
    return load_model("bn_cnn")


@pytest.fixture(scope="module")
def fused(bn_cnn: LoadedModel) -> FusionResult:
    return fuse_conv_bn(bn_cnn)


def conv_bn(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 6, 3), with_statistics(nn.BatchNorm2d(6), seed), nn.ReLU()).eval()


def images(seed: int = 0) -> torch.Tensor:
    return torch.randn(5, 2, 6, 6, generator=torch.Generator().manual_seed(seed))


def stored_values(module: nn.Module) -> int:
    return sum(tensor.numel() for tensor in module.state_dict().values())


# --- bn_cnn: exact, and smaller --------------------------------------------------------------


def test_every_conv_bn_pair_of_bn_cnn_is_folded(fused: FusionResult) -> None:
    assert fused.pairs == BN_CNN_PAIRS


def test_the_fused_bn_cnn_gives_the_original_outputs(bn_cnn: LoadedModel, fused: FusionResult) -> None:
    torch.testing.assert_close(outputs(fused.module, bn_cnn), outputs(bn_cnn.module, bn_cnn), rtol=0, atol=1e-5)


def test_the_fused_bn_cnn_equals_folding_each_pair_with_torch_exactly(bn_cnn: LoadedModel, fused: FusionResult) -> None:
    reference = copy.deepcopy(bn_cnn.module)
    for conv, norm in BN_CNN_PAIRS:
        setattr(reference, conv, fuse_conv_bn_eval(getattr(reference, conv), getattr(reference, norm)))
        setattr(reference, norm, nn.Identity())
    assert torch.equal(outputs(fused.module, bn_cnn), outputs(reference, bn_cnn))


def test_no_batchnorm_is_left_in_the_fused_bn_cnn(fused: FusionResult) -> None:
    assert not any(isinstance(module, BATCHNORM_TYPES) for module in fused.module.modules())
    called = {node.target for node in fused.module.graph.nodes if node.op == "call_module"}
    assert called == {"conv1", "conv2", "conv3", "conv4", "pool", "fc"}


def test_the_fused_bn_cnn_stores_fewer_parameters_and_buffers(bn_cnn: LoadedModel, fused: FusionResult) -> None:
    # Each BatchNorm's gamma, beta, mean, var and counter go; each conv gains a bias.
    assert stored_values(fused.module) < stored_values(bn_cnn.module)


def test_the_fused_module_is_in_eval_mode(fused: FusionResult) -> None:
    assert not any(module.training for module in fused.module.modules())


# --- the input is never mutated --------------------------------------------------------------


def test_the_input_model_is_not_mutated() -> None:
    model = load_model("bn_cnn")
    before = bitwise_copy(model.module.state_dict())
    fuse_conv_bn(model)
    assert_bitwise_equal(model.module.state_dict(), before)
    assert all(isinstance(getattr(model.module, norm), nn.BatchNorm2d) for _, norm in BN_CNN_PAIRS)


def test_the_fused_module_does_not_share_tensors_with_the_input() -> None:
    model = conv_bn()
    before = bitwise_copy(model.state_dict())
    with torch.no_grad():
        for tensor in fuse_conv_bn(model).module.state_dict().values():
            tensor.fill_(7.0)
    assert_bitwise_equal(model.state_dict(), before)


def test_a_batchnorm_in_training_mode_is_folded_with_its_running_statistics() -> None:
    model = conv_bn().train()
    result = fuse_conv_bn(model)
    assert model.training and model[1].training  # the input keeps its mode
    with torch.no_grad():
        expected = copy.deepcopy(model).eval()(images())
        torch.testing.assert_close(result.module(images()), expected, rtol=0, atol=1e-5)


# --- only exact folds ------------------------------------------------------------------------


def test_the_check_measures_what_folding_changed_against_the_original(bn_cnn: LoadedModel, fused: FusionResult) -> None:
    check = check_fusion(bn_cnn, fused)
    assert (check.values_before, check.values_after) == (stored_values(bn_cnn.module), stored_values(fused.module))
    assert check.max_output_difference < 1e-4
    assert check.value_after == pytest.approx(check.value_before) == pytest.approx(0.9933, abs=1e-4)


@pytest.mark.parametrize(
    ("conv", "norm", "shape"),
    [(nn.Conv1d, nn.BatchNorm1d, (5, 2, 9)), (nn.Conv3d, nn.BatchNorm3d, (5, 2, 4, 4, 4))],
    ids=["1d", "3d"],
)
def test_conv1d_and_conv3d_pairs_are_folded(
    conv: type[nn.Module], norm: type[nn.Module], shape: tuple[int, ...]
) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(conv(2, 4, 3), with_statistics(norm(4), 0)).eval()
    result = fuse_conv_bn(model)
    x = torch.randn(shape)
    assert result.pairs == (("0", "1"),)
    with torch.no_grad():
        torch.testing.assert_close(result.module(x), model(x), rtol=0, atol=1e-5)


class SharedOutput(nn.Module):
    """The conv's output goes to the BatchNorm and, unnormalised, to the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.bn = with_statistics(nn.BatchNorm2d(2), 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def test_a_conv_whose_output_is_also_read_elsewhere_is_not_folded() -> None:
    model = SharedOutput().eval()
    result = fuse_conv_bn(model)
    assert result.pairs == ()
    with torch.no_grad():
        assert torch.equal(result.module(images()), model(images()))


class SharedLayers(nn.Module):
    """One conv and one BatchNorm, called twice: folding one call would change the other."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.bn = with_statistics(nn.BatchNorm2d(2), 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.bn(self.conv(x))))


def test_a_pair_called_more_than_once_is_not_folded() -> None:
    assert fuse_conv_bn(SharedLayers().eval()).pairs == ()


def test_a_batchnorm_without_running_statistics_is_not_folded() -> None:
    model = nn.Sequential(nn.Conv2d(2, 6, 3), nn.BatchNorm2d(6, track_running_stats=False)).eval()
    assert fuse_conv_bn(model).pairs == ()


def test_a_model_without_batchnorm_gives_an_unchanged_copy_and_no_pairs() -> None:
    model = nn.Sequential(nn.Conv2d(2, 6, 3), nn.ReLU()).eval()
    result = fuse_conv_bn(model)
    assert result.pairs == ()
    assert type(result.module) is nn.Sequential and result.module is not model
    assert_bitwise_equal(result.module.state_dict(), model.state_dict())


# --- Linear -> BatchNorm1d -------------------------------------------------------------------


def linear_bn(inputs: torch.Tensor, features: int) -> LoadedModel:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(inputs.shape[-1], features), with_statistics(nn.BatchNorm1d(features), 0))
    return LoadedModel("linear_bn", "module", module.eval(), {}, example_inputs=(inputs[:2],), evaluation=None)


def test_a_linear_then_batchnorm1d_is_folded_when_its_example_inputs_give_2d_output() -> None:
    x = torch.randn(5, 3)
    model = linear_bn(x, 4)
    result = fuse_conv_bn(model)
    assert result.pairs == (("0", "1"),)
    with torch.no_grad():
        torch.testing.assert_close(result.module(x), model.module(x), rtol=0, atol=1e-5)


def test_a_linear_then_batchnorm1d_is_not_folded_without_example_inputs() -> None:
    model = linear_bn(torch.randn(5, 3), 4)
    assert fuse_conv_bn(model.module).pairs == ()


def test_a_batchnorm1d_over_positions_after_a_linear_is_not_folded() -> None:
    # (batch, 4 positions, 3) -> Linear -> (batch, 4, 4): BatchNorm1d(4) normalises positions.
    assert fuse_conv_bn(linear_bn(torch.randn(5, 4, 3), 4)).pairs == ()


# --- refusals --------------------------------------------------------------------------------


class ValueDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3)
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.bn(self.conv(x))
        return self.conv(x)


def test_a_module_with_control_flow_on_tensor_values_is_refused() -> None:
    with pytest.raises(CompressionError, match=r"cannot be traced by torch\.fx.*fx-traceable"):
        fuse_conv_bn(ValueDependent().eval())


def test_a_torchscript_module_is_refused() -> None:
    with pytest.raises(CompressionError, match=r"TorchScript.*fx-traceable"):
        fuse_conv_bn(torch.jit.script(conv_bn()))


def test_something_other_than_a_model_is_refused() -> None:
    with pytest.raises(TypeError, match="LoadedModel or a torch.nn.Module; got dict"):
        fuse_conv_bn({})


# --- the fused model in the rest of the engine -----------------------------------------------


def test_the_fused_loaded_model_keeps_the_evaluation_data_and_lists_the_fused_layers(
    bn_cnn: LoadedModel, fused: FusionResult
) -> None:
    loaded = fused.as_loaded(bn_cnn)
    assert loaded.module is fused.module
    assert loaded.evaluation is bn_cnn.evaluation and loaded.example_inputs is bn_cnn.example_inputs
    assert loaded.layer_types == bn_cnn.layer_types
    assert loaded.cache is not bn_cnn.cache


def test_the_fused_model_scores_the_base_accuracy(bn_cnn: LoadedModel, fused: FusionResult) -> None:
    score = evaluate(fused.as_loaded(bn_cnn))
    assert score.value == pytest.approx(evaluate(bn_cnn).value, abs=1e-4)
    assert score.value == pytest.approx(0.9933, abs=1e-4)


def test_the_fused_model_can_be_compressed(bn_cnn: LoadedModel, fused: FusionResult) -> None:
    result = compress(fused.as_loaded(bn_cnn), {"prune": {"method": "magnitude", "amount": 0.5}})
    assert result.report.sparsity == pytest.approx(0.5, abs=1e-3)
    assert {layer.name for layer in result.report.layers} == set(bn_cnn.layer_types)
