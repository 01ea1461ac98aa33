"""The X-ray's depth chart draws a lossless layer and an overflowed one apart, never as numbers."""
from __future__ import annotations

import math

from compression.workflows.xray import LayerError, XRay
from ui import xray_charts

LOSSLESS, OVERFLOW, MEASURED = "fc1.weight", "fc2.weight", "fc3.weight"


def scan() -> XRay:
    rows = (
        LayerError(LOSSLESS, 0, "fc1", False, math.inf, 1.0, math.inf, 1.0),
        LayerError(OVERFLOW, 1, "fc2", True, -math.inf, math.nan, -math.inf, math.nan),
        LayerError(MEASURED, 2, "fc3", True, 12.0, 0.97, 8.0, 0.9),
    )
    return XRay(rows, 8.0, 0.9, 10, "ten rows", ())


def traces(name: str) -> list[dict]:
    figure = xray_charts.error_depth(scan()).to_plotly_json()
    return [trace for trace in figure["data"] if trace.get("name") == name]


def test_lines_join_only_measured_values():
    for line in traces("local"):
        assert sum(value is not None for value in line["x"]) == 1  # fc3 alone: both ends leave gaps


def test_a_lossless_layer_is_a_labelled_marker_above_every_measured_value():
    sqnr = [trace for trace in traces("lossless (+∞ dB)") if trace.get("xaxis") == "x"]
    assert sqnr and all(list(trace["y"]) == ["fc1"] and trace["text"] == ["∞"] for trace in sqnr)
    assert all(trace["x"][0] > 12.0 for trace in sqnr)


def test_an_overflowed_layer_is_another_marker_below_every_measured_value():
    sqnr = [trace for trace in traces("overflow (−∞ dB)") if trace.get("xaxis") == "x"]
    assert sqnr and all(list(trace["y"]) == ["fc2"] and trace["text"] == ["−∞"] for trace in sqnr)
    assert all(trace["x"][0] < 8.0 for trace in sqnr)
    lossless_symbol = traces("lossless (+∞ dB)")[0]["marker"]["symbol"]
    assert sqnr[0]["marker"]["symbol"] != lossless_symbol


def test_the_ends_are_written_as_words_in_the_hover_and_the_numbers():
    assert xray_charts.sqnr_text(math.inf) == "∞ dB (lossless)"
    assert xray_charts.sqnr_text(-math.inf) == "−∞ dB (overflow)"
    assert xray_charts.sqnr_text(12.04) == "12.0 dB"
