"""View data for the live charts, computed where the weights are: small enough to ship as is.

Histograms are pre-binned (counts + edges), sparsity maps reduced to at most 256 × 256 tiles,
and errors are single numbers, so no raw weight ever travels to the browser.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

HISTOGRAM_BINS = 129  # odd, with symmetric edges: 0 is the centre of the middle bin
MAX_TILES = 256


@dataclass(frozen=True)
class Histogram:
    """Counts per bin; ``edges`` has one more entry than ``counts``."""

    counts: np.ndarray
    edges: np.ndarray

    def to_dict(self) -> dict[str, list]:
        return {"counts": self.counts.tolist(), "edges": self.edges.tolist()}


@dataclass(frozen=True)
class SparsityMap:
    """Fraction of zeros per tile of the weight seen as out × (in·k·k).

    ``tile`` is (rows, columns) of weights per tile; edge tiles may hold fewer.
    """

    zero_fraction: np.ndarray
    tile: tuple[int, int]
    matrix_shape: tuple[int, int]


def histogram(values: torch.Tensor, limit: float, bins: int = HISTOGRAM_BINS) -> Histogram:
    """Counts of ``values`` in ``bins`` equal bins over [-limit, limit]."""
    limit = limit if limit > 0 and math.isfinite(limit) else 1.0
    finite = values if bool(torch.isfinite(values).all()) else values[torch.isfinite(values)]
    counts = torch.histc(finite.float(), bins=bins, min=-limit, max=limit)
    edges = np.linspace(-limit, limit, bins + 1)
    return Histogram(counts.to(torch.int64).numpy(), edges)


def as_matrix(values: torch.Tensor) -> torch.Tensor:
    """The 2-D picture of a weight: conv out × (in·k·k), linear as is, 1-D as one row."""
    if values.ndim >= 2:
        return values.reshape(values.shape[0], -1)
    return values.reshape(1, -1)


def sparsity_map(values: torch.Tensor, max_tiles: int = MAX_TILES) -> SparsityMap:
    """Fraction of zeros in each tile of at most ``max_tiles`` × ``max_tiles`` tiles."""
    matrix = as_matrix(values)
    rows, columns = matrix.shape
    tile_rows, tile_columns = max(1, -(-rows // max_tiles)), max(1, -(-columns // max_tiles))
    pad_rows, pad_columns = (-rows) % tile_rows, (-columns) % tile_columns
    zeros = torch.nn.functional.pad((matrix == 0).to(torch.float32), (0, pad_columns, 0, pad_rows))
    grid_rows, grid_columns = zeros.shape[0] // tile_rows, zeros.shape[1] // tile_columns
    zero_counts = zeros.reshape(grid_rows, tile_rows, grid_columns, tile_columns).sum(dim=(1, 3))
    # Tiles on the bottom and right edges hold fewer real weights than a full tile.
    rows_in_tile = torch.full((grid_rows,), float(tile_rows))
    rows_in_tile[-1] = rows - tile_rows * (grid_rows - 1)
    columns_in_tile = torch.full((grid_columns,), float(tile_columns))
    columns_in_tile[-1] = columns - tile_columns * (grid_columns - 1)
    fraction = zero_counts / (rows_in_tile[:, None] * columns_in_tile[None, :])
    return SparsityMap(fraction.numpy(), (tile_rows, tile_columns), (rows, columns))


@dataclass(frozen=True)
class ErrorMeasures:
    """Mean squared error and signal-to-quantization-noise ratio (dB) against a reference."""

    mse: float
    sqnr_db: float


def error_measures(reference: torch.Tensor, approximation: torch.Tensor) -> ErrorMeasures:
    """SQNR = 10 log10(Σ w² / Σ (w - w')²); +inf when the two are equal."""
    reference = reference.float()
    noise = float((reference - approximation).square().sum())
    signal = float(reference.square().sum())
    mse = noise / max(reference.numel(), 1)
    if noise == 0:
        return ErrorMeasures(mse, math.inf)
    if signal == 0:
        return ErrorMeasures(mse, -math.inf)
    return ErrorMeasures(mse, 10.0 * math.log10(signal / noise))
