"""Exact view data for magnitude pruning in milliseconds: what a slider can show at once.

Magnitude pruning keeps |w| ≥ θ. Once each tensor's values are sorted (one pass, cached per
model), every number a slider move needs is a binary search: a tensor's count of |w| < θ is
the difference of two ranks, θ for an amount is found by bisection on θ's float32 bits
(exactly the engine's order statistic, without sorting the pooled weights), and each
histogram bin's surviving count is a difference of ranks. The results equal what
``compress`` reports for the same recipe (same cut, same bins). The packed file's exact size
needs one more pass per tensor (the largest gap between kept weights picks its encoding), a
few hundred milliseconds at 135M weights; only the metric needs the real compression.

>>> import torch
>>> index = MagnitudeIndex({"w": torch.tensor([0.1, -0.5, 0.02, 0.3])})
>>> preview = index.preview(PruneSpec(method="magnitude", amount=0.5, scope="global"))
>>> round(preview.threshold, 4), preview.layers["w"].zeros
(0.3, 2)
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from compression.compress import tied_names
from compression.model import LoadedModel
from compression.output_axes import CHANNELS_ON_AXIS_0, OutputAxis
from compression.packing import EncodedTensor, PackedModel, pruned_layout
from compression.recipe import PruneSpec, Recipe
from compression.stats import (
    HISTOGRAM_BINS,
    Histogram,
    bin_indices,
    display_limit,
    mean_magnitude,
    pooled_mean_magnitude,
)

_CACHE_KEY = "preview.magnitude_index"
_SCAN_CHUNK = 1 << 20  # values per step of the largest-gap scan: fits in cache, 2-3x faster than whole tensors
# Magnitudes that bracket an amount's cut: a model's sample is kept, a layer's drawn per move.
_SAMPLE_SIZE = 1 << 18
_LAYER_SAMPLE_SIZE = 1 << 12
_SMALLEST_POSITIVE = np.float32(np.finfo(np.float32).smallest_subnormal)


@dataclass(frozen=True)
class LayerPreview:
    """One tensor's zeros after the cut; its histograms are drawn on demand (a page shows one)."""

    zeros: int
    parameters: int
    threshold: float  # this layer's cut: |w| below it become zero (-inf: none, +inf: all)
    sorted_weights: _SortedWeights = field(repr=False, compare=False)

    @property
    def sparsity(self) -> float:
        return self.zeros / self.parameters

    @property
    def histogram_before(self) -> Histogram:
        return self.sorted_weights.histograms(self.sorted_weights.limit, self.threshold)[0]

    @property
    def histogram_after(self) -> Histogram:
        return self.sorted_weights.histograms(self.sorted_weights.limit, self.threshold)[1]


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


@dataclass(frozen=True)
class PackedSizes:
    """The sizes ``compress`` reports for a recipe (``CompressionReport``'s fields of the same names)."""

    sparsity: float
    dense_fp32_bytes: int
    encoded_bytes: int
    file_bytes: int

    @property
    def compression_ratio(self) -> float:
        return self.dense_fp32_bytes / max(self.file_bytes, 1)


def _f32(value: float) -> np.float32:
    """A cut as the engine compares it: torch casts a Python float to the tensor's float32.
    (numpy would instead widen the whole sorted array to float64 on every search.)"""
    return np.float32(value)


