"""Plotly figures drawn from the engine's view data: no weight arrays, only bins and tiles."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from compression.compress import LayerReport
from compression.stats import Histogram, SparsityMap
from ui.text import t
from ui.text.engine_text import stored_scheme

if TYPE_CHECKING:
    import torch

BEFORE_COLOUR = "rgba(120, 120, 120, 0.45)"
AFTER_COLOUR = "rgba(31, 119, 180, 0.85)"
LEVEL_COLOUR = "rgba(214, 39, 40, 0.55)"
LOSSLESS_COLOUR = "rgba(44, 160, 44, 1.0)"  # +∞ dB: green, as on the error X-ray
OVERFLOW_COLOUR = "rgba(0, 0, 0, 1.0)"  # −∞ dB: black
MAX_DRAWN_LEVELS = 64  # beyond this the grid is a solid band: the title gives the count instead
CHART_HEIGHT = 330
MAX_NAMED_BARS = 40  # per-layer bar charts name each layer up to this many
ZERO_ON_LOG = 0.3  # where an empty bin is drawn on a log axis: its floor (and "0" in the hover)
NO_TRACE_BOX = "<extra></extra>"  # ends a hover template: no second box with the trace's name
LEGEND_GAP = " &nbsp; "  # between the entries of a legend written into a subtitle

# Figures are built in one go.Figure(data, layout) call: plotly's update_layout with
# underscore paths costs about 5 ms a figure, a noticeable part of a slider move.


# Legends go under the plot: above it, on the right, they sit where plotly's toolbar appears.
LEGEND_BELOW = dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0.0)


def _layout(title: str, x_title: str, y_title: str, height: int = CHART_HEIGHT, subtitle: str = "", **extra: Any) -> dict:
    """Title, size and axis titles; no legend unless ``extra`` asks for one (it is slow to draw)."""
    layout = dict(
        title=dict(text=title, subtitle=dict(text=subtitle)) if subtitle else dict(text=title),
        height=height,
        margin=dict(l=10, r=10, t=60 if subtitle else 40, b=10),
        xaxis=dict(title=dict(text=x_title)),
        yaxis=dict(title=dict(text=y_title)),
        showlegend=False,
    )
    layout.update(extra)
    return layout


def _key(colour: str, label: str) -> str:
    """A legend entry written into a subtitle: a coloured square and its label."""
    return f'<span style="color:{colour.replace(", 0.45)", ", 0.9)")}">■</span> {label}'


def weight_histogram(
    before: Histogram, after: Histogram, levels: np.ndarray | None, *, log_y: bool, title: str
) -> go.Figure:
    """Before/after histograms on shared bins, with the quantization grid as vertical lines.

    Each histogram is one filled step line rather than a bar per bin, and the legend is a line
    of the subtitle: the browser redraws three paths instead of 258 bars and a legend box on
    every slider move (standalone plotly: 20 ms instead of 42 ms).
    """
    top = float(max(before.counts.max(initial=1), after.counts.max(initial=1)))
    before_name, after_name = t("charts.before"), t("charts.after")
    traces = [_step_trace(before, before_name, BEFORE_COLOUR, log_y),
              _step_trace(after, after_name, AFTER_COLOUR, log_y)]
    keys = [_key(BEFORE_COLOUR, before_name), _key(AFTER_COLOUR, after_name)]
    if levels is not None and 0 < len(levels) <= MAX_DRAWN_LEVELS:
        xs = np.repeat(levels, 3).astype(float)
        xs[2::3] = np.nan
        ys = np.tile([ZERO_ON_LOG if log_y else 0.0, top * 1.05, np.nan], len(levels))
        name = t("charts.levels", count=len(levels))
        traces.append(dict(type="scatter", x=xs, y=ys, mode="lines", name=name,
                           line=dict(color=LEVEL_COLOUR, width=1), hoverinfo="skip"))
        keys.append(_key(LEVEL_COLOUR, name))
    outside = max(before.outside, after.outside)
    if outside:
        keys.append(t("charts.beyond_range", count=outside, edge=before.edges[-1]))
    y_axis = dict(title=dict(text=t("charts.count_log" if log_y else "charts.count")))
    if log_y:
        y_axis.update(type="log", range=[np.log10(ZERO_ON_LOG), np.log10(top * 2)])
    return go.Figure(data=traces, layout=_layout(title, t("charts.weight_value"), "", subtitle=LEGEND_GAP.join(keys),
                                                 yaxis=y_axis))


def _step_trace(histogram: Histogram, name: str, colour: str, log_y: bool) -> dict:
    """One histogram as a filled step line: bin i spans x[i]..x[i+1] at height y[i]."""
    counts = histogram.counts.astype(float)
    if log_y:
        counts = np.where(counts > 0, counts, ZERO_ON_LOG)  # a log axis cannot show 0
    return dict(
        type="scatter", x=histogram.edges, y=np.append(counts, counts[-1]), mode="lines", name=name,
        line=dict(shape="hv", width=0.5, color=colour), fill="tozeroy", fillcolor=colour,
        hovertemplate=t("charts.histogram_hover", name=name) + NO_TRACE_BOX,
    )


def short_names(names: Sequence[str]) -> list[str]:
    """Layer names without the dotted prefix they all share and a common ".weight" ending:
    "transformer.encoder.layer.0.attention.self.query.weight" reads "layer.0.attention.self.query"
    beside its siblings. (Names stay unique: only what every name has is dropped.)"""
    parts = [name.split(".") for name in names]
    if len(parts) < 2:
        return list(names)
    shared = 0
    while all(len(p) > shared + 1 and p[shared] == parts[0][shared] for p in parts):
        shared += 1
    while shared and any(p[shared].isdigit() for p in parts):  # "layer.0", not a bare "0"
        shared -= 1
    trimmed = [p[shared:] for p in parts]
    if all(len(p) > 1 and p[-1] == "weight" for p in trimmed):
        trimmed = [p[:-1] for p in trimmed]
    return [".".join(p) for p in trimmed]


def sparsity_bars(names: Sequence[str], zeros: Sequence[int], parameters: Sequence[int]) -> go.Figure:
    """Fraction of zeros per layer, in model order."""
    values = [100 * z / max(p, 1) for z, p in zip(zeros, parameters)]
    customdata = [[z, p, name] for z, p, name in zip(zeros, parameters, names)]
    figure = _per_layer_bars(names, values, customdata, t("charts.sparsity_hover"),
                             t("charts.sparsity_title"), t("charts.sparsity_axis"))
    figure.update_layout({"xaxis" if len(names) <= MAX_NAMED_BARS else "yaxis": dict(range=[0, 100])})
    return figure


def sqnr_bars(layers: Sequence[LayerReport]) -> go.Figure:
    """Signal-to-quantization-noise ratio per layer (higher is better).

    The two ends of the scale are no bars, and not alike: a lossless layer (+∞ dB, its weights
    unchanged) is a green triangle labelled at the high end, an overflowed one (−∞ dB, ±inf in
    its values) a black ✕ labelled at the low end, as the error X-ray draws them.
    """
    names, sqnr = [layer.name for layer in layers], [layer.sqnr_db for layer in layers]
    customdata = [[stored_scheme(layer.scheme), layer.bits, layer.mse, layer.name] for layer in layers]
    figure = _per_layer_bars(names, [value if np.isfinite(value) else None for value in sqnr], customdata,
                             t("charts.sqnr_hover"), t("charts.sqnr_title"), t("charts.sqnr_axis"))
    named = len(names) <= MAX_NAMED_BARS
    depth = short_names(names) if named else list(range(1, len(names) + 1))
    finite = [value for value in sqnr if np.isfinite(value)]
    low, high = min([*finite, 0.0]), max([*finite, 0.0])
    pad = max((high - low) * 0.08, 1.0)
    ends = ((np.inf, high + pad, "triangle-right" if named else "triangle-up", LOSSLESS_COLOUR, t("charts.sqnr_lossless"),
             t("charts.sqnr_lossless_hover"), "middle left" if named else "bottom center"),
            (-np.inf, low - pad, "x", OVERFLOW_COLOUR, t("charts.sqnr_overflow"),
             t("charts.sqnr_overflow_hover"), "middle right" if named else "top center"))
    for end, place, symbol, colour, label, hover, text_position in ends:
        at = [i for i, value in enumerate(sqnr) if value == end]
        if at:
            where = ([place] * len(at), [depth[i] for i in at])
            figure.add_trace(dict(
                type="scatter", mode="markers+text", x=where[0] if named else where[1], y=where[1] if named else where[0],
                marker=dict(symbol=symbol, size=12, color=colour), text=[label] * len(at), textposition=text_position,
                textfont=dict(color=colour), cliponaxis=False, name=label, customdata=[customdata[i] for i in at],
                hovertemplate=hover + NO_TRACE_BOX,
            ))
    return figure


def _per_layer_bars(
    names: Sequence[str], values: Sequence[float | None], customdata: list, hover: str, title: str, axis: str
) -> go.Figure:
    """One bar per layer: named rows for up to :data:`MAX_NAMED_BARS` layers; beyond, a column
    per layer along the model's depth, named on hover (211 named rows of a 135M-parameter LM
    would make a chart 6,000 pixels tall)."""
    if len(names) <= MAX_NAMED_BARS:
        bars = dict(type="bar", x=values, y=short_names(names), orientation="h", marker=dict(color=AFTER_COLOUR),
                    customdata=customdata, hovertemplate=hover + NO_TRACE_BOX)
        return go.Figure(data=[bars], layout=_layout(title, axis, "", height=_bar_height(len(names)),
                                                     yaxis=dict(autorange="reversed")))
    bars = dict(type="bar", x=list(range(1, len(names) + 1)), y=values, marker=dict(color=AFTER_COLOUR),
                customdata=customdata, hovertemplate=hover.replace("%{x", "%{y") + NO_TRACE_BOX)
    return go.Figure(data=[bars], layout=_layout(title, t("charts.layer_depth_axis", layers=len(names)), axis))


def _bar_height(count: int) -> int:
    return max(CHART_HEIGHT, 28 * count + 80)


def sparsity_heatmap(sparsity_map: SparsityMap, title: str) -> go.Figure:
    """Fraction of zeros per tile: white where everything was pruned, dark where nothing was."""
    tile_rows, tile_columns = sparsity_map.tile
    rows, columns = sparsity_map.matrix_shape
    heatmap = dict(
        type="heatmap",
        z=np.round(sparsity_map.zero_fraction, 3),  # 3 digits: the colour shows no more
        x0=tile_columns / 2, dx=tile_columns, y0=tile_rows / 2, dy=tile_rows, zmin=0, zmax=1,
        colorscale=[[0.0, "#08306b"], [0.5, "#6baed6"], [1.0, "#ffffff"]],
        colorbar=dict(title=dict(text=t("charts.map_zeros"))),
        hovertemplate=t("charts.map_hover") + NO_TRACE_BOX,
    )
    if sparsity_map.tile != (1, 1):
        title = t("charts.map_title_tiles", title=title, rows=tile_rows, columns=tile_columns)
    layout = _layout(title, t("charts.map_inputs"), t("charts.map_outputs"))
    layout["xaxis"]["range"] = [0, columns]
    layout["yaxis"].update(autorange="reversed", range=[rows, 0])
    return go.Figure(data=[heatmap], layout=layout)


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
    heatmap = dict(type="heatmap", z=grid, zmid=0, zmin=-limit, zmax=limit, colorscale="RdBu",
                   colorbar=dict(title=dict(text="w")), hovertemplate="w = %{z:.4f}" + NO_TRACE_BOX)
    layout = _layout(title, t("charts.kernel_inputs"), t("charts.kernel_outputs"), plot_bgcolor="#ffffff")
    layout["xaxis"]["showticklabels"] = False
    layout["yaxis"].update(autorange="reversed", showticklabels=False)
    return go.Figure(data=[heatmap], layout=layout)


def gradual_chart(planned: Sequence[float], steps: Sequence, metric: str) -> go.Figure:
    """The planned sparsity per step (dashed), the reached sparsity, and the metric's saw-tooth:
    scored right after step k's cut (at x = k) and after its fine-tuning (at x = k + ½)."""
    phases = [t("charts.after_cut"), t("charts.after_fine_tuning")]
    traces = [
        dict(type="scatter", x=list(range(len(planned))), y=list(planned), mode="lines+markers",
             name=t("charts.planned"),
             line=dict(color=BEFORE_COLOUR.replace("0.45", "0.9"), dash="dash")),
        dict(type="scatter", x=[s.step for s in steps], y=[s.sparsity for s in steps], mode="lines+markers",
             name=t("charts.reached"), line=dict(color=AFTER_COLOUR)),
        dict(type="scatter", x=[x for s in steps for x in (s.step, s.step + 0.5)],
             y=[y for s in steps for y in (s.value_before_fine_tuning, s.value)], mode="lines+markers",
             name=t("charts.metric_saw_tooth", metric=metric), line=dict(color="rgba(44, 160, 44, 0.9)"),
             marker=dict(symbol=["triangle-down", "circle"] * len(steps), size=9),
             customdata=[[s.step, phase] for s in steps for phase in phases],
             hovertemplate=t("charts.saw_tooth_hover", metric=metric) + NO_TRACE_BOX, yaxis="y2"),
    ]
    layout = _layout(t("charts.gradual_title"), t("charts.gradual_steps"), t("charts.gradual_sparsity"), height=420,
                     showlegend=True, legend=LEGEND_BELOW,
                     yaxis2=dict(title=dict(text=metric), overlaying="y", side="right", range=[0, 1.02]))
    layout["yaxis"]["range"] = [0, 1.02]
    return go.Figure(data=traces, layout=layout)


