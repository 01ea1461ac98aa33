"""One layer under a recipe's prune and quantize sections, at least one of them calibrated.

Pruning first, then rounding, both on the same inputs: Wanda's mask (Sun et al. 2023) or
SparseGPT's pruned and updated weight (Frantar & Alistarh 2023), or a mask chosen without data;
then GPTQ (Frantar et al. 2023), which holds pruned weights at zero while it spreads each
rounding error, AWQ (Lin et al. 2024), or a scheme that needs no data. Values are decoded from
the codes by the registry's decoders (``compression.tensor_codes``), as the packed file's
reader decodes them.

>>> import torch
>>> from compression.recipe import PruneSpec, QuantizeSpec
>>> layer = compress_layer(torch.randn(4, 8), torch.randn(32, 8), PruneSpec("wanda", amount=0.5),
...                        QuantizeSpec("gptq", bits=4))
>>> int((layer.values == 0).sum()), layer.quantized.label
(16, 'gptq_symmetric')
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from compression.calibrated.awq import awq_quantize
from compression.calibrated.gptq import gptq_quantize
from compression.calibrated.hessian import InputStatistics
from compression.calibrated.sparsegpt import sparsegpt_prune
from compression.calibrated.wanda import wanda
from compression.quantization import QuantizedTensor
from compression.quantization.linear import grid_levels
from compression.recipe import PruneSpec, QuantizeSpec
from compression.tensor_codes import compress_tensor, decoded, pruned


@dataclass(frozen=True)
class CompressedLayer:
    """The layer's final float32 values (decoded, the weight's shape) and their codes (None: not
    quantized)."""

    values: torch.Tensor
    quantized: QuantizedTensor | None


def _group_size(spec: QuantizeSpec) -> int | None:
    return spec.group_size if spec.granularity == "per_group" else None


def _gptq_codes(weight: torch.Tensor, inputs: InputStatistics, spec: QuantizeSpec, keep: torch.Tensor | None) -> QuantizedTensor:
    result = gptq_quantize(weight, inputs, spec.bits, _group_size(spec), spec.symmetric, spec.act_order, keep=keep)
    params = {"scale": result.scale}
    if result.zero_point is not None:
        params["zero_point"] = result.zero_point
    if spec.act_order:  # otherwise the groups are the linear scheme's: column j in group j // group_size
        params["group_index"] = result.group_index.to(torch.int32)
    qmax = 2 ** (spec.bits - 1) - 1
    kind = "symmetric" if spec.symmetric else "asymmetric"
    return QuantizedTensor(result.codes, params, spec.bits, -qmax if spec.symmetric else 0, True,
                           grid_levels(params, spec), f"gptq_{kind}")


def _awq_codes(weight: torch.Tensor, inputs: InputStatistics, spec: QuantizeSpec) -> QuantizedTensor:
    result = awq_quantize(weight, inputs, spec.bits, _group_size(spec), spec.symmetric)
    grid = result.quantized
    kind = "symmetric" if spec.symmetric else "asymmetric"
    # Each input channel has its own grid (the linear one over W·diag(s), divided by s): no one
    # set of levels to draw.
    return QuantizedTensor(grid.codes, {**grid.params, "input_scale": result.scales}, grid.bits, grid.min_code,
                           grid.represents_zero, None, f"awq_{kind}")


def compress_layer(
    weight: torch.Tensor,
    inputs: torch.Tensor | InputStatistics,
    prune: PruneSpec | None,
    quantize: QuantizeSpec | None,
    keep: torch.Tensor | None = None,
) -> CompressedLayer:
    """``weight`` (a Linear's or convolution's, only read) pruned by ``prune`` or by the given
    ``keep`` mask, then rounded by ``quantize``; ``inputs`` as the calibrated methods take them."""
    if prune is not None and prune.calibrated and keep is None:  # wanda's global cut comes as keep
        if prune.method == "wanda":
            keep = wanda(weight, inputs, prune.amount, prune.n, prune.m, scope=prune.scope)
        else:
            result = sparsegpt_prune(weight, inputs, prune.amount, prune.n, prune.m)
            weight, keep = result.weight, result.keep
    if quantize is None or not quantize.calibrated:
        return CompressedLayer(*compress_tensor(weight, keep, quantize))
    kept = pruned(weight, keep)
    if quantize.scheme == "gptq":
        quantized = _gptq_codes(kept, inputs, quantize, keep)
    else:
        quantized = _awq_codes(kept, inputs, quantize)
    return CompressedLayer(decoded(kept, quantized, quantize), quantized)