class _SortedWeights:
    """One tensor's values sorted (NaN last): counts of |w| below a cut by two binary searches."""

    def __init__(self, weight: torch.Tensor) -> None:
        self.values = np.sort(weight.detach().reshape(-1).float().numpy())
        self.size = self.values.size
        self.finite = int(np.searchsorted(self.values, np.float32(np.nan), side="left"))  # NaN sort last
        ends = self.values[[0, self.finite - 1]] if self.finite else np.zeros(1, np.float32)
        self.largest = float(np.abs(ends).max())
        self.mean = mean_magnitude(weight)  # in stored order, as compress computes it
        self.limit = display_limit(self.largest, self.mean)  # the histogram's half-width
        self._ranks: dict[float, np.ndarray] = {}
        self._grids: dict[float, tuple[np.ndarray, int]] = {}

    def at_most(self, magnitude: np.float32) -> int:
        """How many |w| ≤ ``magnitude``."""
        return int(self.values.searchsorted(magnitude, "right") - self.values.searchsorted(-magnitude, "left"))

    def between(self, low: np.float32 | None, high: np.float32) -> np.ndarray:
        """The magnitudes in (low, high] (in [0, high] when ``low`` is None): two slices of the sorted values."""
        zero = np.float32(0.0)
        positive_start = self.values.searchsorted(zero, "left") if low is None else self.values.searchsorted(low, "right")
        negative_end = self.values.searchsorted(zero, "left") if low is None else self.values.searchsorted(-low, "left")
        positive = self.values[positive_start : self.values.searchsorted(high, "right")]
        negative = self.values[self.values.searchsorted(-high, "left") : negative_end]
        return np.abs(np.concatenate([negative, positive]))

    def below(self, threshold: float) -> int:
        """How many |w| < threshold."""
        if not threshold > 0:
            return 0
        cut = _f32(threshold)
        return int(np.searchsorted(self.values, cut, side="left") - np.searchsorted(self.values, -cut, side="right"))

    def zeros_after(self, threshold: float) -> int:
        return max(self.below(threshold), self.at_most(np.float32(0.0)))

    def bin_ranks(self, limit: float) -> np.ndarray:
        """How many values lie in the engine's bins below each bin, on [-limit, limit].

        The engine's bin of a value is monotone in the value, so the first value of each bin is
        found by a binary search over the sorted values, all bins at once: 25 small steps instead
        of binning every value.
        """
        if limit not in self._ranks:
            low, high = float(np.float32(-limit)), float(np.float32(limit))
            targets = np.arange(HISTOGRAM_BINS + 1)
            first, last = np.zeros_like(targets), np.full_like(targets, self.finite)
            while (open_ := first < last).any():
                middle = (first + last) // 2
                probe = self.values[np.minimum(middle, max(self.finite - 1, 0))]
                bins = bin_indices(torch.from_numpy(probe), low, high, HISTOGRAM_BINS).numpy().astype(np.int64)
                lower = open_ & (bins < targets)
                first = np.where(lower, middle + 1, first)
                last = np.where(open_ & ~lower, middle, last)
            self._ranks[limit] = first
        return self._ranks[limit]

    def _grid(self, limit: float) -> tuple[np.ndarray, int]:
        """The bin edges on [-limit, limit] and the engine's bin of zero."""
        if limit not in self._grids:
            low, high = float(np.float32(-limit)), float(np.float32(limit))
            zero_bin = int(bin_indices(torch.zeros(1), low, high, HISTOGRAM_BINS)[0])
            self._grids[limit] = np.linspace(-limit, limit, HISTOGRAM_BINS + 1), zero_bin
        return self._grids[limit]

    def outside(self, limit: float, threshold: float) -> int:
        """How many values have |w| beyond ``limit`` (float32, as the engine's bins) and |w| ≥ θ."""
        return self.size - max(self.at_most(np.float32(limit)), self.below(threshold))

    def histograms(self, limit: float, threshold: float) -> tuple[Histogram, Histogram]:
        """Before and after pruning at θ, on [-limit, limit] in the engine's bins."""
        limit = limit if limit > 0 else 1.0
        edges, zero_bin = self._grid(limit)
        ranks = self.bin_ranks(limit)
        before = np.diff(ranks)
        outside_before = self.outside(limit, -math.inf)
        if not threshold > 0:
            return Histogram(before, edges, outside_before), Histogram(before.copy(), edges, outside_before)
        cut = _f32(threshold)
        low = np.searchsorted(self.values, -cut, side="right")  # first value > -θ
        high = np.searchsorted(self.values, cut, side="left")  # first value ≥ θ
        removed = np.diff(np.clip(ranks, low, high))  # per bin: values with -θ < v < θ
        after = before - removed
        after[zero_bin] += int(removed.sum())
        return Histogram(before, edges, outside_before), Histogram(after, edges, self.outside(limit, threshold))


def _magnitude_sample(tensors: list[_SortedWeights], stride: int) -> np.ndarray:
    """Every ``stride``-th value of each tensor's sorted values, as sorted magnitudes."""
    return np.sort(np.abs(np.concatenate([tensor.values[: tensor.finite : stride] for tensor in tensors])))


