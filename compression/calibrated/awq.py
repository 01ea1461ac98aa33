"""AWQ: scale each input channel up by its activation magnitude before rounding, then back down.

Lin et al. 2024, "AWQ: Activation-aware Weight Quantization for LLM Compression and
Acceleration"; the search follows the reference ``auto_scale.py`` (mit-han-lab/llm-awq):
s = mean|X_c|^α, normalised by √(max s · min s), for α = 0, 1/grid, …, (grid-1)/grid, keeping
the α whose Q(W·diag(s))·diag(s)⁻¹ has the least output error ‖(W - Ŵ)Xᵀ‖². α = 0 is plain
round-to-nearest, so the search never does worse than it on the calibration inputs. The error
is read from H = XᵀX / samples, which costs out·in² per α instead of out·in·samples. The weight's
clipping search (the reference's auto_clip) is not part of this.

Scales are per input channel, so they can be folded into whatever produces the layer's input;
a convolution's channel shares one scale across its kernel positions.

>>> import torch
>>> weight, inputs = torch.randn(4, 8), torch.randn(32, 8)
>>> scales, quantized = awq(weight, inputs, bits=4)
>>> scales.shape, quantized.shape
(torch.Size([8]), torch.Size([4, 8]))
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from compression.calibrated.checks import check_int, check_weight, fail
from compression.calibrated.hessian import InputStatistics, statistics
from compression.quantization import SCHEMES, QuantizedTensor
from compression.recipe import SCHEME_BITS, QuantizeSpec

_MIN_SCALE = 1e-4  # the reference's floor: a silent channel does not get a zero scale


@dataclass(frozen=True)
class AwqResult:
    """What a packed file needs: the linear scheme's codes of W·diag(s) under ``spec``, and s.

    ``scales`` has one entry per input channel (weight.shape[1]); ``weight`` (float32, the
    weight's shape) is the decoded W·diag(s) divided by s again; ``alpha`` the exponent chosen.
    """

    scales: torch.Tensor
    quantized: QuantizedTensor
    spec: QuantizeSpec
    weight: torch.Tensor
    alpha: float


def output_error(delta: torch.Tensor, hessian: torch.Tensor) -> float:
    """‖ΔW Xᵀ‖² / samples = Σ_rows ΔW H ΔWᵀ for an (out, in) weight change."""
    return float(((delta @ hessian) * delta).sum(dtype=torch.float64))


def awq_quantize(
    weight: torch.Tensor,
    inputs: torch.Tensor | InputStatistics,
    bits: int,
    group_size: int | None = None,
    symmetric: bool = True,
    grid: int = 20,
) -> AwqResult:
    """AWQ on one layer: ``inputs`` is (samples, in·k·k); neither argument is changed."""
    check_weight("awq", weight)
    check_int("awq", "bits", bits, *SCHEME_BITS["linear"])
    if group_size is not None:
        check_int("awq", "group_size", group_size, 1)
    if not isinstance(symmetric, bool):
        raise fail("awq", "symmetric", symmetric, "true or false")
    check_int("awq", "grid", grid, 1)
    stats = statistics("awq", inputs, weight)
    hessian = stats.hessian().float()
    grouping = {"granularity": "per_group", "group_size": group_size} if group_size else {"granularity": "per_channel"}
    spec = QuantizeSpec(scheme="linear", bits=bits, symmetric=symmetric, **grouping)
    scheme = SCHEMES["linear"]
    rows = weight.detach().reshape(weight.shape[0], -1).float()
    positions = rows.shape[1] // weight.shape[1]  # a convolution's kernel positions share a channel's scale
    magnitude = stats.mean_abs().reshape(weight.shape[1], positions).mean(dim=1)
    best: AwqResult | None = None
    best_error = float("inf")
    for step in range(grid):
        alpha = step / grid
        scales = magnitude.pow(alpha).clamp(min=_MIN_SCALE)
        scales = scales / (scales.max() * scales.min()).sqrt()
        column_scales = scales.repeat_interleave(positions)
        quantized = scheme.encode((rows * column_scales).reshape(weight.shape), spec)
        values = scheme.decode(quantized.codes, quantized.params, spec, rows.shape) / column_scales
        error = output_error(rows - values, hessian)
        if error < best_error or best is None:
            best_error = error
            best = AwqResult(scales, quantized, spec, values.reshape(weight.shape), alpha)
    assert best is not None  # grid >= 1 candidates
    return best


def awq(
    weight: torch.Tensor,
    inputs: torch.Tensor | InputStatistics,
    bits: int,
    group_size: int | None = None,
    symmetric: bool = True,
    grid: int = 20,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scales per input channel, quantized weight in float32); see ``awq_quantize``."""
    result = awq_quantize(weight, inputs, bits, group_size, symmetric, grid)
    return result.scales, result.weight
