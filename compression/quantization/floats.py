"""Low-precision floats: a cast to fp16, bf16, fp8 e4m3 or fp8 e5m2 and back, as torch does it.

The codes are the raw bit patterns of the cast values. fp8 e4m3 has no infinity: torch
saturates values beyond ±448 to ±448, and so do we, the cast being torch's own. fp16 and
fp8 e5m2 overflow to ±inf, and the report counts those values.
"""
from __future__ import annotations

import torch

from compression.quantization.base import QuantizedTensor
from compression.recipe import QuantizeSpec

FORMAT_DTYPES = {
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "fp8_e4m3": torch.float8_e4m3fn,
    "fp8_e5m2": torch.float8_e5m2,
}
_BIT_VIEWS = {16: torch.int16, 8: torch.uint8}


def encode(weight: torch.Tensor, spec: QuantizeSpec) -> QuantizedTensor:
    cast = weight.float().to(FORMAT_DTYPES[spec.format])
    codes = cast.view(_BIT_VIEWS[spec.bits]).to(torch.int32) & (2**spec.bits - 1)
    return QuantizedTensor(
        codes=codes,
        params={},
        bits=spec.bits,
        min_code=0,
        represents_zero=True,
        levels=_levels(spec, float(weight.abs().max()) if weight.numel() else 0.0),
        label=spec.format,
    )


def _levels(spec: QuantizeSpec, amax: float) -> torch.Tensor | None:
    """Every finite fp8 value within the layer's range; fp16/bf16 grids are too fine to draw."""
    if spec.bits != 8:
        return None
    values = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(FORMAT_DTYPES[spec.format]).float()
    values = values[torch.isfinite(values) & (values.abs() <= amax)]
    return torch.unique(values)


def decode(
    codes: torch.Tensor, params: dict[str, torch.Tensor], spec: QuantizeSpec, shape: torch.Size
) -> torch.Tensor:
    raw = codes.to(torch.int32)
    if spec.bits == 16:
        raw = torch.where(raw >= 2**15, raw - 2**16, raw).to(torch.int16)
    else:
        raw = raw.to(torch.uint8)
    return raw.view(FORMAT_DTYPES[spec.format]).float().reshape(shape)