def _kth_magnitude(tensors: list[_SortedWeights], k: int, sample: np.ndarray, stride: int) -> float:
    """The k-th smallest |w| (1-based) of ``tensors`` pooled, as ``torch.kthvalue`` gives it.

    ``sample`` (:func:`_magnitude_sample` with ``stride``) counts each tensor's |w| ≤ t to within
    2·stride, so it brackets the answer between two sample values; the few magnitudes between
    them are gathered from each tensor's sorted values (two slices) and the answer picked among
    them. Sorting the pooled magnitudes instead would copy and sort every weight again.
    """
    if sum(tensor.finite for tensor in tensors) < k:
        return math.nan  # kthvalue sorts NaN last
    margin = 2 * len(tensors) + 1
    low_index, high_index = k // stride - margin - 1, -(-k // stride) + margin
    low = sample[low_index] if low_index >= 0 else None  # None: below every magnitude
    high = sample[high_index] if high_index < sample.size else np.float32(np.inf)
    below = sum(tensor.at_most(low) for tensor in tensors) if low is not None else 0
    if not below < k <= sum(tensor.at_most(high) for tensor in tensors):  # the bracket is exact: never
        low, high, below = None, np.float32(np.inf), 0
    between = np.concatenate([tensor.between(low, high) for tensor in tensors])
    return float(np.partition(between, k - below - 1)[k - below - 1])


