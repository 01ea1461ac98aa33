"""Exact view data for magnitude pruning in microseconds: what a slider can show at once.

Magnitude pruning keeps |w| ≥ θ. Once a model's weights are sorted (one pass, cached per
model), every number a slider move needs is a binary search: θ for an amount is an order
statistic, a layer's sparsity is a rank, and each histogram bin's surviving count is a
difference of ranks. The results equal what ``compress`` reports for the same recipe (same
cut, same bins); sizes and the metric still need the real compression, which the dashboard
runs right after drawing these.

>>> import torch
>>> index = MagnitudeIndex({"w": torch.tensor([0.1, -0.5, 0.02, 0.3])})
>>> preview = index.preview(PruneSpec(method="magnitude", amount=0.5, scope="global"))
>>> round(preview.threshold, 4), preview.layers["w"].zeros
(0.3, 2)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from compression.model import LoadedModel
from compression.recipe import PruneSpec, Recipe
from compression.stats import (
    HISTOGRAM_BINS,
    Histogram,
    bin_indices,
    display_limit,
    pooled_mean_magnitude,
    mean_magnitude,
)

_CACHE_KEY = "preview.magnitude_index"


@dataclass(frozen=True)
class LayerPreview:
    zeros: int
    parameters: int
    histogram_before: Histogram
    histogram_after: Histogram

    @property
    def sparsity(self) -> float:
        return self.zeros / self.parameters


@dataclass(frozen=True)
class PruningPreview:
    """θ, per-layer zeros and histograms, and the histograms of all layers together."""

    threshold: float | None  # None with scope "layer" and an amount: each layer has its own
    layers: dict[str, LayerPreview]
    histogram_before: Histogram
    histogram_after: Histogram

    @property
    def sparsity(self) -> float:
        return sum(layer.zeros for layer in self.layers.values()) / max(
            sum(layer.parameters for layer in self.layers.values()), 1
        )


class _SortedWeights:
    """One tensor's values sorted, and its magnitudes sorted: counts by binary search."""

    def __init__(self, weight: torch.Tensor) -> None:
        flat = weight.detach().reshape(-1).float()
        self.values = flat.sort().values.numpy()
        self.magnitudes = flat.abs().sort().values.numpy()
        self.largest = float(self.magnitudes[-1]) if self.magnitudes.size else 0.0
        self.mean = mean_magnitude(weight)  # in stored order, as compress computes it
        self.limit = display_limit(self.largest, self.mean)  # the histogram's half-width
        self._ranks: dict[float, np.ndarray] = {}

    def below(self, threshold: float) -> int:
        """How many |w| < threshold."""
        return int(np.searchsorted(self.magnitudes, threshold, side="left"))

    def zeros_after(self, threshold: float) -> int:
        return max(self.below(threshold), int(np.searchsorted(self.magnitudes, 0.0, side="right")))

    def bin_ranks(self, limit: float) -> np.ndarray:
        """Rank of each bin's first value on [-limit, limit], in the engine's own bins.

        The engine's bin of a value is monotone in the value, so binning the sorted values
        once (then searching) gives counts identical to its histograms, edges included.
        """
        if limit not in self._ranks:
            low, high = float(np.float32(-limit)), float(np.float32(limit))
            indices = bin_indices(torch.from_numpy(self.values), low, high, HISTOGRAM_BINS).numpy()
            ranks = np.searchsorted(indices, np.arange(HISTOGRAM_BINS + 1), side="left")
            self._ranks[limit] = ranks
        return self._ranks[limit]

    def outside(self, limit: float, threshold: float) -> int:
        """How many values have |w| beyond ``limit`` (float32, as the engine's bins) and |w| ≥ θ."""
        beyond = int(np.searchsorted(self.magnitudes, np.float32(limit), side="right"))
        return self.magnitudes.size - max(beyond, self.below(threshold) if threshold > 0 else 0)

    def histograms(self, limit: float, threshold: float) -> tuple[Histogram, Histogram]:
        """Before and after pruning at θ, on [-limit, limit] in the engine's bins."""
        limit = limit if limit > 0 else 1.0
        edges = np.linspace(-limit, limit, HISTOGRAM_BINS + 1)
        ranks = self.bin_ranks(limit)
        before = np.diff(ranks)
        outside_before = self.outside(limit, -math.inf)
        if not threshold > 0:
            return Histogram(before, edges, outside_before), Histogram(before.copy(), edges, outside_before)
        low = np.searchsorted(self.values, -threshold, side="right")  # first value > -θ
        high = np.searchsorted(self.values, threshold, side="left")  # first value ≥ θ
        removed = np.diff(np.clip(ranks, low, high))  # per bin: values with -θ < v < θ
        after = before - removed
        low_edge, high_edge = float(np.float32(-limit)), float(np.float32(limit))
        zero_bin = int(bin_indices(torch.zeros(1), low_edge, high_edge, HISTOGRAM_BINS)[0])
        after[zero_bin] += int(removed.sum())
        return Histogram(before, edges, outside_before), Histogram(after, edges, self.outside(limit, threshold))


