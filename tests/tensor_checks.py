"""Bit-for-bit comparisons of state dicts, shared by the tests that check nothing was changed."""
from __future__ import annotations

import torch


def bitwise_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in state.items()}


def assert_bitwise_equal(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    """Equal keys and bit-identical values (float32 compared as int32: -0.0 differs from +0.0)."""
    assert set(first) == set(second)
    for name, tensor in first.items():
        view = torch.int32 if tensor.dtype == torch.float32 else tensor.dtype
        assert torch.equal(tensor.view(view), second[name].view(view)), name
