"""The navigation workaround (``ui.navigation``) and the Streamlit behaviour it relies on.

If Streamlit renames its pages-folder flag or stops running a page by itself beside a
``pages/`` folder, the first tests fail: then revisit ``ui/navigation.py`` (the workaround may
be needed no more, or need another form). The last tests show the workaround at work.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
PAGES = sorted(f"pages/{path.name}" for path in (ROOT / "pages").glob("*.py"))

# A two-page app of the same shape as ours: app.py with st.navigation, the page in pages/.
TINY_APP = """
import streamlit as st
st.session_state["app_ran"] = True
st.navigation([st.Page(lambda: None, title="Home", default=True), st.Page("pages/page.py")]).run()
"""
TINY_PAGE = """
import streamlit as st
st.session_state["page_ran_alone"] = "app_ran" not in st.session_state
"""


@pytest.fixture(autouse=True)
def flag_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test leaves Streamlit's process-wide flag as it found it."""
    monkeypatch.setattr(PagesManager, "uses_pages_directory", PagesManager.uses_pages_directory)


@pytest.fixture
def tiny_app(tmp_path: Path) -> AppTest:
    (tmp_path / "app.py").write_text(TINY_APP)
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "page.py").write_text(TINY_PAGE)
    return AppTest.from_file(str(tmp_path / "app.py"))


# --- what Streamlit does --------------------------------------------------------------------------


def test_streamlit_still_has_the_pages_folder_flag_the_workaround_clears():
    assert "uses_pages_directory" in vars(PagesManager), (
        "PagesManager.uses_pages_directory is gone: ui/navigation.py clears a flag that no longer exists"
    )


def test_a_pages_folder_beside_the_main_script_turns_the_flag_on():
    PagesManager.uses_pages_directory = None
    PagesManager(str(APP), setup_watcher=False)
    assert PagesManager.uses_pages_directory is True


def test_a_page_requested_first_runs_without_the_main_script_beside_a_pages_folder(tiny_app):
    """The behaviour ``require_navigation`` exists for: without it a page opened first by its URL
    would run with no sidebar and no session set-up."""
    tiny_app.switch_page("pages/page.py").run()
    assert not tiny_app.exception
    assert tiny_app.session_state["page_ran_alone"] is True


def test_st_navigation_turns_the_flag_off_for_the_whole_process(tiny_app):
    tiny_app.run()
    assert PagesManager.uses_pages_directory is False


# --- the workaround -------------------------------------------------------------------------------


@pytest.mark.parametrize("page", [page for page in PAGES if not page.endswith("overview.py")])
def test_a_page_opened_first_by_its_url_runs_inside_app_py(page):
    """A fresh AppTest is a fresh process as far as the flag goes: on, then the page requested."""
    app = AppTest.from_file(str(APP), default_timeout=120).switch_page(page).run()
    assert not app.exception, [e.value for e in app.exception]
    assert "model_id" in app.session_state  # app.py's session set-up ran
    assert [button.label for button in app.sidebar.button] == ["Reset recipe"]
    assert PagesManager.uses_pages_directory is False


@pytest.mark.parametrize("page", PAGES)
def test_every_page_requires_navigation_before_it_draws_anything(page):
    tree = ast.parse((ROOT / page).read_text())
    first_call = next(node.value for node in tree.body if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call))
    assert ast.unparse(first_call) == "navigation.require_navigation()"
