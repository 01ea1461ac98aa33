"""Power-of-two (logarithmic) quantization: w' = sign(w) · 2^k or 0 (Miyashita et al. 2016).

A b-bit code holds one sign bit and a (b-1)-bit exponent index e: e = 0 means zero and
e = 1 … 2^(b-1) - 1 mean 2^(k_max - E + e) with E = 2^(b-1) - 1 and k_max = round(log2 max|w|)
per tensor or per output channel. log2|w| is rounded to the nearest integer; exponents below
the smallest level flush to zero. Multiplying by such a weight is a bit shift.

>>> import torch
>>> from compression.recipe import QuantizeSpec
>>> spec = QuantizeSpec(scheme="pow2", bits=3, granularity="per_tensor")
>>> q = encode(torch.tensor([1.0, -0.3, 0.01]), spec)
>>> decode(q.codes, q.params, spec, torch.Size([3])).tolist()
[1.0, -0.25, 0.0]
"""
from __future__ import annotations

import torch

from compression.quantization.base import QuantizedTensor
from compression.quantization.grouping import grouped, ungrouped, widest_group
from compression.recipe import QuantizeSpec

# float32's normal exponents: a k_max outside them would describe no representable weight.
_EXPONENT_RANGE = (-126, 127)


def encode(weight: torch.Tensor, spec: QuantizeSpec) -> QuantizedTensor:
    exponents = 2 ** (spec.bits - 1) - 1
    w3 = grouped(weight.float(), spec.granularity, spec.group_size)
    magnitude = w3.abs()
    amax = magnitude.amax(dim=2, keepdim=True)
    k_max = torch.round(torch.log2(torch.where(amax > 0, amax, torch.ones_like(amax))))
    k_max = k_max.clamp_(*_EXPONENT_RANGE)
    # log2(0) = -inf rounds to -inf and so falls below every level: zero stays zero.
    index = (torch.round(torch.log2(magnitude)).clamp_(max=k_max) - (k_max - exponents)).clamp_(min=0)
    # Only non-zero levels carry a sign: a weight flushed to zero gets code 0, never "-0".
    sign = ((w3 < 0) & (index > 0)).to(torch.float32)
    codes3 = sign * 2 ** (spec.bits - 1) + index
    codes = ungrouped(codes3, weight.shape).to(torch.int16)
    params = {"exponent_max": k_max.squeeze(2).to(torch.int16).contiguous()}
    return QuantizedTensor(
        codes=codes,
        params=params,
        bits=spec.bits,
        min_code=0,
        represents_zero=True,
        levels=_levels(params["exponent_max"], exponents),
        label="pow2",
    )


def _levels(exponent_max: torch.Tensor, exponents: int) -> torch.Tensor:
    row, group = widest_group(exponent_max)
    top = float(exponent_max[row, group])
    powers = torch.exp2(torch.arange(top - exponents + 1, top + 1, dtype=torch.float32))
    return torch.cat([-powers.flip(0), torch.zeros(1), powers])


def decode(
    codes: torch.Tensor, params: dict[str, torch.Tensor], spec: QuantizeSpec, shape: torch.Size
) -> torch.Tensor:
    exponents = 2 ** (spec.bits - 1) - 1
    codes3 = grouped(codes.to(torch.int32), spec.granularity, spec.group_size)
    index = codes3 & exponents
    negative = (codes3 >> (spec.bits - 1)) & 1
    k_max = params["exponent_max"].unsqueeze(2).float()
    magnitude = torch.exp2(index.float() + (k_max - exponents))
    values3 = torch.where(index > 0, magnitude, torch.zeros_like(magnitude))
    values3 = torch.where(negative.bool(), -values3, values3)
    return ungrouped(values3, shape)
