"""Argument checks of the calibrated methods, each failing with one line that names the method,
the argument, the value given and what is allowed (the manner of ``compression.recipe``)."""
from __future__ import annotations

import math
from typing import Any

import torch

from compression.errors import CompressionError, DataError, RecipeError

SCOPES = ("row", "layer")
MAX_M = 64  # as compression.recipe allows for n:m


def fail(method: str, name: str, value: Any, allowed: str) -> RecipeError:
    return RecipeError(f"{method}: {name} must be {allowed}; got {value!r}.")


def check_fraction(method: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise fail(method, name, value, "a number between 0 and 1")
    return float(value)


def check_int(method: str, name: str, value: Any, low: int, high: int | None = None) -> int:
    allowed = f"an integer between {low} and {high}" if high is not None else f"an integer >= {low}"
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        raise fail(method, name, value, allowed)
    return value


def check_positive(method: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise fail(method, name, value, "a finite number > 0")
    return float(value)


def check_choice(method: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise fail(method, name, value, "one of " + ", ".join(map(repr, choices)))
    return value


def check_sparsity(method: str, amount: Any, n: Any, m: Any) -> None:
    """Exactly one of ``amount`` or the pair ``n``, ``m`` (n kept of every m, 0 <= n <= m)."""
    if n is None and m is None:
        if amount is None:
            raise RecipeError(f"{method}: give amount (a number between 0 and 1) or n and m for n:m sparsity.")
        check_fraction(method, "amount", amount)
        return
    if amount is not None:
        raise RecipeError(f"{method}: give either amount or n and m, not both; got amount={amount!r}, n={n!r}, m={m!r}.")
    if n is None or m is None:
        raise RecipeError(f"{method}: n:m sparsity needs both n and m; got n={n!r}, m={m!r}.")
    check_int(method, "m", m, 1, MAX_M)
    check_int(method, "n", n, 0, m)


def check_weight(method: str, weight: Any) -> None:
    """A Linear's (out, in) or a convolution's (out, in, k...) floating-point weight."""
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point() or not 2 <= weight.ndim <= 4:
        shown = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise CompressionError(
            f"{method}: weight must be a float tensor of 2 to 4 dimensions (out, in, kernel...); got {shown}."
        )
    if not bool(torch.isfinite(weight).all()):
        raise CompressionError(f"{method}: weight holds NaN or inf values.")


def check_inputs(method: str, inputs: Any, columns: int, weight_shape: torch.Size | None = None) -> None:
    """A (samples, columns) float matrix of finite values, at least one sample."""
    if not isinstance(inputs, torch.Tensor) or inputs.ndim != 2 or inputs.shape[1] != columns or not inputs.shape[0]:
        shown = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        layer = f" for a weight of shape {tuple(weight_shape)} (a convolution's: layer_inputs)" if weight_shape else ""
        raise DataError(f"{method}: inputs must be (samples, {columns}){layer}; got {shown}.")
    if not inputs.is_floating_point() or not bool(torch.isfinite(inputs).all()):
        raise DataError(f"{method}: inputs must be finite floating-point values.")
