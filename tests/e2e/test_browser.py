"""The served dashboard in a real browser: pages by URL, keyboard on sliders, uploads, links.

Needs the ``playwright`` package and a Chromium at /usr/bin/chromium (Debian's ``chromium``;
CI installs it). Reruns are awaited as Streamlit's own e2e suite does, on the app's
``data-test-script-state``, then on the text or drawing that the rerun must change.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import urllib.parse
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium)", allow_module_level=True)

import torch  # noqa: E402
from playwright.sync_api import Page, expect  # noqa: E402

import sample_models  # noqa: E402
from compression.workflows.distillation import student_for  # noqa: E402
from compression.io.loading import load_model  # noqa: E402

IDLE = '[data-testid="stApp"][data-test-connection-state="CONNECTED"][data-test-script-state="notRunning"]'
HISTOGRAM_PATHS_JS = """() => [...document.querySelectorAll('.st-key-prune_histogram .scatterlayer .trace path')]
    .map(path => path.getAttribute('d')).join('|')"""

# (URL path, page title, an element that is there once the page has drawn its content).
# The Overview is the default page, which Streamlit serves at "/"; every other page has its path.
PAGES = [
    ("model", "Model", '[data-testid="stDataFrame"]'),
    ("pruning", "Pruning", ".st-key-prune_histogram .js-plotly-plot"),
    ("quantization", "Quantization", ".st-key-quantize_histogram .js-plotly-plot"),
    ("tradeoffs", "Trade-offs", ".st-key-sweep_amounts"),
    ("gradual", "Gradual pruning", ".st-key-agp_chart .js-plotly-plot"),
    ("sensitivity", "Sensitivity", ".st-key-sensitivity_run"),
    ("distillation", "Distillation", ".st-key-distill_run"),
    ("export", "Export", '[data-testid="stDownloadButton"]'),
    ("", "Compression Lab", '[data-testid="stPageLink"]'),
]
LINK_RECIPE = {"prune": {"method": "magnitude", "amount": 0.4, "scope": "layer"}}
# A st.dataframe draws on a canvas; its cells are also in an accessible table inside it (text
# that is not rendered, so read with textContent), one object per row keyed by column header.
DATAFRAME_RECORDS_JS = """(frame) => {
    const [header, ...body] = [...frame.querySelectorAll('table[role=grid] tr[role=row]')]
        .map(row => [...row.querySelectorAll('th, td')].map(cell => cell.textContent));
    return body.map(cells => Object.fromEntries(header.map((name, column) => [name, cells[column]])));
}"""
PLOTLY_TRACES_JS = "(plot) => plot.data.map(trace => ({name: trace.name, x: [...trace.x], y: [...trace.y]}))"
# Records the widget keys of the distillation page's live charts (one per epoch) as they are drawn.
WATCH_LIVE_CHARTS_JS = """() => {
    window.liveCharts = new Set();
    new MutationObserver(() => document.querySelectorAll('[class*="st-key-distill_chart_"]').forEach(
        element => element.classList.forEach(name => name.startsWith('st-key-distill_chart_') && window.liveCharts.add(name))
    )).observe(document.body, {subtree: true, childList: true});
}"""

@pytest.fixture(scope="module")
def chromium_path() -> str:
    return CHROMIUM


@pytest.fixture(scope="module", autouse=True)
def patient_expectations():
    """A rerun that compresses and evaluates can take seconds on a busy CI machine."""
    expect.set_options(timeout=30_000)
    yield
    expect.set_options(timeout=5_000)


# --- driving the app --------------------------------------------------------------------------


def wait_for_app(page: Page) -> None:
    page.wait_for_selector(IDLE)


def open_page(page: Page, app_url: str, path: str, ready: str) -> None:
    page.goto(f"{app_url}/{path}")
    page.wait_for_selector(ready)
    wait_for_app(page)


def json_in_url(fragment: str) -> str:
    """A regular expression for ``fragment`` of the recipe JSON as it appears, encoded, in a URL."""
    return re.escape(urllib.parse.quote(fragment, safe=""))


def metric(page: Page, label: str):
    return page.get_by_test_id("stMetric").filter(has_text=label).get_by_test_id("stMetricValue")


def percent(text: str) -> float:
    return float(text.strip().rstrip("%")) / 100


def move_slider(page: Page, key: str, key_name: str, presses: int) -> None:
    """Focus the slider with widget key ``key`` and press an arrow key ``presses`` times."""
    page.locator(f".st-key-{key} input[type=range]").focus()
    for _ in range(presses):
        page.keyboard.press(key_name)


def dataframe_records(frame) -> list[dict[str, str]]:
    """The rows of the st.dataframe at locator ``frame``, each a dict from column header to cell text."""
    return frame.evaluate(DATAFRAME_RECORDS_JS)


def assert_no_error_on_page(page: Page) -> None:
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_test_id("stAlertContentError")).to_have_count(0)
    expect(page.get_by_role("dialog")).to_have_count(0)  # e.g. Streamlit's "Page not found"


def upload_model(page: Page, app_url: str, file: Path) -> None:
    """On the Model page's Upload tab, put ``file`` in the uploader and press "Use these files"."""
    open_page(page, app_url, "model", PAGES[0][2])
    page.get_by_role("tab", name="Upload").click()
    page.locator(".st-key-model_upload input[type=file]").set_input_files(file)
    expect(page.get_by_text(file.name, exact=True)).to_be_visible()
    wait_for_app(page)
    page.get_by_role("button", name="Use these files").click()


