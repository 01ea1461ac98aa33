"""The dashboard and model families: the Model page's family choice, a folder upload's own name,
and the pages with the causal LM tinylm, whose perplexity is better lower."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from streamlit.proto.Metric_pb2 import Metric as MetricProto

import compression
from compression.cli.parser import build_parser
from compression.workflows.sensitivity import sensitivity
from ui import cache
from ui.model_ids import ModelChoice
from tests.ui.test_pages import assert_clean, figure, metric_value, open_link, open_page, set_amount

transformers = pytest.importorskip("transformers")


def family_box(app):
    [box] = [box for box in app.selectbox if box.label == "Family"]
    return box


def test_the_model_page_shows_the_detected_family_first(app):
    open_link(app, "mlp", None)
    open_page(app, "pages/model.py")
    assert_clean(app)
    box = family_box(app)
    assert box.value == ""
    assert box.options == ["detected: classifier", "text encoder", "causal LM", "sequence-to-sequence LM",
                           "image classifier", "classifier", "other"]


def test_choosing_another_family_reloads_the_model_scored_by_that_familys_metric(app):
    open_link(app, "tinylm", None)
    open_page(app, "pages/model.py")
    family_box(app).set_value("other").run()
    assert_clean(app)
    assert app.session_state["model_id"] == "family/other/tinylm"
    assert app.query_params["model"] == "family/other/tinylm"  # a link opens it the same way
    assert [s.value for s in app.subheader] == ["tinylm (as other)"]
    assert metric_value(app, "Baseline output cosine (every output)") == "1.0000"
    assert family_box(app).value == "other"
    family_box(app).set_value("").run()  # back to the detected family: the model as it was
    assert app.session_state["model_id"] == "tinylm"
    assert metric_value(app, "Baseline perplexity") == "117.43"


def test_choosing_the_detected_family_keeps_the_model_as_it_is(app):
    open_link(app, "mlp", None)
    open_page(app, "pages/model.py")
    family_box(app).set_value("classifier").run()
    assert app.session_state["model_id"] == "mlp"


def test_a_family_the_model_cannot_be_loaded_as_is_refused_and_the_model_stays(app):
    open_link(app, "tinylm", None)
    open_page(app, "pages/model.py")
    family_box(app).set_value("image_classifier").run()
    assert not app.exception
    [error] = app.error
    assert error.value.startswith("The model cannot be loaded as image classifier: tinylm: transformers could not")
    assert app.session_state["model_id"] == "tinylm"


def test_a_link_opens_a_sample_model_as_the_family_it_names(app):
    open_link(app, "family/other/tinylm", None)
    open_page(app, "pages/pruning.py")
    assert_clean(app)
    assert app.session_state["model_id"] == "family/other/tinylm"
    set_amount(app, 0.5)
    assert float(metric_value(app, "Output cosine (every output)")) < 1.0


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory) -> Path:
    """A tiny Hugging Face image classifier saved as a folder: config.json and model.safetensors."""
    folder = tmp_path_factory.mktemp("vit")
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                    image_size=32, patch_size=8, num_labels=5)
    transformers.ViTForImageClassification(config).save_pretrained(folder)
    return folder


def test_a_folder_uploaded_file_by_file_keeps_the_name_its_config_gives(app, vit_folder):
    open_page(app, "pages/model.py")
    files = [(path.name, path.read_bytes(), "application/octet-stream") for path in sorted(vit_folder.iterdir())]
    app.file_uploader(key="model_upload").set_value(files).run()
    [use] = [b for b in app.button if b.label == "Use these files"]
    use.click().run()
    assert_clean(app)
    assert [s.value for s in app.subheader] == ["ViTForImageClassification"]
    assert "ViTForImageClassification" in app.sidebar.selectbox[0].options
    assert family_box(app).options[0] == "detected: image classifier"
    assert metric_value(app, "Baseline top-1 agreement") == "1.0000"


# --- tinylm: perplexity, lower is better -----------------------------------------------------------

HALF = json.dumps({"prune": {"method": "magnitude", "amount": 0.5, "scope": "global"}})


def test_pruning_tinylm_shows_perplexity_rising_in_red_on_a_sample_of_windows(app):
    open_link(app, "tinylm", HALF)
    open_page(app, "pages/pruning.py")
    assert_clean(app)
    [tile] = [m for m in app.metric if m.label == "Perplexity"]
    assert float(tile.value) > 0 and tile.delta.startswith("+")
    assert tile.proto.color == MetricProto.MetricColor.RED  # a rise of perplexity is a loss
    assert tile.proto.delta_description == "vs. uncompressed, first 32 rows"
    assert any("the first 32 of 139 windows" in caption.value for caption in app.caption)


def test_a_perplexity_rise_is_coloured_as_a_loss():
    from ui.controls import change_color

    assert (change_color("perplexity"), change_color("accuracy")) == ("inverse", "normal")


def test_the_sensitivity_tolerance_for_perplexity_is_a_percent_of_the_baseline(app):
    open_link(app, "tinylm", None)
    model = compression.load_model("tinylm")
    layers = list(model.compressible)[:2]
    frame = sensitivity(model, amounts=(0.0, 0.5), bits=(32, 4), layers=layers, samples=16)
    app.session_state["sensitivity_runs"] = {ModelChoice("tinylm", None): frame}
    open_page(app, "pages/sensitivity.py")
    assert_clean(app)
    assert figure(app, "sensitivity_curves")["layout"]["yaxis"]["title"]["text"] == "Perplexity (lower is better)"
    [tolerance] = [s for s in app.slider if s.key == "sensitivity_tolerance_percent"]
    assert tolerance.label.endswith("tolerance (% of the baseline)") and tolerance.value == 5.0


def test_the_tradeoff_chart_says_perplexity_is_better_lower(app):
    open_link(app, "tinylm", None)
    open_page(app, "pages/tradeoffs.py")
    app.multiselect(key="sweep_amounts").set_value([0.5]).run()
    app.multiselect(key="sweep_bits").set_value([32]).run()
    [run] = [b for b in app.button if b.label == "Run sweep"]
    run.click().run(timeout=300)
    assert_clean(app)
    assert figure(app, "sweep_chart")["layout"]["yaxis"]["title"]["text"] == "Perplexity (lower is better)"


def test_tinylms_live_views_score_a_sample_of_whole_batches():
    model = cache.base_model("tinylm", None)
    samples = cache.live_samples(model)
    assert samples == 32 and samples % model.evaluation.batch_size == 0


@pytest.mark.parametrize("page", ["pages/quantization.py", "pages/export.py", "pages/overview.py"])
def test_tinylm_is_scored_by_perplexity_on_every_page_that_compresses(app, page):
    open_link(app, "tinylm", HALF)
    open_page(app, page)
    assert_clean(app)
    assert [m.label for m in app.metric if m.label.startswith("Perplexity")] == ["Perplexity"]


@pytest.mark.parametrize("page", ["pages/gradual.py", "pages/distillation.py"])
def test_training_pages_say_tinylm_has_no_labelled_training_data(app, page):
    open_link(app, "tinylm", None)
    open_page(app, page)
    assert not app.exception
    assert any("labelled training data" in warning.value for warning in app.warning)


def test_the_export_and_python_lines_load_the_model_as_the_family_chosen(app):
    open_link(app, "family/other/mlp", None)
    open_page(app, "pages/export.py")
    assert_clean(app)
    [apply] = [line for line in app.code[0].value.splitlines() if " apply " in line]
    arguments = build_parser().parse_args(shlex.split(apply)[3:])
    assert (arguments.model, arguments.family) == ("mlp", "other")
    open_page(app, "pages/overview.py")
    assert "compression.load_model('mlp', family='other')" in app.code[-1].value
