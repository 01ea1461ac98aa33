"""GPTQ: round a layer's weights one column at a time, each rounding error compensated by the
columns not rounded yet.

Frantar et al. 2023, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
Transformers"; the steps follow the reference ``gptq.py::fasterquant`` (IST-DASLab): blocks of
``block_size`` columns with lazy updates (``obs.sweep``), the Cholesky factor of the damped
H⁻¹, optional act-order (columns by decreasing H_jj), and per-group parameters computed when a
group's first column is reached, from the weights as the blocks before it left them. With
act-order, groups follow the visiting order, so each column's group is recorded
(``group_index``, the reference's g_idx).

The grid is the linear scheme's (``compression.quantization.linear``): symmetric codes in
±(2^(b-1) - 1) with scale = max|w| / (2^(b-1) - 1), or asymmetric codes in [0, 2^b - 1] with a zero
point; its scales come from ``linear.encode`` itself. Values are only ever decoded from the codes.

>>> import torch
>>> weight, inputs = torch.randn(4, 8), torch.randn(32, 8)
>>> result = gptq_quantize(weight, inputs, bits=3)
>>> bool(((result.weight / result.scale).round().abs() <= 3).all())
True
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from compression.calibrated.checks import check_int, check_positive, check_weight, fail
from compression.calibrated.hessian import InputStatistics, dead_columns, inverse_cholesky, statistics
from compression.calibrated.n_m import unpermuted
from compression.calibrated.obs import sweep
from compression.quantization import linear
from compression.recipe import QuantizeSpec

MAX_BITS = 16  # the linear scheme's widest codes; 1 bit is binarisation, which has no grid to round to


@dataclass(frozen=True)
class GptqResult:
    """What a packed file needs, in the weight's (out, in·k·k) column order.

    weight[:, j] = (codes[:, j] - zero_point[:, g]) · scale[:, g] with g = group_index[j]; without
    act-order group_index[j] = j // group_size, the linear scheme's per-group layout (one group
    per row when per channel). ``zero_point`` is None when symmetric.
    """

    weight: torch.Tensor
    codes: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor | None
    group_index: torch.Tensor


def decode(
    codes: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None, group_index: torch.Tensor
) -> torch.Tensor:
    """Float32 values of (out, columns) ``codes``: the same arithmetic as the linear scheme's decoder."""
    values = codes.float()
    if zero_point is not None:
        values = values - zero_point[:, group_index].float()
    return values * scale[:, group_index]


class _Grid:
    """The scales and zero points of one row-wise group, and rounding to them."""

    def __init__(self, spec: QuantizeSpec, columns: torch.Tensor) -> None:
        params = linear.encode(columns, spec).params
        self.scale = params["scale"][:, 0]
        zero_point = params.get("zero_point")
        self.zero_point = None if zero_point is None else zero_point[:, 0].float()
        qmax = 2 ** (spec.bits - 1) - 1
        self.low, self.high = (-qmax, qmax) if spec.symmetric else (0, 2**spec.bits - 1)

    def codes(self, column: torch.Tensor) -> torch.Tensor:
        shifted = torch.round(column / self.scale)
        if self.zero_point is not None:
            shifted = shifted + self.zero_point
        return shifted.clamp_(self.low, self.high)

    def values(self, codes: torch.Tensor) -> torch.Tensor:
        return (codes if self.zero_point is None else codes - self.zero_point) * self.scale


