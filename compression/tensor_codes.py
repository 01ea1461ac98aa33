"""One tensor's final values from its codes: pruned by a keep-mask, then rounded by a scheme.

Values only ever come from decoding the codes, with the decoder the packed file's reader uses,
so a compressed module and its reloaded file agree bit for bit. Zeros are one canonical +0.0.

>>> import torch
>>> from compression.recipe import QuantizeSpec
>>> values, quantized = compress_tensor(torch.tensor([[0.4, -0.1, 1.0]]), torch.tensor([[True, False, True]]),
...                                     QuantizeSpec(bits=2))
>>> values.tolist(), quantized.codes.tolist()
([[0.0, 0.0, 1.0]], [[0, 0, 1]])
"""
from __future__ import annotations

import torch

from compression.masks_numpy import zero_flags, zeroed_outside
from compression.quantization import QuantizedTensor, dequantize_tensor, quantize_tensor
from compression.recipe import QuantizeSpec


def pruned(weight: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """float32 ``weight`` with the weights ``keep`` leaves out set to +0.0 (a copy where it changes)."""
    return zeroed_outside(weight, keep) if keep is not None else weight.float()


def decoded(kept: torch.Tensor, quantized: QuantizedTensor, spec: QuantizeSpec) -> torch.Tensor:
    """The values ``quantized`` decodes to, zero wherever ``kept`` (the rounded tensor) is zero."""
    values = dequantize_tensor(quantized.codes, quantized.params, spec, kept.shape)
    if not quantized.represents_zero:  # binary, k-means: zero comes from the positions
        values.masked_fill_(zero_flags(kept), 0.0)
    if spec.scheme == "float" or not quantized.represents_zero:
        # One canonical zero (+0.0): a float cast keeps -0.0 and underflows to it; -0.0 + 0.0
        # is +0.0 and x + 0.0 is x otherwise. Integer codes decode zero to +0.0 already, and a
        # pruned weight's code is the zero code.
        values.add_(0.0)
    return values


def compress_tensor(
    weight: torch.Tensor, keep: torch.Tensor | None, spec: QuantizeSpec | None
) -> tuple[torch.Tensor, QuantizedTensor | None]:
    """Final float32 values and their codes (None: not quantized), output channels first as
    ``weight`` has them, for a scheme that needs no data."""
    kept = pruned(weight, keep)
    if spec is None:
        return kept + 0.0, None  # -0.0 + 0.0 is +0.0: one canonical zero; a new tensor, never the model's own
    quantized = quantize_tensor(kept, spec)
    return decoded(kept, quantized, spec), quantized