def sensitivity_curves(frame: pd.DataFrame, kind: str, metric: str, axis: str | None = None) -> go.Figure:
    """The metric against the amount (or bits) with only that layer compressed, a line per layer;
    ``axis`` titles the metric's axis (default: the metric's name)."""
    rows = frame[frame["kind"] == kind]
    names = list(dict.fromkeys(rows["layer"]))
    labels = dict(zip(names, short_names(names)))
    traces = [
        dict(type="scatter", x=group["level"], y=group["value"], mode="lines+markers", name=labels[layer],
             hovertemplate=t("charts.curves_hover", layer=labels[layer], metric=metric) + NO_TRACE_BOX)
        for layer, group in rows.groupby("layer", sort=False)
    ]
    x_title = t("charts.curves_amount" if kind == "prune" else "charts.curves_bits")
    layout = _layout(t("charts.curves_title", metric=metric), x_title, axis or metric, height=400, showlegend=True,
                     legend=dict(font=dict(size=10)))
    if kind == "quantize":
        layout["xaxis"].update(type="log", autorange="reversed")
    return go.Figure(data=traces, layout=layout)


def sensitivity_heatmap(frame: pd.DataFrame, kind: str, metric: str) -> go.Figure:
    """Layer × level grid of the metric drop: dark where compressing that layer hurts."""
    rows = frame[frame["kind"] == kind]
    table = rows.pivot_table(index="layer", columns="level", values="drop", sort=False)
    if kind == "quantize":
        table = table[sorted(table.columns, reverse=True)]
    names = list(table.index)
    heatmap = dict(
        type="heatmap", z=table.to_numpy(), x=[str(level) for level in table.columns], y=short_names(names),
        colorscale="Reds", zmin=0, colorbar=dict(title=dict(text=t("charts.drop"))),
        hovertemplate=t("charts.drops_hover") + NO_TRACE_BOX,
    )
    x_title = t("charts.drops_amount" if kind == "prune" else "charts.drops_bits")
    layout = _layout(t("charts.drops_title", metric=metric.lower()), x_title, "",
                     height=max(CHART_HEIGHT, 24 * len(names) + 120), yaxis=dict(autorange="reversed", type="category"))
    layout["xaxis"]["type"] = "category"
    return go.Figure(data=[heatmap], layout=layout)


