"""What a compression reports about the weights it started from, computed once per model.

Every ``compress`` of a model reports, for each tensor it compresses, the original values'
range, their mean |w|, their power (Σ w²) and their histogram, per layer and pooled over the model. None of it
depends on the recipe (a histogram only on its display limit, which rarely changes between
recipes), yet it was a third of a MiniLM compress: a slider moving over one model recomputed it
on every move. Kept in the model's memo (``LoadedModel.cache``), each entry tagged with its
tensor's storage and version, so a tensor changed in place is measured anew.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from compression.model import LoadedModel
from compression.stats import Histogram, ValueRange, histogram, mean_magnitude, signal_power, value_range

MEMO_KEY = "original_weights"
HISTOGRAMS_PER_TENSOR = 4  # display limits kept per tensor; quantization that rounds the largest |w| up adds one


@dataclass
class _Measured:
    tag: tuple[int, int, tuple[int, ...]]  # data pointer, version counter, shape
    extremes: ValueRange
    spread: float  # mean |w|
    power: float  # Σ w², the signal of the SQNR
    histograms: dict[float, Histogram] = field(default_factory=dict)


class OriginalWeights:
    """The original tensors' ranges, mean |w| and histograms by name, each measured on first use."""

    def __init__(self) -> None:
        self._measured: dict[str, _Measured] = {}

    def _entry(self, name: str, tensor: torch.Tensor) -> _Measured:
        tag = (tensor.data_ptr(), tensor._version, tuple(tensor.shape))
        entry = self._measured.get(name)
        if entry is None or entry.tag != tag:
            entry = self._measured[name] = _Measured(tag, value_range(tensor), mean_magnitude(tensor),
                                                        signal_power(tensor))
        return entry

    def extremes(self, name: str, tensor: torch.Tensor) -> ValueRange:
        return self._entry(name, tensor).extremes

    def spread(self, name: str, tensor: torch.Tensor) -> float:
        """Mean |w| of the tensor."""
        return self._entry(name, tensor).spread

    def power(self, name: str, tensor: torch.Tensor) -> float:
        """Σ w² of the tensor."""
        return self._entry(name, tensor).power

    def histogram(self, name: str, tensor: torch.Tensor, limit: float) -> Histogram:
        entry = self._entry(name, tensor)
        counts = entry.histograms.get(limit)
        if counts is None:
            if len(entry.histograms) >= HISTOGRAMS_PER_TENSOR:
                entry.histograms.clear()
            counts = entry.histograms[limit] = histogram(tensor, limit, extremes=entry.extremes)
        return counts


def original_weights(loaded: LoadedModel) -> OriginalWeights:
    """The memo of ``loaded``'s original weights."""
    memo = loaded.cache.get(MEMO_KEY)
    if not isinstance(memo, OriginalWeights):
        memo = loaded.cache[MEMO_KEY] = OriginalWeights()
    return memo
