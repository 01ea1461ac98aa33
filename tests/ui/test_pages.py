"""The dashboard's pages, run headless with Streamlit's AppTest: what each page shows.

Sample models only (simplenet by default, mlp where named): both load and compress in well
under a second. Figures are read back from the plotly JSON the page sends to the browser.
"""
from __future__ import annotations

import base64
import io
import json
import os
import shlex

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

import compression
import sample_models
from compression.cli.parser import build_parser
from compression.io.onnx.export import export_onnx
from compression.recipe import Recipe
from compression.units import format_bytes
from tests.input_graphs import pooled_conv_graph, speech_graph

PAGES = ["pages/overview.py", "pages/model.py", "pages/pruning.py", "pages/quantization.py", "pages/gradual.py",
         "pages/sensitivity.py", "pages/xray.py", "pages/distillation.py",
         "pages/tradeoffs.py", "pages/export.py"]
LEVELS_TRACE = "quantization levels"


# --- reading what a page drew -----------------------------------------------------------------


def open_page(app: AppTest, page: str) -> AppTest:
    """Run the app (its first run, if not run yet) and switch to ``page``."""
    if "model_id" not in app.session_state:
        app.run()
    app.switch_page(page)
    return app.run()


def figure(app: AppTest, key: str) -> dict:
    """The plotly figure (data and layout) of the chart with widget key ``key``."""
    charts = [chart for chart in app.get("plotly_chart") if chart.key == key]
    assert len(charts) == 1, f"expected one chart {key!r}, found {[c.key for c in app.get('plotly_chart')]}"
    return json.loads(charts[0].proto.spec)


def values(array: list | dict) -> np.ndarray:
    """A plotly array as numbers: plain JSON lists or plotly's typed-array encoding."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).astype(float)
    return np.array(array, dtype=float)


def trace(spec: dict, name_prefix: str) -> dict | None:
    named = [t for t in spec["data"] if str(t.get("name", "")).startswith(name_prefix)]
    assert len(named) <= 1
    return named[0] if named else None


def zero_bin_count(spec: dict, name: str) -> float:
    """Count in the histogram bin centred on 0 (the bins are symmetric about zero).

    A histogram is drawn as a step line: bin i spans x[i]..x[i+1] at height y[i].
    """
    steps = trace(spec, name)
    edges, heights = values(steps["x"]), values(steps["y"])
    centres = (edges[:-1] + edges[1:]) / 2
    return float(heights[:-1][np.argmin(np.abs(centres))])


def metric_value(app: AppTest, label: str) -> str:
    matches = [m.value for m in app.metric if m.label == label]
    assert len(matches) == 1, f"expected one metric {label!r}, found {[m.label for m in app.metric]}"
    return matches[0]


def percent(text: str) -> float:
    assert text.endswith("%"), text
    return float(text[:-1]) / 100


def assert_clean(app: AppTest) -> None:
    assert not app.exception, [e.value for e in app.exception]
    assert not app.error, [e.value for e in app.error]


def url_recipe(app: AppTest) -> dict:
    return json.loads(app.query_params["recipe"]) if "recipe" in app.query_params else {}


def set_amount(app: AppTest, amount: float) -> AppTest:
    return app.slider(key="prune_amount").set_value(amount).run()


def set_bits(app: AppTest, bits: int) -> AppTest:
    return app.slider(key="quantize_bits").set_value(bits).run()


# --- every page -------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
def test_page_runs_without_exception_or_error(app, page):
    open_page(app, page)
    assert_clean(app)
    assert app.title, "each page has a title"


def test_reset_recipe_drops_every_setting(app):
    open_page(app, "pages/quantization.py")
    set_bits(app, 4)
    open_page(app, "pages/pruning.py")
    set_amount(app, 0.5)
    [reset] = [b for b in app.sidebar.button if b.label == "Reset recipe"]
    reset.click().run()
    assert_clean(app)
    # The pruning page redraws as on a first visit: magnitude pruning, nothing removed yet.
    assert url_recipe(app) == {"prune": {"amount": 0.0, "method": "magnitude", "scope": "global"}}
    assert app.slider(key="prune_amount").value == 0.0


@pytest.mark.parametrize("page", PAGES)
def test_reset_recipe_button_is_on_every_page(app, page):
    open_page(app, page)
    assert [b.label for b in app.sidebar.button] == ["Reset recipe"]


# --- model ------------------------------------------------------------------------------------

def test_picking_a_sample_model_on_the_model_page_selects_it(app):
    open_page(app, "pages/model.py")
    app.radio(key="model_zoo").set_value("mlp").run()
    assert_clean(app)
    assert app.session_state["model_id"] == "mlp"
    assert app.query_params["model"] == "mlp"
    assert [s.value for s in app.subheader] == ["mlp"]


def test_picking_a_model_in_the_sidebar_on_the_model_page_selects_it(app):
    open_page(app, "pages/model.py")
    app.sidebar.selectbox[0].set_value("bn_cnn").run(timeout=30)
    assert app.session_state["model_id"] == "bn_cnn"


def test_picking_a_model_in_the_sidebar_on_another_page_selects_it(app):
    open_page(app, "pages/pruning.py")
    app.sidebar.selectbox[0].set_value("bn_cnn").run(timeout=15)
    assert_clean(app)
    assert app.session_state["model_id"] == "bn_cnn"


def test_batchnorm_folding_is_measured_and_the_folded_model_can_be_compressed(app):
    open_page(app, "pages/model.py")
    app.radio(key="model_zoo").set_value("bn_cnn").run(timeout=30)
    assert_clean(app)
    assert metric_value(app, "Pairs folded") == "4"
    assert float(metric_value(app, "Max |output change|")) < 1e-4
    assert metric_value(app, "Accuracy folded") == metric_value(app, "Baseline accuracy")
    app.button(key="model_use_folded").click().run(timeout=30)
    assert_clean(app)
    assert app.session_state["model_id"] == "folded/bn_cnn"
    assert [s.value for s in app.subheader] == ["bn_cnn-bn-folded"]
    assert app.query_params["model"] == "folded/bn_cnn"
    open_page(app, "pages/export.py")
    assert_clean(app)
    assert "compression fuse bn_cnn" in app.code[0].value


def test_a_link_can_name_a_folded_sample_model(app):
    open_link(app, "folded/bn_cnn", None)
    open_page(app, "pages/pruning.py")
    assert_clean(app)
    assert app.session_state["model_id"] == "folded/bn_cnn"
    assert app.sidebar.selectbox[0].value == "folded/bn_cnn"  # shown as bn_cnn-bn-folded


def saved_state_dict(model_name: str) -> bytes:
    buffer = io.BytesIO()
    torch.save(sample_models.load_trained(model_name).state_dict(), buffer)
    return buffer.getvalue()


def upload_model(app: AppTest, name: str, content: bytes) -> AppTest:
    """Put a file in the Model page's uploader and press "Use these files"."""
    app.file_uploader(key="model_upload").set_value((name, content, "application/octet-stream")).run()
    [use] = [b for b in app.button if b.label == "Use these files"]
    return use.click().run()


