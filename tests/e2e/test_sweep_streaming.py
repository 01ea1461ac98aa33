"""A Trade-offs sweep in a real browser on the server's local pool (issue 15): the points come in
with a progress bar, a reload mid-sweep opens a new session on the same run with the points
finished so far, and the run completes with the table ``compression.sweep`` gives inline.

The server runs with ``COMPRESSION_LAB_RAY_ADDRESS`` unset and a local pool of two workers. The
grid is 10 amounts × the page's default bits (2, 4, 8, 32) over linear and k-means, 70 distinct
recipes (bits 32 quantizes nothing, so both schemes share it): k-means points take about a
second each on mlp, so the sweep lasts long enough to be reloaded in the middle.
Screenshots go to ``/tmp/lead/sweep_*.png`` as well as the run's screenshot folder.
"""
from __future__ import annotations

import io
import re
import shutil
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest

from tests.e2e.conftest import ServedApp, serve_app
from tests.e2e.test_browser import (  # noqa: F401 - chromium_path and patient_expectations are fixtures
    assert_no_error_on_page,
    chromium_path,
    open_page,
    patient_expectations,
    wait_for_app,
)
from ui import background_runs, sweep_pool

from playwright.sync_api import Page, expect  # noqa: E402  (test_browser skips the module without playwright)

import compression  # noqa: E402

SHOTS = Path("/tmp/lead")
SWEEP_MS = 600_000  # 70 points on two workers of a busy two-core machine
PROGRESS = '[data-testid="stProgress"]'
POINTS = re.compile(r"(\d+) of 70 points")
AMOUNTS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
ADDED = {"sweep_amounts": ["0.1", "0.2", "0.3", "0.4", "0.6", "0.8"], "sweep_schemes": ["kmeans"]}  # to the defaults


@pytest.fixture(scope="module")
def served_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    """The dashboard on a local pool of two workers, no Ray, journals in a folder of the test's."""
    with pytest.MonkeyPatch.context() as environment:  # the server process inherits it
        environment.delenv(sweep_pool.RAY_ADDRESS_VARIABLE, raising=False)
        environment.delenv(sweep_pool.EXECUTOR_VARIABLE, raising=False)
        environment.setenv(sweep_pool.WORKERS_VARIABLE, "2")
        environment.setenv(background_runs.SWEEP_DIR_VARIABLE, str(tmp_path_factory.mktemp("sweeps")))
        with serve_app(tmp_path_factory.mktemp("streamlit") / "server.log") as served:
            yield served


def shot(page: Page, folder: Path, name: str) -> None:
    page.screenshot(path=folder / name, full_page=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(folder / name, SHOTS / name)


def points_done(page: Page) -> int:
    match = POINTS.search(page.locator(PROGRESS).inner_text())
    assert match, page.locator(PROGRESS).inner_text()
    return int(match.group(1))


def test_a_sweep_streams_survives_a_reload_and_completes_with_the_inline_table(page: Page, app_url: str,
                                                                                screenshot_dir: Path) -> None:
    open_page(page, app_url, "tradeoffs?model=mlp", ".st-key-sweep_amounts")
    expect(page.get_by_text("pool of 2 processes, shared by every session")).to_be_visible()
    for key, options in ADDED.items():
        for option in options:
            page.locator(f".st-key-{key} input").click()
            page.keyboard.type(option)
            page.keyboard.press("Enter")
            page.keyboard.press("Escape")
            wait_for_app(page)
    page.get_by_role("button", name="Run sweep").click()

    expect(page.locator(PROGRESS)).to_contain_text(POINTS, timeout=SWEEP_MS)
    expect(page.locator('[class*="st-key-sweep_partial_"] .js-plotly-plot')).to_be_visible(timeout=SWEEP_MS)
    before = points_done(page)
    assert 0 < before < 70, "the sweep should still be running: make the grid longer"
    shot(page, screenshot_dir, "sweep_progress.png")

    page.reload()  # a new session: it opens on the running grid, with the points finished so far
    expect(page.locator(PROGRESS)).to_contain_text(POINTS, timeout=SWEEP_MS)
    expect(page.locator(".st-key-sweep_schemes")).to_contain_text("kmeans")
    expect(page.locator('[class*="st-key-sweep_partial_"] .js-plotly-plot')).to_be_visible()
    after = points_done(page)
    assert after >= before
    shot(page, screenshot_dir, "sweep_reloaded.png")

    expect(page.locator(".st-key-sweep_chart .js-plotly-plot")).to_be_visible(timeout=SWEEP_MS)
    wait_for_app(page)
    assert_no_error_on_page(page)
    shot(page, screenshot_dir, "sweep_done.png")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    shown = pd.read_csv(io.BytesIO(Path(download.value.path()).read_bytes()))

    expected = compression.sweep(compression.load_model("mlp"), AMOUNTS, [2, 4, 8, 32], ["linear", "kmeans"])
    assert len(shown) == len(expected) == 70
    for column in ("scheme", "amount", "bits", "encoded_bytes", "file_bytes", "dense_fp32_bytes", "pareto", "recipe"):
        assert shown[column].tolist() == expected[column].tolist(), column
    pd.testing.assert_series_equal(shown["value"], expected["value"], rtol=1e-12)
