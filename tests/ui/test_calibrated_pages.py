"""Wanda, SparseGPT, GPTQ and AWQ on the Pruning and Quantization pages: they run on a button.

A recipe with a calibrated method is compressed when Run is pressed, not on every change; the
result is kept per recipe, so a recipe computed before shows at once. Results are kept per
process, so each test uses a recipe (an amount, a bit width) no other test computes.
"""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

import compression
from compression.io.onnx.export import export_onnx
from tests.ui.test_languages import EN, HAN, ZH, formats_in  # noqa: F401 (a fixture)
from tests.ui.test_pages import assert_clean, metric_value, open_page, percent, upload_model, url_recipe


def open_on(app: AppTest, page: str, model: str = "mlp", language: str = "en") -> AppTest:
    app.query_params["model"] = model
    app.query_params["lang"] = language
    return open_page(app, page)


def run_buttons(app: AppTest, key: str) -> list:
    return [button for button in app.button if button.key == key]


def metric_labels(app: AppTest) -> list[str]:
    return [metric.label for metric in app.metric]


def wanda_at(app: AppTest, amount: float) -> AppTest:
    open_on(app, "pages/pruning.py")
    app.selectbox(key="prune_method").set_value("wanda").run()
    return app.slider(key="prune_amount").set_value(amount).run()


def test_choosing_wanda_shows_the_run_button_and_no_metric_until_pressed(app):
    wanda_at(app, 0.41)
    assert_clean(app)
    [run] = run_buttons(app, "prune_calibrated_run")
    assert run.label == "Run Wanda on 128 calibration samples"
    assert "Accuracy" not in metric_labels(app) and "Sparsity" not in metric_labels(app)
    assert any(EN["calibrated.wanda_formula"] in latex.value for latex in app.latex)
    assert url_recipe(app)["prune"] == {"amount": 0.41, "method": "wanda", "scope": "row"}


def test_pressing_run_computes_wanda_and_the_recipe_in_the_url_names_it(app):
    wanda_at(app, 0.43)
    run_buttons(app, "prune_calibrated_run")[0].click().run()
    assert_clean(app)
    assert percent(metric_value(app, "Sparsity")) == pytest.approx(0.43, abs=0.005)
    assert float(metric_value(app, "Accuracy")) > 0.5
    assert not run_buttons(app, "prune_calibrated_run")
    recipe = url_recipe(app)
    assert recipe["prune"]["method"] == "wanda" and recipe["calibration"] == {"samples": 128, "seed": 0}


def test_a_recipe_computed_before_shows_at_once_without_the_button(app):
    wanda_at(app, 0.47)
    run_buttons(app, "prune_calibrated_run")[0].click().run()
    sparsity = metric_value(app, "Sparsity")
    app.slider(key="prune_amount").set_value(0.2).run()
    assert run_buttons(app, "prune_calibrated_run") and "Sparsity" not in metric_labels(app)
    app.slider(key="prune_amount").set_value(0.47).run()
    assert_clean(app)
    assert not run_buttons(app, "prune_calibrated_run")
    assert metric_value(app, "Sparsity") == sparsity


def test_wanda_takes_an_n_m_pattern_and_sparsegpt_has_no_scope(app):
    wanda_at(app, 0.5)
    app.radio(key="prune_calibrated_cut").set_value("pattern").run()
    assert url_recipe(app)["prune"] == {"m": 4, "method": "wanda", "n": 2}
    app.selectbox(key="prune_method").set_value("sparsegpt").run()
    assert_clean(app)
    assert url_recipe(app)["prune"] == {"m": 4, "method": "sparsegpt", "n": 2}
    assert run_buttons(app, "prune_calibrated_run")[0].label == "Run SparseGPT on 128 calibration samples"
    app.radio(key="prune_calibrated_cut").set_value("amount").run()
    assert [radio.key for radio in app.radio if radio.key.endswith("_scope")] == []


def test_the_calibration_samples_and_seed_go_into_the_recipe_and_the_button(app):
    wanda_at(app, 0.44)
    app.number_input(key="prune_calibration_samples").set_value(64).run()
    app.number_input(key="prune_calibration_seed").set_value(3).run()
    assert url_recipe(app)["calibration"] == {"samples": 64, "seed": 3}
    assert run_buttons(app, "prune_calibrated_run")[0].label == "Run Wanda on 64 calibration samples"


