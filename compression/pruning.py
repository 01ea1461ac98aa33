"""Pruning masks: which weights of each tensor survive (True) and which become zero.

Every method reduces to a score per element (or per output channel) and a cut: scores below
the cut are pruned. ``threshold`` gives the cut directly; ``amount`` turns into the cut that
removes that fraction, over one tensor (scope ``layer``) or over all tensors that share the
same prune section (scope ``global``). The cut actually used is returned so the UI can show θ.

>>> import torch
>>> masks = compute_masks({"w": torch.tensor([0.1, -0.5, 0.02, 0.3])},
...                       {"w": PruneSpec(method="magnitude", amount=0.5)})
>>> masks["w"].keep.tolist()
[False, True, False, True]
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from compression.masks_numpy import at_least, count_below, within
from compression.output_axes import CHANNELS_ON_AXIS_0, OutputAxis
from compression.recipe import PruneSpec


@dataclass(frozen=True)
class PruneMask:
    """The keep-mask of one tensor and the cut θ that produced it (None for random and n:m)."""

    keep: torch.Tensor
    threshold: float | None


def as_rows(weight: torch.Tensor) -> torch.Tensor:
    """Output channels as rows: conv weights become out × (in·k·k); 1-D tensors one row each."""
    if weight.ndim == 0:
        return weight.reshape(1, 1)
    if weight.ndim == 1:
        return weight.reshape(-1, 1)
    return weight.reshape(weight.shape[0], -1)


def _magnitude_scores(weight: torch.Tensor, spec: PruneSpec) -> torch.Tensor:
    return weight.abs()


def _channel_scores(weight: torch.Tensor, spec: PruneSpec) -> torch.Tensor:
    """Mean |w| (l1) or RMS (l2) per output channel: normalised so layers compare globally.

    Summed in float64: in float32 the squares of |w| > 1.8e19 overflow to inf, every such
    channel would tie at inf and not even amount 1 would prune it. The result fits float32.
    """
    rows = as_rows(weight)
    if spec.norm == "l1":
        return rows.abs().mean(dim=1, dtype=torch.float64).float()
    rms = torch.linalg.vector_norm(rows, dim=1, dtype=torch.float64) / math.sqrt(max(rows.shape[1], 1))
    return rms.float()


def _random_scores(weight: torch.Tensor, spec: PruneSpec, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(weight.shape, generator=generator, dtype=torch.float32)


def _cut_for_amount(scores: list[torch.Tensor], amount: float) -> float:
    """The smallest cut that prunes round(amount · n) scores (fewer only on exact ties)."""
    total = sum(s.numel() for s in scores)
    count = round(amount * total)
    if count <= 0:
        return float("-inf")
    if count >= total:
        return float("inf")
    # The (count+1)-th smallest score: everything strictly below it is pruned.
    return _kth_smallest([s.reshape(-1).float() for s in scores], count + 1)


_DIRECT_SELECTION = 1 << 20  # pools up to this many scores go straight to kthvalue
_SAMPLE_SIZE = 1 << 16


def _kth_smallest(flats: list[torch.Tensor], k: int) -> float:
    """The k-th smallest (1-based) of ``flats`` pooled, exactly ``torch.kthvalue`` of their concatenation.

    A large pool is not concatenated (kthvalue would copy it twice more, with int64 indices, and
    select on one thread): a random sample brackets the answer, one counting pass per tensor
    keeps the few scores inside the bracket, and kthvalue runs on those. Should the bracket miss
    (improbable; NaN scores), the plain concatenation decides.
    """
    total = sum(f.numel() for f in flats)
    if total > _DIRECT_SELECTION:
        low, high = _sample_bracket(flats, total, k)
        below = sum(count_below(flat, low) for flat in flats)
        pool = torch.cat([within(flat, low, high) for flat in flats])  # NaN in neither
        # Sorted, the pool is [< low] [low..high] [> high] [NaN]: the answer is in the middle part.
        if below < k <= below + pool.numel():
            return float(torch.kthvalue(pool, k - below).values)
    pooled = flats[0] if len(flats) == 1 else torch.cat(flats)
    return float(torch.kthvalue(pooled, k).values)


def _sample_bracket(flats: list[torch.Tensor], total: int, k: int) -> tuple[float, float]:
    """Bounds that hold the k-th smallest of the pool but for odds of about 1e-9 (seeded sample)."""
    generator = torch.Generator().manual_seed(0)
    sample = torch.cat([
        flat[torch.randint(flat.numel(), (max(1, _SAMPLE_SIZE * flat.numel() // total),), generator=generator)]
        for flat in flats
        if flat.numel()
    ]).sort().values
    size, fraction = sample.numel(), k / total
    spread = 6.0 * math.sqrt(size * fraction * (1.0 - fraction)) + 2.0  # ranks: 6 sigma of a binomial
    low_rank, high_rank = math.floor(fraction * size - spread), math.ceil(fraction * size + spread)
    low = float(sample[low_rank]) if low_rank >= 0 else -math.inf
    high = float(sample[high_rank]) if high_rank < size else math.inf
    return (low, high) if not (math.isnan(low) or math.isnan(high)) else (-math.inf, math.inf)


def _cut_masks(scores: list[torch.Tensor], spec: PruneSpec) -> tuple[list[torch.Tensor], float]:
    cut = spec.threshold if spec.threshold is not None else _cut_for_amount(scores, spec.amount)
    return [at_least(s, cut) for s in scores], cut


def _n_m_keep(weight: torch.Tensor, spec: PruneSpec) -> torch.Tensor:
    """Keep the n largest |w| of every m consecutive weights along the input dimension.

    Conv weights are grouped across input channels at each kernel position, as sparse tensor
    cores (and NVIDIA's ASP) see them: out × kh × kw × in.
    """
    if weight.ndim > 2:
        channels_last = weight.movedim(1, -1)
        return _n_m_keep(channels_last.reshape(weight.shape[0], -1), spec).reshape(channels_last.shape).movedim(-1, 1)
    rows = as_rows(weight).abs()
    out_rows, cols = rows.shape
    pad = (-cols) % spec.m
    # Padding scores -1 sit below every real |w|, so a short last group keeps its real weights.
    padded = torch.nn.functional.pad(rows, (0, pad), value=-1.0).reshape(out_rows, -1, spec.m)
    keep = torch.zeros_like(padded, dtype=torch.bool)
    if spec.n > 0:
        keep.scatter_(2, padded.topk(spec.n, dim=2).indices, True)
    keep &= padded >= 0
    return keep.reshape(out_rows, -1)[:, :cols].reshape(weight.shape)


def _expand_channels(keep_rows: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    rows = as_rows(weight)
    return keep_rows[:, None].expand(rows.shape).reshape(weight.shape)


def _group_key(spec: PruneSpec, name: str) -> tuple:
    """Tensors pooled together: all that share a global spec, or each tensor on its own."""
    return (spec,) if spec.scope == "global" and spec.method != "n:m" else (spec, name)


def compute_masks(
    weights: dict[str, torch.Tensor], specs: dict[str, PruneSpec], output_axes: Mapping[str, OutputAxis] | None = None
) -> dict[str, PruneMask]:
    """Keep-masks for every tensor in ``specs``; ``weights`` is only read.

    Output channels are rows (axis 0); ``output_axes`` names the weights that keep them on
    axis 1: those are masked channels-first, and their masks given back in their own layout.
    """
    if output_axes:
        axes = {name: output_axes.get(name, CHANNELS_ON_AXIS_0) for name in specs}
        rows = compute_masks({name: axes[name].channels_first(weights[name]) for name in specs}, specs)
        return {name: PruneMask(axes[name].restored(mask.keep), mask.threshold) for name, mask in rows.items()}
    groups: dict[tuple, list[str]] = {}
    for name, spec in specs.items():
        groups.setdefault(_group_key(spec, name), []).append(name)

    masks: dict[str, PruneMask] = {}
    for key, names in groups.items():
        spec: PruneSpec = key[0]
        if spec.method == "n:m":
            for name in names:
                masks[name] = PruneMask(_n_m_keep(weights[name], spec), None)
            continue
        score: Callable[[torch.Tensor, PruneSpec], torch.Tensor]
        if spec.method == "random":
            generator = torch.Generator().manual_seed(spec.seed)
            score = lambda w, s: _random_scores(w, s, generator)  # noqa: E731 - one seeded stream
        else:
            score = _channel_scores if spec.method == "structured" else _magnitude_scores
        scores = [score(weights[name], spec) for name in names]
        keeps, cut = _cut_masks(scores, spec)
        for name, keep in zip(names, keeps):
            if spec.method == "structured":
                keep = _expand_channels(keep, weights[name])
            masks[name] = PruneMask(keep, None if spec.method == "random" else cut)
    return masks