class MagnitudeIndex:
    """Sorted weights of a model's compressible tensors, built once and reused per move."""

    def __init__(self, weights: dict[str, torch.Tensor]) -> None:
        self.tensors = {name: _SortedWeights(weight) for name, weight in weights.items() if weight.numel()}
        self.pooled = np.sort(np.concatenate([t.magnitudes for t in self.tensors.values()])) if self.tensors else np.zeros(0)
        self.largest = max((t.largest for t in self.tensors.values()), default=0.0)  # the θ slider's end
        mean = pooled_mean_magnitude([(t.mean, t.values.size) for t in self.tensors.values()])
        self.limit = display_limit(self.largest, mean)  # half-width of the all-layers histogram

    @classmethod
    def of(cls, model: LoadedModel) -> MagnitudeIndex:
        """The index of a loaded model's compressible weights, cached on the model."""
        if _CACHE_KEY not in model.cache:
            state = model.module.state_dict()
            model.cache[_CACHE_KEY] = cls({name: state[name] for name in model.compressible})
        return model.cache[_CACHE_KEY]

    def _cut(self, magnitudes: np.ndarray, spec: PruneSpec) -> float:
        if spec.threshold is not None:
            return spec.threshold
        count = round(spec.amount * magnitudes.size)
        if count <= 0:
            return -math.inf
        if count >= magnitudes.size:
            return math.inf
        return float(magnitudes[count])  # the (count+1)-th smallest, as the engine cuts

    def preview(self, spec: PruneSpec) -> PruningPreview:
        """What magnitude pruning with ``spec`` does to every compressible tensor."""
        if spec.method != "magnitude":
            raise ValueError(f"previews cover magnitude pruning only; got method {spec.method!r}.")
        shared = self._cut(self.pooled, spec) if spec.scope == "global" or spec.threshold is not None else None
        layers = {}
        for name, tensor in self.tensors.items():
            cut = shared if shared is not None else self._cut(tensor.magnitudes, spec)
            before, after = tensor.histograms(tensor.limit, cut)
            layers[name] = LayerPreview(tensor.zeros_after(cut), tensor.values.size, before, after)
        total_before, total_after = self._totals(spec, shared)
        return PruningPreview(shared, layers, total_before, total_after)

    def _totals(self, spec: PruneSpec, shared: float | None) -> tuple[Histogram, Histogram]:
        parts = []
        for tensor in self.tensors.values():
            cut = shared if shared is not None else self._cut(tensor.magnitudes, spec)
            parts.append(tensor.histograms(self.limit, cut))
        edges = np.linspace(-self.limit, self.limit, HISTOGRAM_BINS + 1)
        before = sum((part[0].counts for part in parts), np.zeros(HISTOGRAM_BINS, dtype=np.int64))
        after = sum((part[1].counts for part in parts), np.zeros(HISTOGRAM_BINS, dtype=np.int64))
        outside_before, outside_after = (sum(part[i].outside for part in parts) for i in (0, 1))
        return Histogram(before, edges, outside_before), Histogram(after, edges, outside_after)


def previewable(recipe: Recipe) -> bool:
    """Whether :class:`MagnitudeIndex` can show this recipe exactly: magnitude pruning alone."""
    return (
        recipe.prune is not None
        and recipe.prune.method == "magnitude"
        and recipe.quantize is None
        and not recipe.overrides
        and not recipe.include
        and not recipe.exclude
    )
