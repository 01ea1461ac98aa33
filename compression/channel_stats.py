"""Per-channel statistics that show the outliers quantization trips on.

A handful of input channels with activations tens of times larger than the rest (Dettmers et al.
2022, "LLM.int8()", NeurIPS) or heavy-tailed distributions (kurtosis far above a Gaussian's 3;
Bondarenko et al. 2023, "Quantizable Transformers", NeurIPS) stretch a shared scale until the
bulk of the values round to a few levels; one output channel's large weights do the same to a
per-tensor scale. These are the numbers that point at them.

>>> x = torch.tensor([[1.0, 0.0], [3.0, 0.0], [-1.0, 0.0], [1.0, 8.0]])  # rows: positions
>>> channel_maxima(x, axis=-1).tolist()
[3.0, 8.0]
>>> [round(value, 2) for value in channel_kurtosis(x, axis=-1).tolist()]  # the lone 8 is a tail
[2.0, 2.33]
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from compression.output_axes import OutputAxis


def _channels_last(values: torch.Tensor, axis: int) -> torch.Tensor:
    """(positions, channels) in float64: every other axis flattened into positions."""
    return values.detach().movedim(axis, -1).reshape(-1, values.shape[axis]).double()


def channel_maxima(values: torch.Tensor, axis: int) -> torch.Tensor:
    """max |x| of each channel along ``axis``, over every other position."""
    return _channels_last(values, axis).abs().amax(dim=0)


def channel_kurtosis(values: torch.Tensor, axis: int) -> torch.Tensor:
    """Pearson's kurtosis E[(x − μ)⁴] / σ⁴ of each channel (3 for a Gaussian; NaN for a
    constant channel)."""
    rows = _channels_last(values, axis)
    centred = rows - rows.mean(dim=0)
    variance = centred.square().mean(dim=0)
    return centred.pow(4).mean(dim=0) / variance.square().where(variance > 0, torch.tensor(float("nan"), dtype=rows.dtype))


@dataclass(frozen=True)
class ChannelRanges:
    """The smallest and largest value of each output channel of a weight."""

    low: np.ndarray
    high: np.ndarray

    @property
    def magnitude(self) -> np.ndarray:
        """max |w| per output channel."""
        return np.maximum(np.abs(self.low), np.abs(self.high))


def output_channel_ranges(weight: torch.Tensor, axis: OutputAxis) -> ChannelRanges:
    """Per output channel min and max of ``weight``, its output channels on ``axis``.

    >>> from compression.output_axes import CHANNELS_ON_AXIS_0
    >>> ranges = output_channel_ranges(torch.tensor([[1.0, -4.0], [0.5, 0.25]]), CHANNELS_ON_AXIS_0)
    >>> ranges.low.tolist(), ranges.magnitude.tolist()
    ([-4.0, 0.25], [4.0, 0.5])
    """
    rows = axis.channels_first(weight.detach())
    rows = rows.reshape(rows.shape[0], -1).float()
    return ChannelRanges(rows.amin(dim=1).numpy(), rows.amax(dim=1).numpy())