def test_back_to_magnitude_the_page_is_live_again_and_the_recipe_names_no_rows(app):
    wanda_at(app, 0.45)
    app.selectbox(key="prune_method").set_value("magnitude").run()
    assert_clean(app)
    assert "calibration" not in url_recipe(app)
    assert not run_buttons(app, "prune_calibrated_run")
    assert percent(metric_value(app, "Sparsity")) == pytest.approx(0.45, abs=0.005)


def test_gptq_on_the_quantization_page_runs_on_the_button_and_is_kept(app):
    open_on(app, "pages/quantization.py")
    app.selectbox(key="quantize_scheme").set_value("gptq").run()
    app.slider(key="quantize_bits").set_value(3).run()
    app.toggle(key="quantize_act_order").set_value(True).run()
    assert_clean(app)
    assert url_recipe(app)["quantize"] == {"act_order": True, "bits": 3, "granularity": "per_channel",
                                           "scheme": "gptq", "symmetric": True}
    assert "Accuracy" not in metric_labels(app)
    [run] = run_buttons(app, "quantize_calibrated_run")
    assert run.label == "Run GPTQ on 128 calibration samples"
    run.click().run()
    assert_clean(app)
    accuracy = metric_value(app, "Accuracy")
    assert float(accuracy) > 0.5 and not run_buttons(app, "quantize_calibrated_run")
    app.slider(key="quantize_bits").set_value(5).run()
    assert run_buttons(app, "quantize_calibrated_run")
    app.slider(key="quantize_bits").set_value(3).run()
    assert not run_buttons(app, "quantize_calibrated_run") and metric_value(app, "Accuracy") == accuracy


def test_awq_offers_per_channel_or_per_group_and_no_per_tensor(app):
    open_on(app, "pages/quantization.py")
    app.selectbox(key="quantize_scheme").set_value("awq").run()
    assert_clean(app)
    assert list(app.selectbox(key="quantize_granularity").options) == ["per channel", "per group"]
    app.selectbox(key="quantize_granularity").set_value("per_group").run()
    assert url_recipe(app)["quantize"]["granularity"] == "per_group"
    assert run_buttons(app, "quantize_calibrated_run")[0].label == "Run AWQ on 128 calibration samples"


def test_an_onnx_model_gets_the_engines_refusal_kept_for_the_recipe(app):
    open_page(app, "pages/model.py")
    upload_model(app, "mlp.onnx", export_onnx(compression.load_model("mlp")))
    open_page(app, "pages/pruning.py")
    app.selectbox(key="prune_method").set_value("wanda").run()
    app.slider(key="prune_amount").set_value(0.3).run()
    run_buttons(app, "prune_calibrated_run")[0].click().run()
    assert not app.exception
    [refusal] = [error.value for error in app.error]
    assert refusal.startswith("Compression failed: wanda must watch each layer run on calibration rows")
    app.slider(key="prune_amount").set_value(0.31).run()
    app.slider(key="prune_amount").set_value(0.3).run()
    assert [error.value for error in app.error] == [refusal] and not run_buttons(app, "prune_calibrated_run")


@pytest.mark.parametrize("language", ["en", "zh"])
def test_both_pages_render_the_calibrated_methods_in_both_languages(app, formats_in, language):
    catalog = {"en": EN, "zh": ZH}[language]
    formats_in(language)
    open_on(app, "pages/pruning.py", language=language)
    app.selectbox(key="prune_method").set_value("sparsegpt").run()
    assert_clean(app)
    assert bool(HAN.search(app.title[0].value)) == (language == "zh")
    assert catalog["calibrated.sparsegpt_note"] in [caption.value for caption in app.caption]
    assert run_buttons(app, "prune_calibrated_run")[0].label == catalog["calibrated.run"].format(
        methods="SparseGPT", samples=128)
    open_page(app, "pages/quantization.py")
    app.selectbox(key="quantize_scheme").set_value("awq").run()
    assert_clean(app)
    assert catalog["calibrated.awq_note"] in [caption.value for caption in app.caption]


@pytest.mark.parametrize("page", ["pages/overview.py", "pages/export.py"])
def test_other_pages_wait_for_the_run_button_too(app, page: str) -> None:
    """A calibrated recipe opened on another page does not block it for half a minute (MiniLM)."""
    open_page(app, "pages/pruning.py")
    app.selectbox(key="prune_method").set_value("wanda").run()
    app.switch_page(page).run()
    assert not app.exception, [e.value for e in app.exception]
    assert [button for button in app.button if (button.key or "").endswith("_calibrated_run")]
