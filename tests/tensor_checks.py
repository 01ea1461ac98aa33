"""Shared by the engine tests: bit-for-bit state-dict checks, a module's outputs on a model's
evaluation data, and a BatchNorm whose statistics are far from the identity."""
from __future__ import annotations

import torch
from torch import nn

from compression.evaluation import model_outputs
from compression.model import LoadedModel


def bitwise_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in state.items()}


def assert_bitwise_equal(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    """Equal keys and bit-identical values (float32 compared as int32: -0.0 differs from +0.0)."""
    assert set(first) == set(second)
    for name, tensor in first.items():
        view = torch.int32 if tensor.dtype == torch.float32 else tensor.dtype
        assert torch.equal(tensor.view(view), second[name].view(view)), name


def outputs(module: nn.Module, model: LoadedModel) -> torch.Tensor:
    return model_outputs(module, model.evaluation.inputs, model.evaluation.batch_size)


def with_statistics(norm: nn.Module, seed: int) -> nn.Module:
    """A BatchNorm whose running statistics and affine map are far from the identity."""
    generator = torch.Generator().manual_seed(seed)
    size = norm.num_features
    with torch.no_grad():
        norm.running_mean.copy_(torch.randn(size, generator=generator))
        norm.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
        norm.weight.copy_(torch.randn(size, generator=generator))
        norm.bias.copy_(torch.randn(size, generator=generator))
    return norm
