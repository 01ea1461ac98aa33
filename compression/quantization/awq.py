"""AWQ's codes (Lin et al. 2024): the linear grid over W·diag(s), divided by s on the way back.

``input_scale`` holds s, one entry per input channel (a convolution's kernel positions share
their channel's); the other parameters are the linear scheme's for W·diag(s). The codes are made
by ``compression.calibrated.awq``, which needs the layer's inputs: here is only the way back.

>>> import torch
>>> spec = QuantizeSpec(scheme="awq", bits=4)
>>> params = {"scale": torch.tensor([[0.5]]), "input_scale": torch.tensor([1.0, 2.0])}
>>> decode(torch.tensor([[2, 2]]), params, spec, torch.Size([1, 2])).tolist()
[[1.0, 0.5]]
"""
from __future__ import annotations

from dataclasses import replace

import torch

from compression.quantization import linear
from compression.recipe import QuantizeSpec


def decode(codes: torch.Tensor, params: dict[str, torch.Tensor], spec: QuantizeSpec, shape: torch.Size) -> torch.Tensor:
    """linear.decode(codes) / s, s repeated over each channel's kernel positions."""
    input_scale = params["input_scale"]
    rows = torch.Size([shape[0], shape[1:].numel()])
    grid = {name: value for name, value in params.items() if name != "input_scale"}
    scaled = linear.decode(codes, grid, replace(spec, scheme="linear"), rows)
    return (scaled / input_scale.repeat_interleave(rows[1] // input_scale.numel())).reshape(shape)