class _RunsAShellCommand:
    """Pickles as a call to os.system: what a hostile checkpoint carries."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


# --- tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "title", "ready"), PAGES, ids=[title for _, title, _ in PAGES])
def test_page_opened_by_url_shows_no_exception_or_error(page, app_url, screenshot_dir, path, title, ready):
    open_page(page, app_url, path, ready)
    expect(page.get_by_role("heading", level=1, name=title)).to_be_visible()
    page.screenshot(path=screenshot_dir / f"{title.lower()}.png")
    assert_no_error_on_page(page)


def test_amount_slider_moved_by_keyboard_updates_sparsity(page, app_url, screenshot_dir):
    open_page(page, app_url, "pruning", PAGES[1][2])
    expect(metric(page, "Sparsity")).to_have_text("0.0%")
    move_slider(page, "prune_amount", "ArrowRight", 10)
    expect(page.locator(".st-key-prune_amount input[type=range]")).to_have_value("0.1")
    expect(metric(page, "Sparsity")).to_have_text("10.0%")
    expect(page).to_have_url(re.compile(json_in_url('"amount":0.1,')))
    wait_for_app(page)
    page.screenshot(path=screenshot_dir / "pruning-amount-0.10.png")


def test_amount_slider_moved_by_keyboard_redraws_the_histogram(page, app_url):
    open_page(page, app_url, "pruning", PAGES[1][2])
    paths_before = page.evaluate(HISTOGRAM_PATHS_JS)
    move_slider(page, "prune_amount", "ArrowRight", 10)
    expect(metric(page, "Sparsity")).to_have_text("10.0%")
    page.wait_for_function(f"(before) => ({HISTOGRAM_PATHS_JS})() !== before", arg=paths_before)
    assert_no_error_on_page(page)


def test_bits_slider_moved_by_keyboard_redraws_the_quantization_grid(page, app_url, screenshot_dir):
    open_page(page, app_url, "quantization", PAGES[2][2])
    titles = page.locator(".st-key-quantize_histogram .gtitle")
    expect(titles.filter(has_text=", 8 bits, ")).to_be_visible()
    move_slider(page, "quantize_bits", "ArrowLeft", 4)
    expect(page.locator(".st-key-quantize_bits input[type=range]")).to_have_value("4")
    expect(titles.filter(has_text=", 4 bits, ")).to_be_visible()
    wait_for_app(page)
    expect(titles).to_have_count(1)  # while a rerun draws, the previous figure may linger beside it
    expect(page.locator(".st-key-quantize_histogram .gtitle-subtitle, .st-key-quantize_histogram .gtitle").filter(has_text="quantization levels (15)")).to_have_count(1)
    expect(page).to_have_url(re.compile(json_in_url('"bits":4,')))
    page.screenshot(path=screenshot_dir / "quantization-4-bits.png")


def test_uploaded_state_dict_shows_its_layers(page, app_url, screenshot_dir, tmp_path):
    checkpoint = tmp_path / "mlp.pt"
    torch.save(sample_models.load_trained("mlp").state_dict(), checkpoint)
    upload_model(page, app_url, checkpoint)
    try:
        expect(page.get_by_role("heading", level=3, name="mlp.pt")).to_be_visible(timeout=10_000)
        wait_for_app(page)
        expect(page.get_by_test_id("stDataFrame")).to_contain_text("fc1.weight")
    finally:
        page.screenshot(path=screenshot_dir / "model-upload.png")
    assert_no_error_on_page(page)


def hostile_checkpoint(folder: Path) -> tuple[Path, Path]:
    """A torch.save file whose unpickling would create ``marker``; returns (file, marker)."""
    marker = folder / "code-ran"
    checkpoint = folder / "hostile.pt"
    torch.save({"fc1.weight": _RunsAShellCommand(f"touch {marker}")}, checkpoint)
    return checkpoint, marker


def test_hostile_pickle_is_refused_without_running_its_code(page, app_url, screenshot_dir, tmp_path):
    checkpoint, marker = hostile_checkpoint(tmp_path)
    upload_model(page, app_url, checkpoint)
    error = page.get_by_test_id("stAlertContentError")
    expect(error).to_contain_text("run code")
    wait_for_app(page)
    page.screenshot(path=screenshot_dir / "model-hostile-upload.png")
    expect(page.get_by_test_id("stException")).to_have_count(0)
    assert not marker.exists()


def test_app_keeps_working_after_a_refused_upload(page, app_url, tmp_path):
    checkpoint, _ = hostile_checkpoint(tmp_path)
    upload_model(page, app_url, checkpoint)
    expect(page.get_by_test_id("stAlertContentError")).to_be_visible()
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Pruning", exact=True).click()
    expect(page.get_by_role("heading", level=1, name="Pruning")).to_be_visible()
    page.wait_for_selector(PAGES[1][2])
    wait_for_app(page)
    expect(metric(page, "Sparsity")).to_have_text("0.0%")
    assert_no_error_on_page(page)


def test_copied_link_opens_pruning_with_its_model_and_recipe(page, app_url, screenshot_dir):
    query = urllib.parse.urlencode({"model": "mlp", "recipe": json.dumps(LINK_RECIPE, separators=(",", ":"))})
    open_page(page, app_url, f"pruning?{query}", PAGES[1][2])
    expect(page.get_by_test_id("stSidebar").get_by_role("combobox", name="Model")).to_have_value("mlp")
    expect(page.locator(".st-key-prune_amount input[type=range]")).to_have_value("0.4")
    expect(page.locator(".st-key-prune_scope").get_by_role("radio", name="per layer")).to_be_checked()
    assert percent(metric(page, "Sparsity").inner_text()) == pytest.approx(0.40, abs=0.005)
    page.screenshot(path=screenshot_dir / "pruning-from-link.png")
    assert_no_error_on_page(page)


def test_sweep_runs_with_a_progress_bar_and_draws_the_pareto_front(page, app_url, screenshot_dir):
    open_page(page, app_url, "tradeoffs", PAGES[3][2])
    page.get_by_role("button", name="Run sweep").click()
    chart = page.locator(".st-key-sweep_chart .js-plotly-plot")
    expect(chart).to_be_visible(timeout=120_000)
    wait_for_app(page)
    expect(page.locator(".st-key-sweep_chart .legendtext").filter(has_text="Pareto front")).to_have_count(1)
    expect(page.locator(".st-key-sweep_chart .legendtext").filter(has_text="linear 4-bit")).to_have_count(1)
    expect(page.get_by_role("button", name="Download CSV")).to_be_visible()
    page.locator(".st-key-sweep_chart").scroll_into_view_if_needed()
    page.screenshot(path=screenshot_dir / "trade-offs-sweep.png", full_page=True)
    assert_no_error_on_page(page)


def test_model_path_opens_the_model_page_and_keeps_its_path(page, app_url):
    open_page(page, app_url, "model?model=mlp", PAGES[0][2])
    expect(page.get_by_role("heading", level=1, name="Model")).to_be_visible()
    expect(page.get_by_role("heading", level=3, name="mlp")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/model\?model=mlp"))
    assert_no_error_on_page(page)


def test_overview_links_to_every_page(page, app_url):
    open_page(page, app_url, "", PAGES[-1][2])
    for label in ["1 · Model", "2 · Fusion", "3 · Pruning", "4 · Quantization", "5 · Gradual pruning",
                  "6 · Sensitivity", "7 · Distillation", "8 · Trade-offs", "9 · Export"]:
        expect(page.get_by_test_id("stPageLink").filter(has_text=label)).to_be_visible()
    page.get_by_test_id("stPageLink").filter(has_text="3 · Pruning").click()
    expect(page.get_by_role("heading", level=1, name="Pruning")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/pruning\?model=simplenet"))  # the model stays in the URL
    assert_no_error_on_page(page)


def test_gradual_pruning_runs_and_draws_each_step(page, app_url, screenshot_dir):
    open_page(page, app_url, "gradual", ".st-key-agp_chart .js-plotly-plot")
    page.get_by_role("button", name="Run gradual pruning").click()
    expect(page.get_by_test_id("stDataFrame")).to_have_count(2, timeout=120_000)
    wait_for_app(page)
    expect(page.locator(".st-key-agp_chart .legendtext").filter(has_text="sparsity reached")).to_have_count(1)
    page.screenshot(path=screenshot_dir / "gradual-pruning.png", full_page=True)
    assert_no_error_on_page(page)


def test_sensitivity_measures_spreads_a_budget_and_searches(page, app_url, screenshot_dir):
    open_page(page, app_url, "sensitivity?model=mlp", ".st-key-sensitivity_run")
    page.get_by_role("button", name="Measure sensitivity").click()
    expect(page.locator(".st-key-sensitivity_heatmap .js-plotly-plot")).to_be_visible(timeout=120_000)
    wait_for_app(page)
    move_slider(page, "sensitivity_budget", "ArrowRight", 5)
    expect(page.locator(".st-key-sensitivity_budget input[type=range]")).to_have_value("0.55")
    wait_for_app(page)  # while reruns draw, earlier figures may linger beside the new one
    expect(page.locator(".st-key-sensitivity_allocation .gtitle").filter(has_text="for 55% overall")).to_have_count(1)
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.get_by_text("Boundary found by bisection within a drop of 0.010")).to_be_visible(timeout=120_000)
    wait_for_app(page)
    page.screenshot(path=screenshot_dir / "sensitivity.png", full_page=True)
    assert_no_error_on_page(page)


def test_distillation_trains_both_students_with_live_curves_and_compares_them(page, app_url, screenshot_dir):
    width, epochs = 8, 3
    student_parameters = sum(p.numel() for p in student_for(load_model("mlp"), width).parameters())
    open_page(page, app_url, "distillation?model=mlp", ".st-key-distill_run")
    move_slider(page, "distill_width", "ArrowLeft", 1)  # 16 -> 8 hidden units
    move_slider(page, "distill_epochs", "Home", 1)
    move_slider(page, "distill_epochs", "ArrowRight", epochs - 1)
    expect(page.locator(".st-key-distill_width input[type=range]")).to_have_attribute("aria-valuetext", str(width))
    expect(page.locator(".st-key-distill_epochs input[type=range]")).to_have_value(str(epochs))
    expect(page.get_by_text(f"Student: {student_parameters:,} parameters")).to_be_visible()
    wait_for_app(page)

    page.evaluate(WATCH_LIVE_CHARTS_JS)
    page.get_by_role("button", name="Train both students").click()
    results = page.get_by_test_id("stDataFrame")
    expect(results.locator("tbody tr[role=row]")).to_have_count(3, timeout=120_000)
    wait_for_app(page)
    assert page.evaluate("() => window.liveCharts.size") >= 1  # drawn while the students trained

    rows = {row["model"].split(" (")[0]: row for row in dataframe_records(results)}
    distilled, labels_only = float(rows["student, distilled"]["Accuracy"]), float(rows["student, labels only"]["Accuracy"])
    assert 0 <= distilled <= 1 and 0 <= labels_only <= 1
    assert int(rows["student, distilled"]["parameters"]) == int(rows["student, labels only"]["parameters"]) == student_parameters

    traces = {trace["name"]: trace for trace in page.locator(".st-key-distill_chart .js-plotly-plot").evaluate(PLOTLY_TRACES_JS)}
    assert set(traces) == {"Accuracy, distilled", "training loss, distilled",
                           "Accuracy, labels only", "training loss, labels only"}
    assert all(trace["x"] == list(range(1, epochs + 1)) and len(trace["y"]) == epochs for trace in traces.values())
    assert traces["Accuracy, distilled"]["y"][-1] == pytest.approx(distilled)  # the table gives the last epoch's
    assert traces["Accuracy, labels only"]["y"][-1] == pytest.approx(labels_only)
    assert all(loss > 0 for name, trace in traces.items() if name.startswith("training loss") for loss in trace["y"])

    page.set_viewport_size({"width": 1400, "height": 1200})  # the chart and the table in one picture
    page.screenshot(path=screenshot_dir / "distillation.png")
    assert_no_error_on_page(page)