def allocation_bars(allocation: dict[str, float], overall: float) -> go.Figure:
    """Each layer's share of the budget, with the overall sparsity as a dashed line."""
    names = list(allocation)
    bars = dict(type="bar", x=[100 * allocation[n] for n in names], y=short_names(names), orientation="h",
                marker=dict(color=AFTER_COLOUR), customdata=names,
                hovertemplate=t("charts.allocation_hover") + NO_TRACE_BOX)
    layout = _layout(t("charts.allocation_title", overall=overall), t("charts.allocation_axis"), "",
                     height=_bar_height(len(names)), yaxis=dict(autorange="reversed"),
                     shapes=[dict(type="line", x0=100 * overall, x1=100 * overall, yref="paper", y0=0, y1=1,
                                  line=dict(color="black", dash="dash", width=1))])
    layout["xaxis"]["range"] = [0, 100]
    return go.Figure(data=[bars], layout=layout)


def search_steps(steps: pd.DataFrame, tolerance: float, metric: str) -> go.Figure:
    """Each amount the search tried, numbered in order: its drop against the tolerance (dashed).

    The y-axis spans four tolerances: drops far beyond it (pruning everything) would flatten
    the interesting part, so they are drawn at the top as triangles; the hover gives the value.
    """
    top = max(4 * tolerance, 0.01)
    beyond = steps["drop"] > top
    points = dict(
        type="scatter", x=steps["amount"], y=steps["drop"].clip(upper=top), mode="markers+text",
        text=[str(int(step)) for step in steps["step"]], textposition="top center",
        marker=dict(size=11, color=["rgba(44, 160, 44, 0.9)" if ok else "rgba(214, 39, 40, 0.9)" for ok in steps["accepted"]],
                    symbol=["triangle-up" if far else "circle" for far in beyond]),
        customdata=np.stack([steps["threshold"], steps["drop"]], axis=1),
        hovertemplate=t("charts.search_hover") + NO_TRACE_BOX,
    )
    layout = _layout(t("charts.search_title", tolerance=tolerance),
                     t("charts.search_amount"), t("charts.search_drop", metric=metric.lower()), height=360,
                     shapes=[dict(type="line", xref="paper", x0=0, x1=1, y0=tolerance, y1=tolerance,
                                  line=dict(color="black", dash="dash", width=1))])
    layout["xaxis"]["range"] = [-0.03, 1.03]
    layout["yaxis"]["range"] = [-0.05 * top, top * 1.12]
    return go.Figure(data=[points], layout=layout)


