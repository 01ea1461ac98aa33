"""Uniform (linear) quantization: q = clamp(round(w / scale) + zero_point), w' = (q - zero_point) · scale.

Symmetric: zero_point = 0, scale = max|w| / (2^(b-1) - 1), codes in [-(2^(b-1) - 1), 2^(b-1) - 1].
Asymmetric: scale = (max - min) / (2^b - 1) over a range widened to include 0,
zero_point = round(-min / scale), codes in [0, 2^b - 1]. One bit is binarisation (XNOR-Net,
Rastegari et al. 2016): w' = sign(w) · mean|w| over the group's non-zero weights.

>>> import torch
>>> from compression.recipe import QuantizeSpec
>>> spec = QuantizeSpec(scheme="linear", bits=2, granularity="per_tensor")
>>> q = encode(torch.tensor([-1.0, 0.2, 1.0]), spec)
>>> decode(q.codes, q.params, spec, torch.Size([3])).tolist()
[-1.0, 0.0, 1.0]
"""
from __future__ import annotations

import torch

from compression.quantization.base import QuantizedTensor
from compression.quantization.grouping import grouped, ungrouped, widest_group
from compression.recipe import QuantizeSpec


def _code_dtype(bits: int) -> torch.dtype:
    return torch.int16 if bits <= 8 else torch.int32


def _safe_scale(scale: torch.Tensor) -> torch.Tensor:
    """All-zero groups get scale 1 so that 0 / scale stays 0 instead of NaN."""
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def _encode_symmetric(w3: torch.Tensor, bits: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    qmax = 2 ** (bits - 1) - 1
    scale = _safe_scale(w3.abs().amax(dim=2, keepdim=True) / qmax)
    codes = torch.round(w3 / scale).clamp_(-qmax, qmax)
    return codes, {"scale": scale}, -qmax


def _encode_asymmetric(w3: torch.Tensor, bits: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    qmax = 2**bits - 1
    low = w3.amin(dim=2, keepdim=True).clamp(max=0.0)
    high = w3.amax(dim=2, keepdim=True).clamp(min=0.0)
    scale = _safe_scale((high - low) / qmax)
    zero_point = torch.round(-low / scale).clamp_(0, qmax)
    codes = (torch.round(w3 / scale) + zero_point).clamp_(0, qmax)
    return codes, {"scale": scale, "zero_point": zero_point.to(_code_dtype(bits))}, 0


def _encode_binary(w3: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    nonzero = (w3 != 0).sum(dim=2, keepdim=True).clamp(min=1)
    alpha = w3.abs().sum(dim=2, keepdim=True) / nonzero
    return (w3 > 0).to(torch.float32), {"scale": alpha}, 0


def encode(weight: torch.Tensor, spec: QuantizeSpec) -> QuantizedTensor:
    w3 = grouped(weight.float(), spec.granularity, spec.group_size)
    if spec.bits == 1:
        codes3, params, min_code = _encode_binary(w3)
        label = "binary"
    elif spec.symmetric:
        codes3, params, min_code = _encode_symmetric(w3, spec.bits)
        label = "linear_symmetric"
    else:
        codes3, params, min_code = _encode_asymmetric(w3, spec.bits)
        label = "linear_asymmetric"
    codes = ungrouped(codes3, weight.shape).to(_code_dtype(spec.bits))
    params = {key: value.squeeze(2).contiguous() for key, value in params.items()}
    return QuantizedTensor(
        codes=codes,
        params=params,
        bits=spec.bits,
        min_code=min_code,
        represents_zero=spec.bits > 1,
        levels=grid_levels(params, spec),
        label=label,
    )


def grid_levels(params: dict[str, torch.Tensor], spec: QuantizeSpec) -> torch.Tensor:
    """The values the widest group's codes decode to, sorted: what the histogram view draws."""
    scale = params["scale"]
    row, group = widest_group(scale)
    step = scale[row, group]
    if spec.bits == 1:
        return torch.stack([-step, step])
    if spec.symmetric:
        qmax = 2 ** (spec.bits - 1) - 1
        return torch.arange(-qmax, qmax + 1, dtype=torch.float32) * step
    zero_point = params["zero_point"][row, group].float()
    return (torch.arange(0, 2**spec.bits, dtype=torch.float32) - zero_point) * step


def decode(
    codes: torch.Tensor, params: dict[str, torch.Tensor], spec: QuantizeSpec, shape: torch.Size
) -> torch.Tensor:
    codes3 = grouped(codes, spec.granularity, spec.group_size).float()
    scale = params["scale"].unsqueeze(2)
    if spec.bits == 1:
        values3 = (codes3 * 2.0 - 1.0) * scale
    elif spec.symmetric:
        values3 = codes3 * scale
    else:
        values3 = (codes3 - params["zero_point"].unsqueeze(2).float()) * scale
    return ungrouped(values3, shape)
