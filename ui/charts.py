"""Plotly figures drawn from the engine's view data: no weight arrays, only bins and tiles."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from compression.compress import LayerReport
from compression.stats import Histogram, SparsityMap

if TYPE_CHECKING:
    import torch

BEFORE_COLOUR = "rgba(120, 120, 120, 0.45)"
AFTER_COLOUR = "rgba(31, 119, 180, 0.85)"
LEVEL_COLOUR = "rgba(214, 39, 40, 0.55)"
MAX_DRAWN_LEVELS = 64  # beyond this the grid is a solid band: the title gives the count instead
CHART_HEIGHT = 330


def _layout(figure: go.Figure, title: str, x_title: str, y_title: str, height: int = CHART_HEIGHT) -> go.Figure:
    figure.update_layout(
        title=title,
        height=height,
        margin=dict(l=10, r=10, t=40, b=10),
        xaxis_title=x_title,
        yaxis_title=y_title,
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0),
    )
    return figure


def weight_histogram(
    before: Histogram, after: Histogram, levels: np.ndarray | None, *, log_y: bool, title: str
) -> go.Figure:
    """Before/after histograms on shared bins, with the quantization grid as vertical lines."""
    centres = (before.edges[:-1] + before.edges[1:]) / 2
    width = float(before.edges[1] - before.edges[0])
    figure = go.Figure()
    figure.add_bar(x=centres, y=before.counts, width=width, name="before", marker_color=BEFORE_COLOUR)
    figure.add_bar(x=centres, y=after.counts, width=width, name="after", marker_color=AFTER_COLOUR)
    top = float(max(before.counts.max(initial=1), after.counts.max(initial=1)))
    if levels is not None and 0 < len(levels) <= MAX_DRAWN_LEVELS:
        xs = np.repeat(levels, 3).astype(float)
        xs[2::3] = np.nan
        ys = np.tile([0.0 if not log_y else 0.5, top * 1.05, np.nan], len(levels))
        figure.add_scatter(
            x=xs, y=ys, mode="lines", name=f"quantization levels ({len(levels)})",
            line=dict(color=LEVEL_COLOUR, width=1), hoverinfo="skip",
        )
    figure.update_layout(barmode="overlay", bargap=0)
    if log_y:
        figure.update_yaxes(type="log")
    return _layout(figure, title, "weight value", "count (log)" if log_y else "count")


def sparsity_bars(names: Sequence[str], zeros: Sequence[int], parameters: Sequence[int]) -> go.Figure:
    """Fraction of zeros per layer, in model order."""
    figure = go.Figure(
        go.Bar(
            x=[100 * z / max(p, 1) for z, p in zip(zeros, parameters)],
            y=list(names),
            orientation="h",
            marker_color=AFTER_COLOUR,
            customdata=[[z, p] for z, p in zip(zeros, parameters)],
            hovertemplate="%{y}: %{x:.1f}% zeros (%{customdata[0]:,} of %{customdata[1]:,})<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed")
    figure.update_xaxes(range=[0, 100])
    return _layout(figure, "Sparsity per layer", "% of weights that are zero", "", height=_bar_height(len(names)))


def sqnr_bars(layers: Sequence[LayerReport]) -> go.Figure:
    """Signal-to-quantization-noise ratio per layer (higher is better; ∞ means unchanged)."""
    values = [layer.sqnr_db if np.isfinite(layer.sqnr_db) else None for layer in layers]
    figure = go.Figure(
        go.Bar(
            x=values,
            y=[layer.name for layer in layers],
            orientation="h",
            marker_color=AFTER_COLOUR,
            customdata=[[layer.scheme, layer.bits, layer.mse] for layer in layers],
            hovertemplate="%{y}: %{x:.1f} dB (%{customdata[0]}, %{customdata[1]} bits, MSE %{customdata[2]:.3g})<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed")
    return _layout(figure, "Error per layer: SQNR", "SQNR (dB), higher = closer to the original", "",
                   height=_bar_height(len(layers)))


def _bar_height(count: int) -> int:
    return max(CHART_HEIGHT, 28 * count + 80)


def sparsity_heatmap(sparsity_map: SparsityMap, title: str) -> go.Figure:
    """Fraction of zeros per tile: white where everything was pruned, dark where nothing was."""
    tile_rows, tile_columns = sparsity_map.tile
    rows, columns = sparsity_map.matrix_shape
    figure = go.Figure(
        go.Heatmap(
            z=np.round(sparsity_map.zero_fraction, 3),  # 3 digits: the colour shows no more
            x0=tile_columns / 2, dx=tile_columns,
            y0=tile_rows / 2, dy=tile_rows,
            zmin=0, zmax=1,
            colorscale=[[0.0, "#08306b"], [0.5, "#6baed6"], [1.0, "#ffffff"]],
            colorbar=dict(title="zeros"),
            hovertemplate="rows ≈ %{y:.0f}, columns ≈ %{x:.0f}: %{z:.0%} zeros<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed", range=[rows, 0])
    figure.update_xaxes(range=[0, columns])
    tiles = "" if sparsity_map.tile == (1, 1) else f" (tiles of {tile_rows}×{tile_columns})"
    return _layout(figure, f"{title}{tiles}", "input (in·k·k)", "output channel")


def kernels_of(weight: torch.Tensor, max_out: int = 16, max_in: int = 16) -> np.ndarray:
    """The first output × input kernels of a conv weight tiled into one image, zeros as NaN.

    Kernels are separated by a blank row and column so each k × k patch reads on its own.
    """
    kernels = weight.detach()[:max_out, :max_in].float().numpy()
    out_channels, in_channels, height, width = kernels.shape
    grid = np.full((out_channels * (height + 1) - 1, in_channels * (width + 1) - 1), np.nan)
    for row in range(out_channels):
        for column in range(in_channels):
            patch = np.where(kernels[row, column] == 0, np.nan, kernels[row, column])
            grid[row * (height + 1): row * (height + 1) + height, column * (width + 1): column * (width + 1) + width] = patch
    return grid


def kernel_grid(grid: np.ndarray, title: str) -> go.Figure:
    """Conv kernels side by side; pruned weights (NaN in ``grid``) are left blank."""
    limit = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
    figure = go.Figure(
        go.Heatmap(
            z=grid, zmid=0, zmin=-limit, zmax=limit, colorscale="RdBu", colorbar=dict(title="w"),
            hovertemplate="w = %{z:.4f}<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed", showticklabels=False)
    figure.update_xaxes(showticklabels=False)
    figure.update_layout(plot_bgcolor="#ffffff")
    return _layout(figure, title, "input channels →", "output channels →")


def tradeoff_chart(frame: pd.DataFrame, metric: str, current: tuple[float, float] | None) -> go.Figure:
    """Metric against encoded size: one line per bit-width, the Pareto front, the current recipe."""
    figure = go.Figure()
    for (scheme, bits), group in frame.groupby(["scheme", "bits"], sort=True):
        group = group.sort_values("encoded_bytes")
        label = f"{scheme} {bits}-bit" if bits != 32 else "no quantization (fp32)"
        figure.add_scatter(
            x=group["encoded_bytes"] / 1024, y=group["value"], mode="lines+markers", name=label,
            customdata=group[["amount", "sparsity"]].to_numpy(),
            hovertemplate=f"{label}<br>amount %{{customdata[0]:.2f}}, sparsity %{{customdata[1]:.1%}}"
            "<br>%{x:,.1f} KiB, " + metric + " %{y:.4f}<extra></extra>",
        )
    front = frame[frame["pareto"]].sort_values("encoded_bytes")
    figure.add_scatter(
        x=front["encoded_bytes"] / 1024, y=front["value"], mode="lines", name="Pareto front",
        line=dict(color="black", width=3, dash="dot"), hoverinfo="skip",
    )
    if current is not None:
        figure.add_scatter(
            x=[current[0] / 1024], y=[current[1]], mode="markers", name="current recipe",
            marker=dict(symbol="star", size=18, color="gold", line=dict(color="black", width=1)),
        )
    figure.update_xaxes(type="log")
    return _layout(figure, f"{metric} versus encoded size", "encoded size (KiB, log scale)", metric, height=460)