def distillation_chart(with_teacher: Sequence, without: Sequence, metric: str) -> go.Figure:
    """Held-out metric and training loss per epoch, distilled student against labels only."""
    traces = []
    for records, label, colour in ((with_teacher, t("charts.distilled"), AFTER_COLOUR),
                                   (without, t("charts.labels_only"), "rgba(214, 39, 40, 0.85)")):
        epochs = [r.epoch for r in records]
        traces.append(dict(type="scatter", x=epochs, y=[r.value for r in records], mode="lines+markers",
                           name=t("charts.student_metric", metric=metric, student=label), line=dict(color=colour)))
        traces.append(dict(type="scatter", x=epochs, y=[r.loss for r in records], mode="lines", yaxis="y2",
                           name=t("charts.student_loss", student=label), line=dict(color=colour, dash="dot")))
    layout = _layout(t("charts.students_title"), t("charts.epoch"), metric, height=420, showlegend=True,
                     legend=LEGEND_BELOW,
                     yaxis2=dict(title=dict(text=t("charts.loss_dotted")), overlaying="y", side="right"))
    layout["xaxis"]["dtick"] = 1  # whole epochs
    return go.Figure(data=traces, layout=layout)


def soft_targets_chart(at_one: Sequence[float], at_temperature: Sequence[float], temperature: float,
                       title: str) -> go.Figure:
    """One example's class probabilities from the teacher's logits: softmax(z) beside softmax(z / T)."""
    classes = list(range(len(at_one)))
    traces = [
        dict(type="bar", x=classes, y=list(probabilities), name=name, marker=dict(color=colour),
             hovertemplate=t("charts.soft_hover", name=name) + NO_TRACE_BOX)
        for probabilities, name, colour in ((at_one, t("charts.soft_at_one"), BEFORE_COLOUR.replace("0.45", "0.9")),
                                            (at_temperature, t("charts.soft_at_t", temperature=temperature), AFTER_COLOUR))
    ]
    layout = _layout(title, t("charts.soft_class"), t("charts.soft_probability"), height=360, showlegend=True,
                     legend=LEGEND_BELOW, barmode="group")
    layout["xaxis"]["dtick"] = 1  # every class
    layout["yaxis"]["range"] = [0, 1.02]
    return go.Figure(data=traces, layout=layout)


