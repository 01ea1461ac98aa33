"""Limits on what a loader accepts: positive limits, the parameter count, finite weights.

Each check runs as early as the format allows, so an oversized model is refused before it is
materialised.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from compression.errors import CompressionError, ModelLoadError

DEFAULT_MAX_PARAMETERS = 250_000_000


def check_limit(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CompressionError(f"{name} must be a positive integer; got {value!r}.")


def value_count(tensors: Iterable[torch.Tensor]) -> int:
    """How many values the tensors hold together."""
    return sum(t.numel() for t in tensors)


def check_parameter_count(count: int, max_parameters: int, where: str, *, at_least: bool = False) -> None:
    if count > max_parameters:
        raise ModelLoadError(
            f"{where} holds {'at least ' if at_least else ''}{count:,} parameters, over the "
            f"limit max_parameters={max_parameters:,}."
        )


def check_finite(module: nn.Module, where: str) -> None:
    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ModelLoadError(
                f"{where}: tensor {name!r} holds NaN or infinite values; the model cannot be "
                "evaluated or compressed."
            )
