"""What every quantization scheme produces and how a scheme plugs into the registry."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from compression.errors import CompressionError
from compression.recipe import QuantizeSpec


@dataclass(frozen=True)
class QuantizedTensor:
    """Integer codes plus the parameters that decode them (scale, zero_point, codebook...).

    ``codes - min_code`` fits in ``bits`` unsigned bits: that is what the packed file stores.
    ``represents_zero`` says whether some code decodes to exactly 0 in every group; when it
    does not (binary, k-means), zeros are recovered from the stored positions of non-zeros.
    ``levels`` is the grid of the widest group, sorted: what the histogram view draws.
    """

    codes: torch.Tensor
    params: dict[str, torch.Tensor]
    bits: int
    min_code: int
    represents_zero: bool
    levels: torch.Tensor | None
    label: str


class Encoder(Protocol):
    def __call__(self, weight: torch.Tensor, spec: QuantizeSpec) -> QuantizedTensor: ...


Decoder = Callable[[torch.Tensor, dict[str, torch.Tensor], QuantizeSpec, torch.Size], torch.Tensor]


@dataclass(frozen=True)
class Scheme:
    """One quantization scheme: ``encode`` to codes, ``decode`` back to float32 values.

    Decoding is the only way values are made, both in ``compress`` and when a packed file is
    loaded, so the two agree bit for bit.
    """

    encode: Encoder
    decode: Decoder


def needs_layer_inputs(weight: torch.Tensor, spec: QuantizeSpec) -> QuantizedTensor:
    """The encoder of GPTQ and AWQ without data: refused, since they round by a layer's inputs."""
    raise CompressionError(f"{spec.scheme} rounds each layer by its inputs: compress() runs it on calibration rows.")
