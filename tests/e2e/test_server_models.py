"""The server's model folder in a real browser: a server started with ``COMPRESSION_LAB_MODELS``
naming a folder that holds a tiny Llama (a Hugging Face folder) lists it on the Model page, opens
it, and the Pruning page draws its histogram."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.conftest import ServedApp, serve_app
from tests.e2e.test_browser import (  # noqa: F401 - chromium_path and patient_expectations are fixtures
    HISTOGRAM_PATHS_JS,
    PAGES,
    assert_no_error_on_page,
    chromium_path,
    open_page,
    patient_expectations,
    wait_for_app,
)
from tests.ui.test_server_models import save_tiny_llama
from ui.server_models import FOLDER_VARIABLE

pytest.importorskip("transformers")
from playwright.sync_api import expect  # noqa: E402

READY = {path: ready for path, _, ready in PAGES}
LOAD_MS = 120_000


@pytest.fixture(scope="module")
def served_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    """The dashboard served with a model folder holding ``tiny-llama`` (replaces conftest's server)."""
    models = tmp_path_factory.mktemp("server-models")
    save_tiny_llama(models / "tiny-llama")
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv(FOLDER_VARIABLE, str(models))  # the server process inherits it
        with serve_app(tmp_path_factory.mktemp("streamlit") / "server.log") as served:
            yield served


def test_a_model_of_the_server_folder_is_listed_opened_and_pruned(page, app_url: str, screenshot_dir: Path) -> None:
    open_page(page, app_url, "model", READY["model"])
    page.get_by_role("tab", name="Server folder").click()
    expect(page.locator(".st-key-model_server").get_by_role("combobox")).to_have_value("tiny-llama")
    page.locator(".st-key-model_server_open").get_by_role("button", name="Open").click()
    expect(page.get_by_role("heading", level=3, name="tiny-llama")).to_be_visible(timeout=LOAD_MS)
    wait_for_app(page)
    expect(page).to_have_url(re.compile(r"model=server%2Ftiny-llama"))
    assert_no_error_on_page(page)
    page.screenshot(path=screenshot_dir / "server-model.png")

    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Pruning", exact=True).click()
    page.wait_for_selector(READY["pruning"], timeout=LOAD_MS)
    wait_for_app(page)
    assert page.evaluate(HISTOGRAM_PATHS_JS)  # the histogram's bars are drawn
    expect(page).to_have_url(re.compile(r"/pruning\?model=server%2Ftiny-llama"))
    assert_no_error_on_page(page)
    page.screenshot(path=screenshot_dir / "server-model-pruning.png")
