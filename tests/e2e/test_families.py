"""One model per family in a real browser: Model → Pruning → Export, each page naming the family's
metric and showing no error. The image classifier and the seq2seq model are tiny Hugging Face
models built here and uploaded as a folder's files; the others are sample models opened by
link, "other" as the sample LM with its family overridden in the link.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_browser import (  # noqa: F401 - chromium_path and patient_expectations are fixtures
    CHROMIUM,
    PAGES,
    assert_no_error_on_page,
    chromium_path,
    metric,
    open_page,
    patient_expectations,
    wait_for_app,
)

transformers = pytest.importorskip("transformers")
from playwright.sync_api import Page, expect  # noqa: E402

READY = {path: ready for path, _, ready in PAGES}
# (model id in the link, the metric each page names, the family the Model page says was detected)
SAMPLES = [
    ("tinylm", "Perplexity", "causal LM"),
    ("minilm", "Cosine similarity", "text encoder"),
    ("mlp", "Accuracy", "classifier"),
]
LOAD_MS = 180_000  # MiniLM loads and scores 512 sentences on the Model page: slow on a busy machine


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny T5 with the sample LM's tokenizer (its vocabulary): scored by teacher-forced perplexity."""
    import shutil

    import sample_models

    folder = tmp_path_factory.mktemp("t5")
    config = transformers.T5Config(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, vocab_size=2048)
    transformers.T5ForConditionalGeneration(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(sample_models.TINYLM_DIR / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny image classifier saved by transformers: config.json and model.safetensors."""
    folder = tmp_path_factory.mktemp("vit")
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                    image_size=32, patch_size=8, num_labels=5)
    transformers.ViTForImageClassification(config).save_pretrained(folder)
    return folder


def go_to(page: Page, title: str, path: str) -> None:
    """Another page of the same session, by the sidebar's navigation."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    page.wait_for_selector(READY[path], timeout=LOAD_MS)
    wait_for_app(page)


def family_box(page: Page):
    return page.locator(".st-key-model_family").get_by_role("combobox", name="Family")


def assert_names_the_metric(page: Page, label: str) -> None:
    expect(metric(page, label)).to_have_count(1)
    assert_no_error_on_page(page)


def pruning_and_export(page: Page, label: str, screenshots: Path, name: str) -> None:
    go_to(page, "Pruning", "pruning")
    assert_names_the_metric(page, label)
    page.screenshot(path=screenshots / f"family-{name}-pruning.png")
    go_to(page, "Export", "export")
    assert_names_the_metric(page, label)


@pytest.mark.parametrize(("model_id", "label", "family"), SAMPLES, ids=[model_id for model_id, _, _ in SAMPLES])
def test_a_sample_model_of_each_family_goes_from_model_to_pruning_to_export(
    page, app_url, screenshot_dir, model_id, label, family
):
    page.goto(f"{app_url}/model?model={model_id}")
    page.wait_for_selector(READY["model"], timeout=LOAD_MS)
    wait_for_app(page)
    expect(family_box(page)).to_have_value(f"detected: {family}")
    expect(metric(page, f"Baseline {label.lower()}")).to_have_count(1, timeout=LOAD_MS)
    assert_no_error_on_page(page)
    page.screenshot(path=screenshot_dir / f"family-{model_id}-model.png")
    pruning_and_export(page, label, screenshot_dir, model_id)


def upload_folder(page: Page, app_url: str, folder: Path, heading: str) -> None:
    open_page(page, app_url, "model", READY["model"])
    page.get_by_role("tab", name="Upload").click()
    files = sorted(folder.iterdir())
    page.locator(".st-key-model_upload input[type=file]").set_input_files(files)
    expect(page.get_by_test_id("stFileChipName")).to_have_count(len(files))
    wait_for_app(page)
    page.get_by_role("button", name="Use these files").click()
    expect(page.get_by_role("heading", level=3, name=heading)).to_be_visible(timeout=LOAD_MS)
    wait_for_app(page)


def test_an_uploaded_image_classifier_folder_goes_from_model_to_pruning_to_export(page, app_url, screenshot_dir, vit_folder):
    upload_folder(page, app_url, vit_folder, "ViTForImageClassification")
    expect(family_box(page)).to_have_value("detected: image classifier")
    assert_names_the_metric(page, "Baseline top-1 agreement")
    pruning_and_export(page, "Top-1 agreement", screenshot_dir, "vit")


def test_an_uploaded_seq2seq_folder_goes_from_model_to_pruning_to_export(page, app_url, screenshot_dir, t5_folder):
    upload_folder(page, app_url, t5_folder, "T5ForConditionalGeneration")
    expect(family_box(page)).to_have_value("detected: sequence-to-sequence LM")
    assert_names_the_metric(page, "Baseline perplexity")
    pruning_and_export(page, "Perplexity", screenshot_dir, "t5")


def test_a_model_opened_as_another_family_goes_from_model_to_pruning_to_export(page, app_url, screenshot_dir):
    page.goto(f"{app_url}/model?model=family/other/tinylm")
    page.wait_for_selector(READY["model"], timeout=LOAD_MS)
    wait_for_app(page)
    expect(metric(page, "Baseline output cosine (every output)")).to_have_count(1, timeout=LOAD_MS)
    assert_no_error_on_page(page)
    pruning_and_export(page, "Output cosine (every output)", screenshot_dir, "other")


def test_pruning_tinylm_reads_well_on_a_tall_screen(page, app_url, screenshot_dir):
    page.set_viewport_size({"width": 1400, "height": 2400})
    page.goto(f"{app_url}/pruning?model=tinylm")
    page.wait_for_selector(READY["pruning"], timeout=LOAD_MS)
    wait_for_app(page)
    page.locator(".st-key-prune_amount input[type=range]").focus()
    for _ in range(50):
        page.keyboard.press("ArrowRight")
    expect(metric(page, "Sparsity")).to_have_text("50.0%")
    wait_for_app(page)
    assert_names_the_metric(page, "Perplexity")
    page.screenshot(path=screenshot_dir / "pruning-tinylm-50.png")
