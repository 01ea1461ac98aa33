"""How far a layer's outputs moved: SQNR and cosine similarity, summed batch by batch.

SQNR = 10 log10(Σ y² / Σ (y − ŷ)²) over every output value, as ``stats.error_measures``
computes it for weights; the cosine is the mean over samples (the output's first axis) of the
cosine between the flattened outputs of one sample, as the embedding metric scores a model.
The ends are kept apart rather than clipped: +∞ dB means the outputs did not move at all (a
lossless layer), −∞ dB means noise without bound (a cast that overflowed to ±inf or NaN, or
no signal at all), NaN means nothing was measured.

>>> error = OutputError()
>>> error.add(torch.ones(2, 3), torch.ones(2, 3))
>>> error.sqnr_db, error.cosine
(inf, 1.0)
>>> error.add(torch.ones(2, 3), torch.full((2, 3), 1.1))
>>> round(error.sqnr_db, 2)
23.01
"""
from __future__ import annotations

import math

import torch


class OutputError:
    """Sums of signal, noise and per-sample cosines over the batches added so far."""

    def __init__(self) -> None:
        self.signal = 0.0
        self.noise = 0.0
        self.cosine_sum = 0.0
        self.samples = 0
        self.non_finite = False

    def add(self, reference: torch.Tensor, approximation: torch.Tensor) -> None:
        """Add one batch: ``reference`` from the original model, ``approximation`` the same
        output with compressed weights (equal shapes, samples first)."""
        if reference.shape != approximation.shape:
            raise ValueError(f"outputs differ in shape: {tuple(reference.shape)} and {tuple(approximation.shape)}.")
        reference, approximation = _rows(reference), _rows(approximation)
        # Sums per sample in float32 (a few thousand values each, summed pairwise by torch), then
        # across samples in float64: a float64 copy of every output cost more than the layer.
        noise = float((reference - approximation).square().sum(dim=1).double().sum())
        if not math.isfinite(noise):  # an output that overflowed to ±inf or NaN
            self.non_finite = True
        signal = reference.square().sum(dim=1)
        dot = (reference * approximation).sum(dim=1)
        norms = (signal.sqrt() * approximation.square().sum(dim=1).sqrt()).clamp_min(1e-12)
        self.signal += float(signal.double().sum())
        self.noise += noise
        self.cosine_sum += float((dot / norms).double().sum())
        self.samples += reference.shape[0]

    @property
    def sqnr_db(self) -> float:
        if self.samples == 0:
            return math.nan
        if self.non_finite:
            return -math.inf
        if self.noise == 0:
            return math.inf
        if self.signal == 0:
            return -math.inf
        return 10.0 * math.log10(self.signal / self.noise)

    @property
    def cosine(self) -> float:
        if self.samples == 0 or self.non_finite:
            return math.nan
        if self.noise == 0:
            return 1.0  # equal outputs, zero rows included (their cosine is otherwise undefined)
        return self.cosine_sum / self.samples


def _rows(output: torch.Tensor) -> torch.Tensor:
    """One float32 row per sample."""
    return output.detach().float().reshape(output.shape[0] if output.dim() else 1, -1)