class _Rounding:
    """The column rule: round each column to its group's grid, recording codes and parameters."""

    def __init__(
        self, columns_first: torch.Tensor, spec: QuantizeSpec, group_size: int | None, grid: _Grid,
        pruned: torch.Tensor | None,
    ) -> None:
        self.columns_first, self.spec, self.group_size, self.pruned = columns_first, spec, group_size, pruned
        columns, out_rows = columns_first.shape
        self.group = group_size or columns
        groups = math.ceil(columns / self.group)
        self.codes = torch.empty(columns, out_rows)
        self.scale = torch.empty(out_rows, groups)
        self.zero_point = None if spec.symmetric else torch.empty(out_rows, groups, dtype=_code_dtype(spec.bits))
        self.grid = grid

    def __call__(self, position: int, i: int, block: torch.Tensor, inverse_diagonal: torch.Tensor) -> torch.Tensor:
        if self.group_size is not None and position % self.group_size == 0:
            # As the reference: the group as the whole matrix holds it, updated up to this block.
            self.grid = _Grid(self.spec, self.columns_first[position : position + self.group_size].T)
        if position % self.group == 0:
            self.scale[:, position // self.group] = self.grid.scale
            if self.zero_point is not None:
                self.zero_point[:, position // self.group] = self.grid.zero_point.to(self.zero_point.dtype)
        self.codes[position] = self.grid.codes(block[i])
        if self.pruned is not None:  # a pruned weight takes the code of zero; its change is spread on
            zero = 0.0 if self.grid.zero_point is None else self.grid.zero_point
            self.codes[position] = torch.where(self.pruned[position], zero, self.codes[position])
        return self.grid.values(self.codes[position])


def _code_dtype(bits: int) -> torch.dtype:
    return torch.int16 if bits <= 8 else torch.int32


def gptq_quantize(
    weight: torch.Tensor,
    inputs: torch.Tensor | InputStatistics,
    bits: int,
    group_size: int | None = None,
    symmetric: bool = True,
    act_order: bool = False,
    block_size: int = 128,
    damping: float = 0.01,
    keep: torch.Tensor | None = None,
) -> GptqResult:
    """GPTQ on one layer: ``inputs`` is (samples, in·k·k); neither argument is changed.

    Per channel (``group_size`` None) or per group of ``group_size`` input columns; ``damping`` is
    λ / mean diag(H) (the papers' 1 %). ``keep`` (the weight's shape, True = kept) holds pruned
    weights at zero, each one's change compensated by the columns after it, as SparseGPT's
    reference quantizes while it prunes.
    """
    check_weight("gptq", weight)
    check_int("gptq", "bits", bits, 2, MAX_BITS)
    if group_size is not None:
        check_int("gptq", "group_size", group_size, 1)
    for name, flag in (("symmetric", symmetric), ("act_order", act_order)):
        if not isinstance(flag, bool):
            raise fail("gptq", name, flag, "true or false")
    check_int("gptq", "block_size", block_size, 1)
    check_positive("gptq", "damping", damping)
    if keep is not None and (keep.dtype != torch.bool or keep.shape != weight.shape):
        given = f"a {keep.dtype} tensor of shape {tuple(keep.shape)}"
        raise fail("gptq", "keep", given, f"a bool mask of shape {tuple(weight.shape)}")
    hessian = statistics("gptq", inputs, weight).hessian()
    original = weight.detach().reshape(weight.shape[0], -1).float()
    columns = original.shape[1]
    order = torch.argsort(hessian.diagonal(), descending=True, stable=True) if act_order else torch.arange(columns)
    columns_first = original.T[order]  # a copy (indexing), columns first for the sweep
    hessian = hessian[order][:, order]
    columns_first[dead_columns(hessian)] = 0.0
    spec = QuantizeSpec(scheme="linear", bits=bits, granularity="per_channel", symmetric=symmetric)
    pruned = None if keep is None else ~keep.reshape(original.shape).T[order]
    # Per channel, the scales are the weight's as given, as the reference computes them.
    rule = _Rounding(columns_first, spec, group_size, _Grid(spec, original), pruned)
    sweep(columns_first, inverse_cholesky("gptq", hessian, damping), block_size, rule)

    group_index = unpermuted((torch.arange(columns) // rule.group)[None], order)[0]
    codes = unpermuted(rule.codes.T, order).to(_code_dtype(bits))
    values = decode(codes, rule.scale, rule.zero_point, group_index)
    return GptqResult(
        values.reshape(weight.shape), codes.reshape(weight.shape), rule.scale, rule.zero_point, group_index
    )


def gptq(
    weight: torch.Tensor,
    inputs: torch.Tensor | InputStatistics,
    bits: int,
    group_size: int | None = None,
    symmetric: bool = True,
    act_order: bool = False,
    block_size: int = 128,
    damping: float = 0.01,
) -> torch.Tensor:
    """The quantized weight (float32, the weight's shape); see ``gptq_quantize`` for its codes."""
    return gptq_quantize(weight, inputs, bits, group_size, symmetric, act_order, block_size, damping).weight
