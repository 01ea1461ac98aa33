"""The error X-ray's figures: each layer's error down the model's depth, and one layer's channels.

The two ends of the SQNR scale are drawn apart from the measured values, never as a clipped
number: a lossless layer (+∞ dB: its output did not move) is a green triangle labelled ∞ at the
high end of each panel, an overflowed one (−∞ dB: ±inf or NaN in its output) a black ✕ labelled
−∞ at the low end. Lines join only measured values, so either end leaves a gap in them.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

import numpy as np
import plotly.graph_objects as go

from compression.workflows.xray import XRay
from ui.charts import LEGEND_BELOW, MAX_NAMED_BARS, NO_TRACE_BOX, short_names
from ui.text import t

LOCAL_COLOUR = "rgba(31, 119, 180, 0.95)"
ACCUMULATED_COLOUR = "rgba(214, 39, 40, 0.95)"
BASELINE_COLOUR = "rgba(120, 120, 120, 0.7)"
LOSSLESS_COLOUR = "rgba(44, 160, 44, 1.0)"
OVERFLOW_COLOUR = "rgba(0, 0, 0, 1.0)"
SELECTED_FILL = "rgba(255, 200, 0, 0.25)"
OUTLIER_COLOUR = "rgba(214, 39, 40, 0.9)"
CHANNEL_COLOUR = "rgba(31, 119, 180, 0.75)"
OUTLIER_MEDIANS = 6.0  # a channel whose max |x| is this many medians is an outlier (LLM.int8(): 6.0 as a magnitude)
ROW_HEIGHT = 20  # pixels per named layer


def sqnr_text(value: float) -> str:
    """An SQNR as the page writes it: the ends by name, not as numbers."""
    if math.isnan(value):
        return t("xray.unmeasured")
    if value == math.inf:
        return t("xray.lossless")
    if value == -math.inf:
        return t("xray.overflow")
    return t("xray.db", value=value)


def layer_at(scan: XRay, point: dict[str, Any]) -> str | None:
    """The layer a clicked point of :func:`error_depth` stands for."""
    data = point.get("customdata")
    name = data[0] if isinstance(data, list) and data else None
    return name if any(row.name == name for row in scan.rows) else None


def error_depth(scan: XRay, baseline: XRay | None = None, selected: str | None = None) -> go.Figure:
    """SQNR and cosine of every layer, local and accumulated, in execution order; with a
    what-if, the recipe as is (``baseline``) in dotted grey behind it.

    Up to ``MAX_NAMED_BARS`` layers read down the page, one named row each, the two measures side
    by side; beyond that the layers run along the x-axis (names on hover), the measures stacked.
    """
    names = [row.name for row in scan.rows]
    named = len(names) <= MAX_NAMED_BARS
    depth = short_names(names) if named else list(range(1, len(names) + 1))
    series = ((t("xray.local"), LOCAL_COLOUR, "circle", [row.local_sqnr_db for row in scan.rows]),
              (t("xray.accumulated"), ACCUMULATED_COLOUR, "diamond", [row.accumulated_sqnr_db for row in scan.rows]))
    traces: list[dict] = []
    ranges = []
    legend: set[str] = set()
    for panel in (0, 1):
        axis = {"xaxis": ("x", "x2")[panel]} if named else {"yaxis": ("y", "y2")[panel]}
        values = list(zip(*(_panel_values(row, panel) for row in scan.rows)))
        others = [] if baseline is None else list(zip(*(_panel_values(row, panel) for row in baseline.rows)))
        bottom, top = _span([v for column in (*values, *others) for v in column if math.isfinite(v)], panel)
        ranges.append((bottom - (top - bottom) * 0.04, top + (top - bottom) * 0.04))
        for column, name in zip(others, (t("xray.baseline_local"), t("xray.baseline_accumulated"))):
            traces.append(_line(depth, column, named, axis, name, BASELINE_COLOUR, panel == 0, dash="dot"))
        for (label, colour, symbol, sqnr), column in zip(series, values):
            hover = [[name, _value_text(value, panel, end)] for name, value, end in zip(names, column, sqnr)]
            line = _line(depth, column, named, axis, label, colour, panel == 0, symbol=symbol)
            line.update(customdata=hover, hovertemplate=t("xray.hover", series=label) + NO_TRACE_BOX)
            traces.append(line)
            for end, place, key, mark, end_colour, text in (
                (math.inf, top, t("xray.lossless_marker"), "triangle-right" if named else "triangle-up", LOSSLESS_COLOUR,
                 t("xray.infinity")),
                (-math.inf, bottom, t("xray.overflow_marker"), "x", OVERFLOW_COLOUR, t("xray.minus_infinity")),
            ):
                at = [i for i, value in enumerate(sqnr) if value == end]
                if at:
                    traces.append(dict(
                        type="scatter", mode="markers+text", **_coordinates([depth[i] for i in at], [place] * len(at), named),
                        **axis, text=[text] * len(at), textposition="middle left" if named else "top center",
                        textfont=dict(color=end_colour, size=11), name=key, legendgroup=key, showlegend=key not in legend,
                        marker=dict(symbol=mark, size=11, color=end_colour, line=dict(color=colour, width=1.5)),
                        customdata=[hover[i] for i in at], hovertemplate=t("xray.hover", series=label) + NO_TRACE_BOX,
                    ))
                    legend.add(key)
    return go.Figure(data=traces, layout=_depth_layout(depth, named, ranges, names, selected))


def _span(measured: list[float], panel: int) -> tuple[float, float]:
    """Where the two ends are drawn: a little beyond the lowest and highest measured value."""
    low, high = (min(measured), max(measured)) if measured else ((0.0, 30.0) if panel == 0 else (0.0, 1.0))
    pad = max((high - low) * 0.08, 1.0 if panel == 0 else 0.01)
    return low - pad, high + pad


def _panel_values(row: Any, panel: int) -> tuple[float, float]:
    """(local, accumulated) SQNR or cosine of a row; NaN at either end of the SQNR scale, which
    the lines skip (a lossless layer's cosine of exactly 1 is drawn as lossless, not on the line)."""
    ends = (row.local_sqnr_db, row.accumulated_sqnr_db)
    values = ends if panel == 0 else (row.local_cosine, row.accumulated_cosine)
    return tuple(value if math.isfinite(end) else math.nan for value, end in zip(values, ends))


def _value_text(value: float, panel: int, sqnr: float) -> str:
    if panel == 0 or not math.isfinite(sqnr):
        return sqnr_text(sqnr)
    return t("xray.cosine_value", value=value)


def _coordinates(depth: Sequence, values: Sequence[float | None], named: bool) -> dict[str, list]:
    return {"x": list(values), "y": list(depth)} if named else {"x": list(depth), "y": list(values)}


def _line(depth: Sequence, values: Sequence[float], named: bool, axis: dict, name: str, colour: str, legend: bool,
          symbol: str | None = None, dash: str = "solid") -> dict:
    """Measured values joined in depth order; either end of the scale leaves a gap."""
    shown = [value if math.isfinite(value) else None for value in values]
    return dict(
        type="scatter", mode="lines+markers" if symbol else "lines", **_coordinates(depth, shown, named), **axis,
        name=name, legendgroup=name, showlegend=legend, line=dict(color=colour, width=1.5, dash=dash),
        marker=dict(symbol=symbol or "circle", size=7, color=colour), connectgaps=False,
        hoverinfo=None if symbol else "skip",
    )


def _depth_layout(depth: list, named: bool, ranges: list, names: list[str], selected: str | None) -> dict:
    sqnr_title, cosine_title = t("xray.sqnr_axis"), t("xray.cosine_axis")
    shapes = []
    if selected in names:
        at = names.index(selected)
        band = dict(type="rect", fillcolor=SELECTED_FILL, line=dict(width=0), layer="below")
        shapes.append({**band, "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": at - 0.5, "y1": at + 0.5} if named
                      else {**band, "yref": "paper", "y0": 0, "y1": 1, "xref": "x", "x0": at + 0.5, "x1": at + 1.5})
    # Named rows put the axes on top, nearest the first layers: the title goes above their titles.
    layout: dict[str, Any] = dict(
        title=dict(text=t("xray.depth_title"), y=1.0, yref="container", yanchor="top", pad=dict(t=12)),
        showlegend=True, legend=LEGEND_BELOW | dict(y=-0.01 if named else -0.15),
        margin=dict(l=10, r=10, t=110 if named else 50, b=10), shapes=shapes, clickmode="event+select", dragmode=False,
    )
    if named:
        layout.update(
            height=max(420, ROW_HEIGHT * len(depth) + 160),
            yaxis=dict(type="category", autorange="reversed", tickfont=dict(size=11)),
            xaxis=dict(domain=[0, 0.47], range=list(ranges[0]), side="top", title=dict(text=sqnr_title)),
            xaxis2=dict(domain=[0.53, 1], range=list(ranges[1]), side="top", title=dict(text=cosine_title)),
        )
    else:
        layout.update(
            height=620,
            xaxis=dict(title=dict(text=t("charts.layer_depth_axis", layers=len(depth)))),
            yaxis=dict(domain=[0.55, 1], range=list(ranges[0]), title=dict(text=sqnr_title)),
            yaxis2=dict(domain=[0, 0.45], range=list(ranges[1]), title=dict(text=cosine_title), anchor="x"),
        )
    return layout


def channel_bars(values: np.ndarray, title: str, axis: str, hover: str, outliers: bool = True) -> go.Figure:
    """One bar per channel; with ``outliers``, channels above ``OUTLIER_MEDIANS`` medians marked
    by a red dot on top (hundreds of bars are thinner than a pixel: a red bar alone may not show)."""
    far = _far(values) if outliers else np.zeros(values.shape, dtype=bool)
    traces = [dict(type="bar", x=np.arange(len(values)), y=values, marker=dict(color=CHANNEL_COLOUR, line=dict(width=0)),
                   hovertemplate=hover + NO_TRACE_BOX),
              _outlier_dots(np.flatnonzero(far), values[far], hover)]
    return go.Figure(data=traces, layout=_channel_layout(title, t("xray.channel_axis"), axis))


def weight_ranges(low: np.ndarray, high: np.ndarray, title: str) -> go.Figure:
    """Each output channel's weights as a bar from its smallest to its largest value; channels
    whose max |w| is above ``OUTLIER_MEDIANS`` medians get a red dot at that end."""
    magnitude = np.maximum(np.abs(low), np.abs(high))
    far = _far(magnitude)
    ends = np.where(np.abs(high) >= np.abs(low), high, low)
    traces = [dict(type="bar", x=np.arange(len(low)), y=high - low, base=low,
                   marker=dict(color=CHANNEL_COLOUR, line=dict(width=0)), customdata=np.stack([low, high], axis=1),
                   hovertemplate=t("xray.range_hover") + NO_TRACE_BOX),
              _outlier_dots(np.flatnonzero(far), ends[far], t("xray.channel_hover"))]
    return go.Figure(data=traces, layout=_channel_layout(title, t("xray.output_channel_axis"), t("xray.weight_axis")))


def _far(values: np.ndarray) -> np.ndarray:
    median = float(np.median(values[np.isfinite(values)])) if np.isfinite(values).any() else 0.0
    return values > OUTLIER_MEDIANS * median if median > 0 else np.zeros(values.shape, dtype=bool)


def _outlier_dots(channels: np.ndarray, values: np.ndarray, hover: str) -> dict:
    return dict(type="scatter", mode="markers", x=channels, y=values, marker=dict(color=OUTLIER_COLOUR, size=7),
                hovertemplate=hover + NO_TRACE_BOX)


def _channel_layout(title: str, x_title: str, y_title: str) -> dict:
    return dict(title=dict(text=title), height=300, margin=dict(l=10, r=10, t=40, b=10), showlegend=False, bargap=0,
                xaxis=dict(title=dict(text=x_title)), yaxis=dict(title=dict(text=y_title)))


class Outliers(NamedTuple):
    """How many channels lie above ``OUTLIER_MEDIANS`` medians, of how many, and the scale."""

    count: int
    channels: int
    largest: float
    median: float


def outliers(values: np.ndarray) -> Outliers:
    finite = values[np.isfinite(values)]
    median = float(np.median(finite)) if finite.size else 0.0
    return Outliers(int(_far(values).sum()), len(values), float(finite.max(initial=0.0)), median)