def _cut(tensors: list[_SortedWeights], spec: PruneSpec, sample: np.ndarray | None = None, stride: int = 1) -> float:
    """The engine's cut for ``spec`` over ``tensors``: |w| below it become zero."""
    if spec.threshold is not None:
        return spec.threshold
    total = sum(tensor.size for tensor in tensors)
    count = round(spec.amount * total)
    if count <= 0:
        return -math.inf
    if count >= total:
        return math.inf
    if sample is None:
        stride = max(1, total // _LAYER_SAMPLE_SIZE)
        sample = _magnitude_sample(tensors, stride)
    return _kth_magnitude(tensors, count + 1, sample, stride)  # the (count+1)-th smallest, as the engine cuts


def _largest_gap(weight: torch.Tensor, threshold: float) -> int:
    """The packed file's largest gap between non-zeros after pruning at θ (flat order).

    Hand-written chunked scan: the gap decides the positions' encoding and the file's header,
    and no library finds the longest run of a predicate; chunks keep it in cache.
    """
    flat = weight.detach().reshape(-1).float().numpy()
    cut = max(_f32(threshold), _SMALLEST_POSITIVE) if threshold > 0 else _SMALLEST_POSITIVE  # non-zero and kept
    largest, previous = 0, -1
    for start in range(0, flat.size, _SCAN_CHUNK):
        kept = np.flatnonzero(np.abs(flat[start : start + _SCAN_CHUNK]) >= cut)
        if kept.size:
            kept += start
            largest = max(largest, int(kept[0]) - previous - 1, int(np.diff(kept).max(initial=1)) - 1)
            previous = int(kept[-1])
    return largest


class MagnitudeIndex:
    """Sorted weights of a model's compressible tensors, built once and reused per move.

    ``weights`` are by state-dict name; ``output_axes`` says which are stored with their output
    channels on axis 1 (the packed file scans them channels first), and ``untouched`` is the rest
    of the state dict, stored raw, which :meth:`sizes` counts.
    """

    def __init__(
        self,
        weights: dict[str, torch.Tensor],
        output_axes: dict[str, OutputAxis] | None = None,
        untouched: dict[str, torch.Tensor] | None = None,
        aliases: dict[str, str] | None = None,
        model_name: str = "model",
    ) -> None:
        weights = {name: weight for name, weight in weights.items() if weight.numel()}
        with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:  # numpy's sort releases the GIL
            self.tensors = dict(zip(weights, pool.map(_SortedWeights, weights.values())))
        self.weights = weights
        self.output_axes = output_axes or {}
        self.untouched = untouched or {}
        self.aliases = aliases or {}
        self.model_name = model_name
        self.largest = max((t.largest for t in self.tensors.values()), default=0.0)  # the θ slider's end
        mean = pooled_mean_magnitude([(t.mean, t.size) for t in self.tensors.values()])
        self.limit = display_limit(self.largest, mean)  # half-width of the all-layers histogram
        self._stride = max(1, sum(t.size for t in self.tensors.values()) // _SAMPLE_SIZE)
        self._sample = _magnitude_sample(list(self.tensors.values()), self._stride) if self.tensors else np.zeros(0, np.float32)
        for tensor in self.tensors.values():  # every move needs both histograms' bins
            tensor.bin_ranks(tensor.limit)
            tensor.bin_ranks(self.limit)
        self._global_cuts: dict[float, float] = {}

    @classmethod
    def of(cls, model: LoadedModel) -> MagnitudeIndex:
        """The index of a loaded model's compressible weights, cached on the model."""
        if _CACHE_KEY not in model.cache:
            state = model.module.state_dict()
            tied = tied_names(state)
            weights = {name: state[name] for name in model.compressible  # what compress compresses
                       if name not in tied and state[name].is_floating_point() and state[name].numel()}
            untouched = {name: tensor for name, tensor in state.items() if name not in weights and name not in tied}
            model.cache[_CACHE_KEY] = cls(weights, dict(model.output_axes), untouched, tied, model.name)
        return model.cache[_CACHE_KEY]

    def cuts(self, spec: PruneSpec) -> dict[str, float]:
        """Each tensor's cut for magnitude pruning with ``spec``."""
        if spec.method != "magnitude":
            raise ValueError(f"previews cover magnitude pruning only; got method {spec.method!r}.")
        if spec.threshold is not None:
            return dict.fromkeys(self.tensors, spec.threshold)
        if spec.scope == "global":  # a slider has ~100 positions: each one's bisection runs once
            if spec.amount not in self._global_cuts:
                self._global_cuts[spec.amount] = _cut(list(self.tensors.values()), spec, self._sample, self._stride)
            return dict.fromkeys(self.tensors, self._global_cuts[spec.amount])
        return {name: _cut([tensor], spec) for name, tensor in self.tensors.items()}

    def preview(self, spec: PruneSpec) -> PruningPreview:
        """What magnitude pruning with ``spec`` does to every compressible tensor."""
        cuts = self.cuts(spec)
        shared = None if spec.scope == "layer" and spec.threshold is None else next(iter(cuts.values()), None)
        layers = {}
        for name, tensor in self.tensors.items():
            layers[name] = LayerPreview(tensor.zeros_after(cuts[name]), tensor.size, cuts[name], tensor)
        return PruningPreview(shared, layers, *self._totals(cuts))

    def pruned(self, name: str, threshold: float) -> torch.Tensor:
        """One tensor after pruning at θ, output channels first (what its sparsity map shows)."""
        weight = self.output_axes.get(name, CHANNELS_ON_AXIS_0).channels_first(self.weights[name])
        if not threshold > 0:
            return weight
        return torch.where(weight.abs() >= _f32(threshold).item(), weight, torch.zeros((), dtype=weight.dtype))

    def sizes(self, recipe: Recipe) -> PackedSizes:
        """The exact sizes of the packed file ``compress`` writes for ``recipe`` (magnitude
        pruning alone: see :func:`previewable`), from the cuts and one scan per tensor."""
        cuts = self.cuts(recipe.prune)
        with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:  # numpy's scans release the GIL
            encoded = dict(zip(self.tensors, pool.map(lambda name: self._layout(name, cuts[name]), self.tensors)))
        zeros = sum(self.tensors[name].size - layout.entry["nonzero"] for name, layout in encoded.items())
        packed = PackedModel(encoded=encoded, raw=self.untouched, recipe_json=recipe.to_json(),
                             model_name=self.model_name, aliases=self.aliases)
        parameters = sum(tensor.size for tensor in self.tensors.values())
        dense = sum(t.numel() * (4 if t.is_floating_point() else t.element_size())
                    for t in [*self.weights.values(), *self.untouched.values()])
        return PackedSizes(zeros / parameters if parameters else 0.0, dense, packed.encoded_bytes, packed.file_bytes)

    def _layout(self, name: str, threshold: float) -> EncodedTensor:
        """What the packed file stores for one tensor pruned at θ, as shapes only."""
        tensor, axis = self.tensors[name], self.output_axes.get(name, CHANNELS_ON_AXIS_0)
        nonzero = tensor.size - tensor.zeros_after(threshold)
        gap = _largest_gap(axis.channels_first(self.weights[name]), threshold) if nonzero else 0
        return pruned_layout(self.weights[name].shape, nonzero, gap.bit_length(), axis)

    def _totals(self, cuts: dict[str, float]) -> tuple[Histogram, Histogram]:
        parts = [tensor.histograms(self.limit, cuts[name]) for name, tensor in self.tensors.items()]
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
