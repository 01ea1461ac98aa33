"""The teaching boxes: the formulas of the settings in use, the recipe in plain PyTorch and the
common mistakes, on the Pruning, Quantization and Model pages; the scope hidden while cutting by θ."""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1 import app_test as app_test_module

from tests.ui.conftest import APP, _PagesFlagOwnedByTheTest
from ui.teaching import pruning_topics, quantization_topics
from ui.text import catalog

EN = catalog("en")


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setattr(app_test_module, "PagesManager", _PagesFlagOwnedByTheTest)
    return AppTest.from_file(str(APP), default_timeout=120)


def opened(app: AppTest, page: str, *boxes: str) -> AppTest:
    """``page`` with the expanders keyed ``boxes`` open (each draws its content only when open)."""
    app.run()
    app.switch_page(page).run()
    for box in boxes:
        app.session_state[box] = True
    return app.run()


def formulas(app: AppTest) -> list[str]:
    return [latex.value.strip("$\n") for latex in app.latex]


def shown(app: AppTest) -> str:
    return "\n".join(element.value for element in [*app.markdown, *app.caption])


# --- which formulas --------------------------------------------------------------------------


def test_a_prune_section_shows_its_cut_then_its_scores():
    assert pruning_topics({"method": "magnitude", "scope": "global", "amount": 0.5}) == ["global_cut"]
    assert pruning_topics({"method": "structured", "scope": "layer"}, cut="amount") == ["layer_cut", "channel_scores"]
    assert pruning_topics({"method": "random", "scope": "global", "amount": 0.5}) == ["global_cut", "random_scores"]
    assert pruning_topics({"method": "magnitude", "scope": "global"}, cut="threshold") == ["threshold_cut"]
    assert pruning_topics({"method": "n:m", "n": 2, "m": 4}) == ["n_m"]
    assert pruning_topics(None) == [] and pruning_topics({"method": "wanda", "amount": 0.5}) == []


def test_a_quantize_section_shows_its_grid_its_granularity_and_sqnr():
    assert quantization_topics({"scheme": "linear", "bits": 4, "granularity": "per_group", "symmetric": False}) == \
        ["asymmetric", "per_group", "sqnr"]
    assert quantization_topics({"scheme": "pow2", "bits": 4, "granularity": "per_tensor"}) == \
        ["pow2", "pow2_scale", "per_tensor", "sqnr"]
    assert quantization_topics({"scheme": "kmeans", "bits": 3}) == ["kmeans", "codebook_cost", "sqnr"]
    assert quantization_topics({"scheme": "float", "format": "fp8_e5m2"}) == ["float_bits", "fp8_e5m2", "sqnr"]


def test_every_topic_has_a_line_and_a_formula():
    topics = {topic for section in ({"scheme": "linear", "symmetric": False, "granularity": g} for g in
                                    ("per_tensor", "per_channel", "per_group")) for topic in quantization_topics(section)}
    topics |= {topic for scheme in ("pow2", "kmeans") for topic in quantization_topics({"scheme": scheme})}
    topics |= {topic for name in ("fp16", "bf16", "fp8_e4m3", "fp8_e5m2")
               for topic in quantization_topics({"scheme": "float", "format": name})}
    topics |= {"symmetric", "global_cut", "layer_cut", "threshold_cut", "random_scores", "channel_scores", "n_m"}
    assert all(f"formulas.{topic}" in EN and f"formulas.{topic}_formula" in EN for topic in topics)


# --- on the pages ----------------------------------------------------------------------------


def test_the_pruning_formulas_follow_the_scope_and_the_method(app):
    opened(app, "pages/pruning.py", "prune_formulas")
    assert EN["formulas.global_cut_formula"] in formulas(app)
    app.radio(key="prune_scope").set_value("layer").run()
    assert EN["formulas.layer_cut_formula"] in formulas(app) and EN["formulas.global_cut_formula"] not in formulas(app)
    app.selectbox(key="prune_method").set_value("n:m").run()
    assert EN["formulas.n_m_formula"] in formulas(app)
    assert "along the input axis" in EN["pruning.intro"] and "2:4" in EN["pruning.intro"]


def test_cutting_by_threshold_hides_the_scope_and_amount_brings_it_back_as_it_was(app):
    opened(app, "pages/pruning.py")
    app.radio(key="prune_scope").set_value("layer").run()
    app.radio(key="prune_cut").set_value("threshold").run()
    assert not app.exception
    assert "prune_scope" not in [radio.key for radio in app.radio]
    app.radio(key="prune_cut").set_value("amount").run()
    assert app.radio(key="prune_scope").value == "layer"


def test_the_pruning_page_writes_the_recipe_with_torch_prune_and_names_what_it_cannot(app):
    opened(app, "pages/pruning.py", "prune_plain_pytorch", "prune_mistakes")
    app.slider(key="prune_amount").set_value(0.5).run()
    [code] = [block.value for block in app.code if "torch.nn.utils" in block.value]
    assert "compression.load_model('simplenet')" in code
    assert "prune.global_unstructured(parameters, pruning_method=prune.L1Unstructured, amount=0.5)" in code
    assert EN["teaching.mistakes.absolute_value"] in shown(app) and EN["teaching.mistakes.prune_module"] in shown(app)
    app.selectbox(key="prune_method").set_value("n:m").run()
    assert not [block for block in app.code if "torch.nn.utils" in block.value]
    assert EN["teaching.missing.n_m"] in shown(app)


def test_the_quantization_page_shows_the_grid_in_use_in_formulas_and_in_fake_quantize(app):
    opened(app, "pages/quantization.py", "quantize_formulas", "quantize_plain_pytorch", "quantize_mistakes")
    app.toggle(key="quantize_symmetric").set_value(False).run()
    assert {EN["formulas.asymmetric_formula"], EN["formulas.per_channel_formula"], EN["formulas.sqnr_formula"]} <= \
        set(formulas(app))
    [code] = [block.value for block in app.code if "fake_quantize" in block.value]
    assert "torch.fake_quantize_per_channel_affine(w, scale, zero_point, 0, 0, 255)" in code
    assert EN["teaching.mistakes.uniform_pow2"] in shown(app) and EN["teaching.mistakes.fp16_divide"] in shown(app)
    app.selectbox(key="quantize_scheme").set_value("pow2").run()
    assert EN["formulas.pow2_scale_formula"] in formulas(app)
    assert EN["teaching.missing.pow2"] in shown(app)
    app.selectbox(key="quantize_scheme").set_value("fp8_e4m3").run()
    assert EN["formulas.fp8_e4m3_formula"] in formulas(app)
    assert any("torch.float8_e4m3fn" in block.value for block in app.code)


def test_the_fusion_section_corrects_model_fusion_as_merging_models(app):
    app.query_params["model"] = "bn_cnn"
    opened(app, "pages/model.py", "fusion_mistakes")
    assert not app.exception
    assert EN["teaching.mistakes.fusion"] in shown(app)
