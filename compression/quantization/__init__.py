"""Weight quantization: a registry from scheme name to its encoder and decoder.

Adding a scheme means adding a module with ``encode``/``decode`` and one line here.
"""
from __future__ import annotations

import torch

from compression.quantization import awq, floats, gptq, kmeans, linear, pow2
from compression.quantization.base import QuantizedTensor, Scheme, needs_layer_inputs
from compression.recipe import QuantizeSpec

SCHEMES: dict[str, Scheme] = {
    "linear": Scheme(linear.encode, linear.decode),
    "pow2": Scheme(pow2.encode, pow2.decode),
    "kmeans": Scheme(kmeans.encode, kmeans.decode),
    "float": Scheme(floats.encode, floats.decode),
    # Their codes need each layer's inputs (compress runs compression.calibrated); these decode them.
    "gptq": Scheme(needs_layer_inputs, gptq.decode),
    "awq": Scheme(needs_layer_inputs, awq.decode),
}


def quantize_tensor(weight: torch.Tensor, spec: QuantizeSpec) -> QuantizedTensor:
    """Codes and parameters for one tensor; ``weight`` is only read."""
    return SCHEMES[spec.scheme].encode(weight, spec)


def dequantize_tensor(
    codes: torch.Tensor, params: dict[str, torch.Tensor], spec: QuantizeSpec, shape: torch.Size
) -> torch.Tensor:
    """Float32 values of ``codes``: the one path by which quantized values are made."""
    return SCHEMES[spec.scheme].decode(codes, params, spec, shape)


__all__ = ["QuantizedTensor", "SCHEMES", "dequantize_tensor", "quantize_tensor"]