def test_uploaded_state_dict_becomes_the_current_model(app):
    open_page(app, "pages/model.py")
    upload_model(app, "mlp.pt", saved_state_dict("mlp"))
    assert_clean(app)
    assert [s.value for s in app.subheader] == ["mlp.pt"]
    assert "fc1.weight" in list(app.dataframe[0].value["layer"])


def test_uploaded_bfloat16_state_dict_shows_what_its_checkpoint_stores_beside_the_float32_size(app):
    state = {key: value.to(torch.bfloat16) for key, value in sample_models.load_trained("mlp").state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    open_page(app, "pages/model.py")
    upload_model(app, "mlp_bf16.pt", buffer.getvalue())
    assert_clean(app)
    stored = sum(t.numel() * 2 for t in state.values())
    assert metric_value(app, "Checkpoint (bfloat16)") == format_bytes(stored)
    assert metric_value(app, "Size") == format_bytes(2 * stored)


def test_uploaded_state_dict_is_offered_in_the_sidebar(app):
    open_page(app, "pages/model.py")
    upload_model(app, "mlp.pt", saved_state_dict("mlp"))
    assert "mlp.pt" in app.sidebar.selectbox[0].options



def test_uploaded_onnx_model_is_scored_and_its_compressed_weights_exported_back(app):
    onnx_bytes = export_onnx(compression.load_model("mlp"))
    open_page(app, "pages/model.py")
    upload_model(app, "mlp.onnx", onnx_bytes)
    assert_clean(app)
    assert [s.value for s in app.subheader] == ["mlp.onnx"]
    assert "onnxruntime" in app.caption[0].value
    assert list(app.dataframe[0].value["layer"]) == ["fc1.weight", "fc2.weight", "fc3.weight"]
    assert metric_value(app, "Baseline accuracy") == "0.9778"
    app.session_state["recipe"] = {"prune": {"method": "magnitude", "amount": 0.5}}
    open_page(app, "pages/export.py")
    app.button(key="export_onnx").click().run(timeout=120)
    assert_clean(app)
    assert metric_value(app, "Accuracy in onnxruntime").startswith("0.9")


def test_the_model_page_shows_an_uploaded_graphs_inputs_and_reloads_it_with_the_sizes_typed_in(app):
    open_page(app, "pages/model.py")
    upload_model(app, "conv.onnx", pooled_conv_graph().SerializeToString())
    assert_clean(app)
    inputs = app.dataframe[1].value
    assert list(inputs["input"]) == ["x"] and "(guessed)" in inputs["shape"][0]
    [sizes] = [box for box in app.text_input if box.key == "model_input_shape_0"]
    assert sizes.label.startswith("Sizes of x: float32 [n=")
    sizes.set_value("2,3,32,40")
    [apply] = [b for b in app.button if b.label == "Apply"]
    apply.click().run()
    assert_clean(app)
    assert [s.value for s in app.subheader] == ["conv.onnx (x=2,3,32,40)"]
    assert app.dataframe[1].value["shape"][0] == "[n=2 (given), 3, h=32 (given), w=40 (given)]"
    assert [m.value for m in app.metric if m.label.startswith("Baseline")] == ["1.0000"]


def test_the_model_page_says_which_input_keeps_a_graph_from_being_scored(app):
    open_page(app, "pages/model.py")
    upload_model(app, "speech.onnx", speech_graph().SerializeToString())
    assert not app.exception
    assert list(app.dataframe[0].value["layer"]) == ["w", "s"]
    assert any("input 'sr'" in warning.value for warning in app.warning)


class _RunsAShellCommand:
    """Pickles as a call to os.system: what a hostile checkpoint carries."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_hostile_pickle_upload_is_refused_with_an_error_and_never_run(app, tmp_path):
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"fc1.weight": _RunsAShellCommand(f"touch {marker}")}, buffer)
    open_page(app, "pages/model.py")
    upload_model(app, "checkpoint.pt", buffer.getvalue())
    assert not app.exception
    [error] = app.error
    assert "run code" in error.value
    assert not marker.exists()
    assert app.session_state["model_id"] == "simplenet"


# --- pruning ----------------------------------------------------------------------------------


def test_zero_bin_of_after_histogram_grows_with_the_amount(app):
    open_page(app, "pages/pruning.py")
    zero_counts = []
    for amount in (0.0, 0.5, 0.9):
        set_amount(app, amount)
        assert_clean(app)
        zero_counts.append(zero_bin_count(figure(app, "prune_histogram"), "after"))
    assert zero_counts[0] < zero_counts[1] < zero_counts[2], zero_counts


def test_before_histogram_does_not_change_with_the_amount(app):
    open_page(app, "pages/pruning.py")
    before = values(trace(figure(app, "prune_histogram"), "before")["y"])
    set_amount(app, 0.9)
    assert np.array_equal(values(trace(figure(app, "prune_histogram"), "before")["y"]), before)


@pytest.mark.parametrize("amount", [0.3, 0.7])
def test_sparsity_metric_matches_the_amount_for_global_magnitude_pruning(app, amount):
    open_page(app, "pages/pruning.py")
    assert app.selectbox(key="prune_method").value == "magnitude"
    assert app.radio(key="prune_scope").value == "global"
    set_amount(app, amount)
    assert percent(metric_value(app, "Sparsity")) == pytest.approx(amount, abs=0.005)


def test_sparsity_bars_show_each_layer_pruned(app):
    open_page(app, "pages/pruning.py")
    set_amount(app, 0.5)
    bars = figure(app, "prune_bars")["data"][0]
    assert len(bars["y"]) >= 2
    assert (values(bars["x"]) > 0).all()


def test_n_m_method_with_2_4_prunes_half_the_weights(app):
    open_page(app, "pages/pruning.py")
    app.selectbox(key="prune_method").set_value("n:m").run()
    assert_clean(app)
    assert app.selectbox(key="prune_pattern").value == "2:4"
    assert url_recipe(app)["prune"] == {"method": "n:m", "n": 2, "m": 4}
    assert percent(metric_value(app, "Sparsity")) == pytest.approx(0.5, abs=0.01)


def test_method_off_removes_the_prune_section(app):
    open_page(app, "pages/pruning.py")
    set_amount(app, 0.5)
    app.selectbox(key="prune_method").set_value("off").run()
    assert "prune" not in url_recipe(app)
    assert percent(metric_value(app, "Sparsity")) < 0.01


# --- quantization -----------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_linear_quantization_draws_at_most_2_to_the_bits_levels(app, bits):
    open_page(app, "pages/quantization.py")
    set_bits(app, bits)
    assert_clean(app)
    spec = figure(app, "quantize_histogram")
    levels = trace(spec, LEVELS_TRACE)
    assert levels is not None, [t.get("name") for t in spec["data"]]
    xs = values(levels["x"])
    drawn = np.unique(xs[~np.isnan(xs)])
    assert 2 <= len(drawn) <= 2**bits
    assert levels["name"] == f"{LEVELS_TRACE} ({len(drawn)})"
    assert f"{bits} bits" in spec["layout"]["title"]["text"]


def test_levels_beyond_64_are_counted_in_the_title_not_drawn(app):
    open_page(app, "pages/quantization.py")
    set_bits(app, 8)
    spec = figure(app, "quantize_histogram")
    assert trace(spec, LEVELS_TRACE) is None
    assert "255 levels" in spec["layout"]["title"]["text"]


def test_pow2_with_16_bits_warns_and_uses_8_bits(app):
    open_page(app, "pages/quantization.py")
    app.selectbox(key="quantize_scheme").set_value("pow2").run()
    set_bits(app, 16)
    assert_clean(app)
    assert any("using 8" in warning.value for warning in app.warning), [w.value for w in app.warning]
    assert url_recipe(app)["quantize"]["bits"] == 8
    assert ", 8 bits" in figure(app, "quantize_histogram")["layout"]["title"]["text"]


def test_float_format_has_no_bits_slider(app):
    open_page(app, "pages/quantization.py")
    app.selectbox(key="quantize_scheme").set_value("fp16").run()
    assert_clean(app)
    assert not [s for s in app.slider if s.key == "quantize_bits"]
    assert url_recipe(app)["quantize"] == {"scheme": "float", "format": "fp16"}


# --- the recipe across pages and in the URL ---------------------------------------------------


def test_recipe_keeps_the_prune_section_on_another_page(app):
    open_page(app, "pages/pruning.py")
    set_amount(app, 0.3)
    open_page(app, "pages/quantization.py")
    assert_clean(app)
    assert url_recipe(app)["prune"]["amount"] == 0.3
    assert app.session_state["recipe"]["prune"]["amount"] == 0.3
    assert not app.code  # the recipe box is closed: its JSON is not drawn at all
    app.session_state["quantize_recipe_box"] = True  # the user opens it
    app.run()
    assert '"amount": 0.3' in app.code[0].value


def test_amount_slider_shows_its_value_after_a_round_trip(app):
    open_page(app, "pages/pruning.py")
    set_amount(app, 0.3)
    open_page(app, "pages/quantization.py")
    open_page(app, "pages/pruning.py")
    assert app.slider(key="prune_amount").value == 0.3
    assert percent(metric_value(app, "Sparsity")) == pytest.approx(0.3, abs=0.005)


LINK_RECIPE = {
    "prune": {"method": "magnitude", "amount": 0.4, "scope": "layer"},
    "quantize": {"scheme": "linear", "bits": 4, "granularity": "per_tensor", "symmetric": False},
}


def open_link(app: AppTest, model: str, recipe: str | None) -> AppTest:
    app.query_params["model"] = model
    if recipe is not None:
        app.query_params["recipe"] = recipe
    return app.run()


def test_link_selects_the_model(app):
    open_link(app, "mlp", json.dumps(LINK_RECIPE))
    assert_clean(app)
    assert app.session_state["model_id"] == "mlp"
    assert app.sidebar.selectbox[0].value == "mlp"


def test_link_sets_the_pruning_widgets(app):
    open_link(app, "mlp", json.dumps(LINK_RECIPE))
    open_page(app, "pages/pruning.py")
    assert_clean(app)
    assert app.selectbox(key="prune_method").value == "magnitude"
    assert app.slider(key="prune_amount").value == 0.4
    assert app.radio(key="prune_scope").value == "layer"


def test_link_sets_the_quantization_widgets(app):
    open_link(app, "mlp", json.dumps(LINK_RECIPE))
    open_page(app, "pages/quantization.py")
    assert_clean(app)
    assert app.selectbox(key="quantize_scheme").value == "linear"
    assert app.slider(key="quantize_bits").value == 4
    assert app.selectbox(key="quantize_granularity").value == "per_tensor"
    assert app.toggle(key="quantize_symmetric").value is False


def test_a_link_keeps_the_order_of_override_patterns_the_last_match_wins(app):
    recipe = {"quantize": {"bits": 8}, "overrides": {"fc*": {"quantize": {"bits": 2}}, "*.weight": {"quantize": None}}}
    open_link(app, "mlp", json.dumps(recipe))
    open_page(app, "pages/quantization.py")
    assert_clean(app)
    assert list(url_recipe(app)["overrides"]) == ["fc*", "*.weight"]  # sorted keys would flip them


def test_invalid_recipe_in_the_link_warns_and_starts_empty(app):
    open_link(app, "mlp", '{"prune": {"method": "magnitude", "amount": 7}}')
    assert not app.exception
    assert any("recipe was not used" in w.value and "prune.amount" in w.value for w in app.warning), \
        [w.value for w in app.warning]
    assert app.session_state["recipe"] == {}
    assert app.session_state["model_id"] == "mlp"


def test_malformed_json_in_the_link_warns(app):
    open_link(app, "mlp", '{"prune": ')
    assert not app.exception
    assert any("recipe was not used" in w.value for w in app.warning), [w.value for w in app.warning]


def test_unknown_model_in_the_link_warns_and_falls_back_to_simplenet(app):
    open_link(app, "no-such-model", None)
    assert not app.exception
    assert any("'no-such-model'" in w.value for w in app.warning), [w.value for w in app.warning]
    assert app.session_state["model_id"] == "simplenet"
    assert app.query_params["model"] == "simplenet"


def test_url_warning_is_shown_once(app):
    open_link(app, "no-such-model", None)
    open_page(app, "pages/pruning.py")
    assert not [w for w in app.warning if "no-such-model" in w.value]


# --- trade-offs -------------------------------------------------------------------------------

SWEEP_AMOUNTS = [0.0, 0.5]
SWEEP_BITS = [32, 4]


def run_sweep(app: AppTest) -> AppTest:
    [button] = [b for b in app.button if b.label == "Run sweep"]
    return button.click().run()


@pytest.fixture
def tradeoffs(app):
    """The trade-offs page on mlp with a 2 × 2 grid, not yet run."""
    open_link(app, "mlp", None)
    open_page(app, "pages/tradeoffs.py")
    app.multiselect(key="sweep_amounts").set_value(SWEEP_AMOUNTS)
    app.multiselect(key="sweep_bits").set_value(SWEEP_BITS).run()
    return app


def test_tradeoffs_asks_for_a_run_before_drawing(tradeoffs):
    assert_clean(tradeoffs)
    assert not tradeoffs.get("plotly_chart")
    assert any("Run sweep" in info.value for info in tradeoffs.info)


def test_run_sweep_draws_chart_and_table_with_pareto_column(tradeoffs):
    run_sweep(tradeoffs)
    assert_clean(tradeoffs)
    chart = figure(tradeoffs, "sweep_chart")
    assert any(t.get("name") == "Pareto front" for t in chart["data"])
    [table] = tradeoffs.dataframe
    assert "pareto" in table.value.columns
    assert len(table.value) == len(SWEEP_AMOUNTS) * len(SWEEP_BITS)
    assert table.value["pareto"].any()


def test_second_sweep_with_same_ranges_reuses_every_measured_point(tradeoffs):
    run_sweep(tradeoffs)
    [points] = tradeoffs.session_state["sweep_points"].values()
    first = dict(points)
    run_sweep(tradeoffs)
    assert_clean(tradeoffs)
    assert points.keys() == first.keys()
    # A recomputed point would be a new dict: the same objects mean none was measured again.
    assert all(points[key] is first[key] for key in first)


def test_sweep_results_with_custom_ranges_stay_after_a_page_switch(tradeoffs):
    run_sweep(tradeoffs)
    open_page(tradeoffs, "pages/model.py")
    open_page(tradeoffs, "pages/tradeoffs.py")
    assert figure(tradeoffs, "sweep_chart")
    assert len(tradeoffs.dataframe) == 1


# --- export -----------------------------------------------------------------------------------


def test_export_shows_the_cli_command_with_the_recipe(app):
    open_link(app, "mlp", json.dumps(LINK_RECIPE))
    open_page(app, "pages/export.py")
    assert_clean(app)
    command = shlex.split(next(c.value for c in app.code if c.value.startswith("python -m compression apply")))
    assert command[:5] == ["python", "-m", "compression", "apply", "mlp"]
    recipe = json.loads(command[command.index("--recipe") + 1])
    assert recipe == Recipe.from_dict(LINK_RECIPE).to_dict()


def test_every_command_line_on_the_export_page_parses_with_the_cli(app):
    open_link(app, "folded/bn_cnn", json.dumps(LINK_RECIPE))
    open_page(app, "pages/export.py")
    assert_clean(app)
    lines = [line for code in app.code for line in code.value.splitlines() if line.startswith("python -m compression")]
    assert [shlex.split(line)[3] for line in lines] == ["fuse", "apply"]
    for line in lines:
        parsed = build_parser().parse_args(shlex.split(line)[3:])
        assert parsed.out.startswith("bn_cnn-bn-folded")


def test_export_offers_packed_dense_and_recipe_downloads(app):
    open_page(app, "pages/export.py")
    labels = [button.label for button in app.get("download_button")]
    assert labels == ["Packed model (.packed)", "Dense weights (.safetensors)", "Recipe (.json)"]


# --- gradual pruning --------------------------------------------------------------------------


def test_gradual_page_draws_the_planned_schedule_before_running(app):
    open_page(app, "pages/gradual.py")
    assert_clean(app)
    app.slider(key="agp_steps").set_value(4).run()
    planned = trace(figure(app, "agp_chart"), "planned sparsity")
    assert values(planned["y"]) == pytest.approx([0.0, 0.5203125, 0.7875, 0.8859375, 0.9])


def test_gradual_run_fills_the_curves_and_compares_with_one_shot(app):
    open_page(app, "pages/gradual.py")
    app.slider(key="agp_steps").set_value(2).run()
    app.slider(key="agp_final").set_value(0.8).run()
    app.button(key="agp_run").click().run(timeout=120)
    assert_clean(app)
    reached = trace(figure(app, "agp_chart"), "sparsity reached")
    assert values(reached["y"]) == pytest.approx([0.0, 0.7, 0.8], abs=1e-3)
    saw_tooth = trace(figure(app, "agp_chart"), "Accuracy: after each cut")
    assert list(values(saw_tooth["x"])) == [0, 0.5, 1, 1.5, 2, 2.5]  # each step: right after the cut, fine-tuned
    comparison = app.dataframe[-1].value
    assert list(comparison["method"]) == ["gradual (AGP + fine-tuning)", "one-shot magnitude",
                                          "one-shot magnitude + fine-tuning"]
    assert list(comparison["fine-tuning epochs"]) == [3, 0, 3]  # the control trains as long as the gradual run
    assert list(comparison["sparsity"]) == pytest.approx([0.8] * 3, abs=1e-3)
    open_page(app, "pages/pruning.py")
    open_page(app, "pages/gradual.py")
    assert trace(figure(app, "agp_chart"), "sparsity reached") is not None  # kept across pages


def test_gradual_page_prunes_by_the_recipes_method_and_scope(app):
    open_page(app, "pages/pruning.py")
    app.session_state["recipe"] = {"prune": {"method": "structured", "amount": 0.3, "scope": "layer"}}
    open_page(app, "pages/gradual.py")
    assert_clean(app)
    assert any("Pruning by structured, scope per layer" in caption.value for caption in app.caption)


def test_gradual_page_says_why_an_n_m_recipe_cannot_be_followed(app):
    open_page(app, "pages/pruning.py")
    app.session_state["recipe"] = {"prune": {"method": "n:m", "n": 2, "m": 4}}
    open_page(app, "pages/gradual.py")
    assert not app.exception
    assert any("cuts to an amount" in warning.value for warning in app.warning)


def test_gradual_page_explains_why_minilm_cannot_be_fine_tuned(app):
    open_page(app, "pages/gradual.py")
    app.sidebar.selectbox[0].set_value("minilm").run(timeout=120)
    assert not app.exception
    assert any("training data" in warning.value for warning in app.warning)


# --- sensitivity ------------------------------------------------------------------------------


@pytest.fixture
def measured(app):
    """The sensitivity page of mlp after a measurement (mlp: 3 layers, quick)."""
    open_page(app, "pages/model.py")
    app.radio(key="model_zoo").set_value("mlp").run()
    open_page(app, "pages/sensitivity.py")
    app.button(key="sensitivity_run").click().run(timeout=180)
    assert_clean(app)
    return app


def test_sensitivity_draws_a_curve_per_layer_and_a_layer_by_level_grid(measured):
    curves = figure(measured, "sensitivity_curves")
    assert len(curves["data"]) == 3
    grid = figure(measured, "sensitivity_heatmap")["data"][0]
    assert len(grid["y"]) == 3


def test_budget_allocation_averages_to_the_budget_and_becomes_the_recipe(measured):
    measured.slider(key="sensitivity_budget").set_value(0.6).run()
    bars = figure(measured, "sensitivity_allocation")["data"][0]
    amounts = values(bars["x"]) / 100
    sizes = np.array([256 * 64, 128 * 256, 10 * 128])
    assert float((amounts * sizes).sum() / sizes.sum()) == pytest.approx(0.6, abs=1e-3)
    measured.button(key="sensitivity_use_allocation").click().run()
    recipe = url_recipe(measured)
    assert recipe["prune"]["scope"] == "layer" and len(recipe["overrides"]) == 3


def test_search_stays_within_the_tolerance_and_shows_its_steps(measured):
    measured.slider(key="sensitivity_tolerance").set_value(0.01).run()
    measured.button(key="sensitivity_search").click().run(timeout=120)
    assert_clean(measured)
    assert any("Boundary found by bisection within a drop of 0.010" in s.value for s in measured.success)
    steps = figure(measured, "sensitivity_search_steps")["data"][0]
    accepted_drops = [d for d, c in zip(values(steps["y"]), steps["marker"]["color"]) if "44, 160, 44" in c]
    assert accepted_drops and max(accepted_drops) <= 0.01


def test_gradual_and_searched_results_join_the_one_shot_sweep_on_the_tradeoff_chart(tradeoffs):
    open_page(tradeoffs, "pages/gradual.py")
    tradeoffs.slider(key="agp_steps").set_value(2).run()
    tradeoffs.button(key="agp_run").click().run(timeout=120)
    open_page(tradeoffs, "pages/sensitivity.py")
    tradeoffs.button(key="sensitivity_run").click().run(timeout=180)
    tradeoffs.button(key="sensitivity_search").click().run(timeout=120)
    open_page(tradeoffs, "pages/tradeoffs.py")
    [run] = [b for b in tradeoffs.button if b.label == "Run sweep"]
    run.click().run(timeout=120)
    assert_clean(tradeoffs)
    names = [t.get("name") for t in figure(tradeoffs, "sweep_chart")["data"]]
    assert "gradual (AGP + fine-tuning)" in names and "searched within a tolerance" in names


# --- error X-ray ------------------------------------------------------------------------------


def test_xray_draws_both_errors_per_layer_and_redraws_them_for_a_what_if(app):
    open_link(app, "mlp", json.dumps({"prune": {"method": "magnitude", "amount": 0.5}, "quantize": {"bits": 4}}))
    open_page(app, "pages/xray.py")
    app.button(key="xray_run").click().run(timeout=120)
    assert_clean(app)
    names = [trace.get("name") for trace in figure(app, "xray_depth")["data"]]
    assert names.count("local") == names.count("accumulated") == 2  # SQNR and cosine panels
    app.selectbox(key="xray_layer").set_value("fc2.weight").run()
    app.button(key="xray_keep_float").click().run()
    assert_clean(app)
    drawn = figure(app, "xray_depth")["data"]
    assert "local, recipe as is" in [trace.get("name") for trace in drawn]
    assert [trace for trace in drawn if trace.get("name") == "lossless (+∞ dB)"]


# --- distillation -----------------------------------------------------------------------------


def test_distillation_trains_both_students_and_tabulates_them_beside_the_teacher(app):
    open_page(app, "pages/model.py")
    app.radio(key="model_zoo").set_value("mlp").run()
    open_page(app, "pages/distillation.py")
    app.select_slider(key="distill_width").set_value(8)
    app.slider(key="distill_epochs").set_value(2).run()
    app.button(key="distill_run").click().run(timeout=120)
    assert_clean(app)
    curves = figure(app, "distill_chart")
    assert {t["name"] for t in curves["data"]} >= {"Accuracy, distilled", "Accuracy, labels only"}
    table = app.dataframe[-1].value
    assert list(table["model"].str.split(",").str[0]) == ["teacher (mlp)", "student", "student"]
    assert table["parameters"].iloc[1] < table["parameters"].iloc[0]


def test_distillation_shows_the_chosen_digits_soft_targets_at_t_1_and_at_t(app):
    open_page(app, "pages/model.py")
    app.radio(key="model_zoo").set_value("mlp").run()
    open_page(app, "pages/distillation.py")
    app.slider(key="distill_temperature").set_value(5.0)
    app.number_input(key="distill_digit").set_value(7).run()
    assert_clean(app)
    bars = {trace["name"]: values(trace["y"]) for trace in figure(app, "distill_soft_targets")["data"]}
    assert set(bars) == {"T = 1", "T = 5"}
    assert all(len(p) == 10 and p.sum() == pytest.approx(1, abs=1e-6) for p in bars.values())
    assert bars["T = 5"].max() < bars["T = 1"].max()  # softened: the dark knowledge shows
    assert any("softmax" in latex.value for latex in app.latex)
    assert app.get("image")  # the digit beside its bars


def test_export_to_int8_onnx_is_scored_by_onnxruntime_and_offered_for_download(app):
    open_link(app, "mlp", json.dumps({"prune": {"method": "magnitude", "amount": 0.5}}))
    open_page(app, "pages/export.py")
    app.button(key="export_onnx").click().run(timeout=120)
    assert_clean(app)
    assert metric_value(app, "Accuracy in onnxruntime").startswith("0.9")
    assert "export mlp" in app.code[-1].value


def test_tflite_conversion_offers_the_compressed_model_as_a_tflite_file(app):
    pytest.importorskip("litert_torch")
    open_link(app, "mlp", json.dumps({"prune": {"method": "magnitude", "amount": 0.5}}))
    open_page(app, "pages/export.py")
    app.button(key="export_tflite").click().run(timeout=180)
    assert_clean(app)
    assert metric_value(app, "TFLite file").endswith("KiB")


def test_without_litert_torch_the_export_page_says_how_to_add_it(app, monkeypatch):
    monkeypatch.setattr("compression.io.tflite_export.tflite_available", lambda: False)
    open_link(app, "mlp", None)
    open_page(app, "pages/export.py")
    assert_clean(app)
    assert any("requirements-tflite.txt" in info.value for info in app.info)
    assert not [b for b in app.button if b.key == "export_tflite"]


def test_the_model_page_shows_the_macs_per_input_in_total_and_per_layer(app):
    open_page(app, "pages/model.py")
    assert_clean(app)
    assert metric_value(app, "MACs per input") == "467,200"  # simplenet on one 1 × 28 × 28 digit
    assert list(app.dataframe[0].value["macs"]) == [144_000, 320_000, 3_200]


def test_the_export_page_measures_the_macs_channel_removal_cuts_against_one_minus_p_squared(app):
    recipe = {"prune": {"method": "structured", "amount": 0.5, "scope": "layer"}}
    open_link(app, "simplenet", json.dumps(recipe))
    open_page(app, "pages/export.py")
    assert_clean(app)
    assert metric_value(app, "MACs per input") == "153,600"  # conv1 ½, conv2 ¼, fc1 ½ of 467,200
    table = next(frame.value for frame in app.dataframe if "kept" in frame.value)
    assert dict(zip(table["layer"], table["kept"]))["conv2.weight"] == pytest.approx(0.25)
    assert any("(1 − p)² = 25%" in caption.value for caption in app.caption)


def test_structured_pruning_offers_a_smaller_dense_model_with_the_masked_accuracy(app):
    recipe = {"prune": {"method": "structured", "amount": 0.5, "scope": "layer"}}
    open_link(app, "simplenet", json.dumps(recipe))
    open_page(app, "pages/export.py")
    assert_clean(app)
    assert metric_value(app, "Parameters") == "3,000"
    simplenet = compression.load_model("simplenet")
    kept_whole_unpruned = compression.remove_channels(simplenet, 0.5).masked_recipe  # fc1 (the output) stays whole
    masked = compression.evaluate(simplenet, compression.compress(simplenet, kept_whole_unpruned).module).value
    assert [m.value for m in app.metric if m.label == "Accuracy"][-1] == f"{masked:.4f}"
    app.button(key="export_smaller").click().run(timeout=120)
    assert_clean(app)