def _grouped(points: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for point in points:
        groups.setdefault(point["label"], []).append(point)
    return groups


def tradeoff_chart(
    frame: pd.DataFrame, metric: str, current: tuple[float, float] | None, others: Sequence[dict[str, Any]] = (),
    axis: str | None = None,
) -> go.Figure:
    """Metric against encoded size: one line per bit-width, the Pareto front, the current recipe,
    and ``others``: results of other methods (label, encoded_bytes, value), one marker each;
    ``axis`` titles the metric's axis (default: the metric's name)."""
    traces = []
    for (scheme, bits), group in frame.groupby(["scheme", "bits"], sort=True):
        group = group.sort_values("encoded_bytes")
        label = (t("charts.bits_line", scheme=t(f"tradeoffs.sweep_schemes.{scheme}"), bits=bits) if bits != 32
                 else t("charts.no_quantization"))
        traces.append(dict(
            type="scatter", x=group["encoded_bytes"] / 1024, y=group["value"], mode="lines+markers", name=label,
            customdata=group[["amount", "sparsity"]].to_numpy(),
            hovertemplate=t("charts.sweep_hover", line=label, metric=metric) + NO_TRACE_BOX,
        ))
    front = frame[frame["pareto"]].sort_values("encoded_bytes")
    traces.append(dict(
        type="scatter", x=front["encoded_bytes"] / 1024, y=front["value"], mode="lines", name=t("charts.pareto_front"),
        line=dict(color="black", width=3, dash="dot"), hoverinfo="skip",
    ))
    for symbol, (label, group) in zip(("diamond", "square", "cross", "triangle-up", "x", "pentagon"), _grouped(others).items()):
        traces.append(dict(
            type="scatter", x=[p["encoded_bytes"] / 1024 for p in group], y=[p["value"] for p in group],
            mode="markers", name=label, marker=dict(symbol=symbol, size=13, line=dict(color="black", width=1)),
            text=[p.get("detail", "") for p in group],
            hovertemplate=t("charts.other_hover", method=label, metric=metric) + NO_TRACE_BOX,
        ))
    if current is not None:
        traces.append(dict(
            type="scatter", x=[current[0] / 1024], y=[current[1]], mode="markers", name=t("charts.current_recipe"),
            marker=dict(symbol="star", size=18, color="gold", line=dict(color="black", width=1)),
        ))
    layout = _layout(t("charts.tradeoff_title", metric=metric), t("charts.encoded_size"), axis or metric, height=460,
                     showlegend=True, legend=LEGEND_BELOW)
    layout["xaxis"]["type"] = "log"
    return go.Figure(data=traces, layout=layout)
