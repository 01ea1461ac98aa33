"""The chart builders: what a figure holds for given view data."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from compression.stats import Histogram
from ui import charts
from ui.text import t


def test_short_names_drop_the_shared_prefix_and_weight_ending_but_keep_block_numbers() -> None:
    names = ["encoder.layer.0.attention.query.weight", "encoder.layer.0.attention.key.weight",
             "encoder.layer.1.output.dense.weight"]
    assert charts.short_names(names) == ["layer.0.attention.query", "layer.0.attention.key", "layer.1.output.dense"]
    assert charts.short_names(["conv1.weight", "fc1.weight"]) == ["conv1", "fc1"]
    assert charts.short_names(["only.weight"]) == ["only.weight"]


def test_a_histogram_is_a_step_line_whose_heights_are_the_bin_counts() -> None:
    edges = np.linspace(-1, 1, 6)
    before = Histogram(np.array([1, 2, 3, 2, 1]), edges)
    after = Histogram(np.array([0, 1, 5, 1, 0]), edges)
    figure = charts.weight_histogram(before, after, None, log_y=False, title="t")
    steps = {trace.name: trace for trace in figure.data}
    assert np.array_equal(steps["after"].x, edges)
    assert list(steps["after"].y) == [0, 1, 5, 1, 0, 0]  # the last height repeated to close the step
    assert steps["after"].line.shape == "hv"


def test_empty_bins_sit_on_the_floor_of_a_log_axis() -> None:
    edges = np.linspace(-1, 1, 4)
    histogram = Histogram(np.array([0, 4, 0]), edges)
    figure = charts.weight_histogram(histogram, histogram, None, log_y=True, title="t")
    assert min(figure.data[0].y) == charts.ZERO_ON_LOG
    assert figure.layout.yaxis.range[0] == np.log10(charts.ZERO_ON_LOG)


def test_weights_beyond_the_range_are_named_in_the_subtitle() -> None:
    edges = np.linspace(-0.5, 0.5, 4)
    before = Histogram(np.array([3, 4, 3]), edges, outside=2)
    figure = charts.weight_histogram(before, before, None, log_y=False, title="t")
    assert "2 weights beyond ±0.5" in figure.layout.title.subtitle.text


def test_levels_are_drawn_as_one_trace_of_vertical_lines() -> None:
    edges = np.linspace(-1, 1, 4)
    histogram = Histogram(np.array([1, 1, 1]), edges)
    figure = charts.weight_histogram(histogram, histogram, np.array([-0.5, 0.0, 0.5]), log_y=False, title="t")
    levels = figure.data[-1]
    assert levels.name == "quantization levels (3)"
    assert sorted({x for x in levels.x if not np.isnan(x)}) == [-0.5, 0.0, 0.5]


def test_many_layers_are_columns_along_the_depth_in_a_chart_of_normal_height() -> None:
    """211 named rows (a 135M-parameter LM) would make a chart 6,000 pixels tall."""
    few = charts.sparsity_bars([f"layers.{i}.weight" for i in range(3)], [1, 2, 3], [10, 10, 10])
    assert few.data[0].orientation == "h" and list(few.data[0].x) == [10, 20, 30]
    names = [f"model.layers.{i}.mlp.up_proj.weight" for i in range(211)]
    many = charts.sparsity_bars(names, list(range(211)), [1000] * 211)
    assert many.layout.height == charts.CHART_HEIGHT
    assert list(many.data[0].x) == list(range(1, 212)) and many.data[0].y[5] == 0.5
    assert many.data[0].customdata[5][2] == names[5] and "%{y" in many.data[0].hovertemplate


def _layer(name: str, sqnr_db: float) -> SimpleNamespace:
    return SimpleNamespace(name=name, sqnr_db=sqnr_db, scheme="linear_symmetric", bits=8, mse=0.0)


def test_a_lossless_and_an_overflowed_layer_are_drawn_apart_at_the_two_ends() -> None:
    figure = charts.sqnr_bars([_layer("fc1.weight", math.inf), _layer("fc2.weight", 20.0), _layer("fc3.weight", -math.inf)])
    bars, *ends = figure.data
    assert list(bars.x) == [None, 20.0, None]
    lossless, overflow = ({trace.name: trace for trace in ends}[t(key)] for key in ("charts.sqnr_lossless", "charts.sqnr_overflow"))
    assert list(lossless.y) == ["fc1"] and lossless.x[0] > 20.0 and list(lossless.text) == [t("charts.sqnr_lossless")]
    assert list(overflow.y) == ["fc3"] and overflow.x[0] < 0.0 and list(overflow.text) == [t("charts.sqnr_overflow")]
    assert lossless.marker.symbol != overflow.marker.symbol and lossless.marker.color != overflow.marker.color


def test_measured_layers_alone_add_no_end_markers() -> None:
    assert len(charts.sqnr_bars([_layer("fc1.weight", 12.0), _layer("fc2.weight", 30.0)]).data) == 1
