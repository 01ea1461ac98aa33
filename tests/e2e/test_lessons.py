"""A lesson in a real browser, in Chinese: a bookmarked step opens its card, 下一步 moves to the
next step (URL and card follow), and three steps on three pages draw without an error.

Screenshots go to the run's screenshot folder (printed at the end), or to ``$LESSON_SCREENSHOTS``.
"""
from __future__ import annotations

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

from playwright.sync_api import Page, expect  # noqa: E402

from ui.lessons import lesson  # noqa: E402
from ui.text import catalog  # noqa: E402

IDLE = '[data-testid="stApp"][data-test-connection-state="CONNECTED"][data-test-script-state="notRunning"]'
CARD = ".st-key-lesson_card"
ZH = catalog("zh")


@pytest.fixture(scope="module")
def chromium_path() -> str:
    return CHROMIUM


@pytest.fixture(scope="module", autouse=True)
def patient_expectations():
    """A step that compresses and evaluates can take seconds on a busy CI machine."""
    expect.set_options(timeout=30_000)
    yield
    expect.set_options(timeout=5_000)


@pytest.fixture(scope="module")
def shots(screenshot_dir: Path) -> Path:
    folder = Path(os.environ.get("LESSON_SCREENSHOTS", screenshot_dir))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_step(page: Page, app_url: str, name: str, number: int) -> None:
    page.goto(f"{app_url}/{lesson(name).steps[number - 1].page}?lesson={name}&step={number}&lang=zh")
    # A fresh server loads and sorts the model's weights first: allow for a busy machine.
    page.wait_for_selector(CARD, timeout=120_000)
    page.wait_for_selector(IDLE, timeout=120_000)


def expect_card(page: Page, name: str, number: int) -> None:
    found = lesson(name)
    card = page.locator(CARD)
    expect(card).to_contain_text(ZH["lessons.step_of"].format(step=number, steps=len(found.steps)))
    expect(card).to_contain_text(found.title["zh"])
    expect(card).to_contain_text(found.steps[number - 1].text("look_for", "zh").replace("**", "").replace("*", "")[:20])
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_test_id("stAlertContentError")).to_have_count(0)


def test_next_step_in_chinese_moves_the_card_and_the_url(page, app_url, shots):
    open_step(page, app_url, "magnitude-pruning", 2)
    expect_card(page, "magnitude-pruning", 2)
    page.locator(".st-key-prune_histogram .js-plotly-plot").wait_for()
    page.screenshot(path=shots / "lesson_zh_magnitude_step2.png", full_page=False)
    page.get_by_role("button", name=ZH["lessons.next"]).click()
    expect_card(page, "magnitude-pruning", 3)
    expect(page).to_have_url(re.compile(r"/pruning\?.*step=3"))
    query = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
    assert (query["lesson"], query["lang"], query["model"]) == (["magnitude-pruning"], ["zh"], ["simplenet"])
    assert '"scope":"global"' in query["recipe"][0]
    page.wait_for_selector(IDLE)
    page.screenshot(path=shots / "lesson_zh_magnitude_step3.png", full_page=False)


@pytest.mark.parametrize("name, number, ready", [
    ("structured-and-nm", 3, '[data-testid="stMetric"]'),
    ("linear-quantization", 3, ".st-key-quantize_sqnr .js-plotly-plot"),
    ("bn-folding", 1, '[data-testid="stDataFrame"]'),
])
def test_a_chinese_lesson_step_opens_on_its_page(page, app_url, shots, name, number, ready):
    open_step(page, app_url, name, number)
    page.locator(ready).first.wait_for()
    page.wait_for_selector(IDLE)
    expect_card(page, name, number)
    page.screenshot(path=shots / f"lesson_zh_{name}_step{number}.png", full_page=False)
