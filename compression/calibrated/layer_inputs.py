"""A layer's input as the (samples, in_features) matrix X that its weight multiplies: y = W Xᵀ.

A Linear's input is its feature vectors; a convolution's is its unfolded input patches
(``torch.nn.functional.unfold``), one row per output position, its columns in the order of
``weight.reshape(out, -1)`` (input channel, then kernel row, then kernel column). Padding is
applied first as the layer pads (zeros, reflect, replicate, circular; ``"same"`` included).

>>> import torch
>>> conv = torch.nn.Conv2d(3, 8, 3, padding=1)
>>> layer_inputs(conv, torch.randn(2, 3, 5, 5)).shape
torch.Size([50, 27])
"""
from __future__ import annotations

import torch
from torch.nn import functional

from compression.errors import CompressionError, DataError


def _padding(conv: torch.nn.Conv1d | torch.nn.Conv2d) -> list[int]:
    """(left, right) per spatial dimension, last dimension first, as ``functional.pad`` takes it."""
    pads: list[int] = []
    for index in reversed(range(len(conv.kernel_size))):
        if conv.padding == "same":  # torch puts the odd pixel on the right
            total = conv.dilation[index] * (conv.kernel_size[index] - 1)
            pads += [total // 2, total - total // 2]
        elif conv.padding == "valid":
            pads += [0, 0]
        else:
            pads += [conv.padding[index]] * 2
    return pads


def layer_inputs(module: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The (samples, in_features) matrix of ``module``'s weight for a batch of its ``inputs``.

    For a Linear, in_features = in; for a Conv1d or Conv2d, in·k (·k). ``inputs`` is only read;
    a convolution's may be unbatched, as the layer accepts it.
    """
    x = inputs.detach()
    if isinstance(module, torch.nn.Linear):
        if x.ndim == 0 or x.shape[-1] != module.in_features:
            raise DataError(
                f"layer_inputs: a Linear({module.in_features}, ...) takes inputs (..., {module.in_features}); "
                f"got {tuple(x.shape)}."
            )
        return x.reshape(-1, module.in_features)
    if not isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)):
        raise CompressionError(
            f"layer_inputs: module must be a Linear, Conv1d or Conv2d; got {type(module).__name__}."
        )
    spatial = len(module.kernel_size)
    if x.ndim == spatial + 1:
        x = x.unsqueeze(0)
    if x.ndim != spatial + 2 or x.shape[1] != module.in_channels:
        raise DataError(
            f"layer_inputs: a {type(module).__name__} with {module.in_channels} input channels takes inputs "
            f"(batch, {module.in_channels}{', ...' * spatial}); got {tuple(inputs.shape)}."
        )
    if module.groups != 1:
        raise CompressionError(
            f"layer_inputs: a grouped convolution (groups={module.groups}) has no single input matrix; "
            "give each group's weight and inputs separately."
        )
    mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
    x = functional.pad(x, _padding(module), mode=mode)
    if isinstance(module, torch.nn.Conv1d):  # a Conv1d is a Conv2d of height 1
        x = x.unsqueeze(2)
        kernel, dilation, stride = (1, *module.kernel_size), (1, *module.dilation), (1, *module.stride)
    else:
        kernel, dilation, stride = module.kernel_size, module.dilation, module.stride
    patches = functional.unfold(x, kernel, dilation=dilation, stride=stride)  # (batch, in·k·k, positions)
    return patches.transpose(1, 2).reshape(-1, patches.shape[1])
