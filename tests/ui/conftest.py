"""An AppTest of the dashboard that behaves like the served app across reruns."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1 import app_test as app_test_module

APP = Path(__file__).resolve().parents[2] / "app.py"


class _PagesFlagOwnedByTheTest(PagesManager):
    """Takes the per-run reset of Streamlit's pages-folder flag, leaving the real flag alone.

    AppTest sets ``PagesManager.uses_pages_directory = None`` before every run; because the
    repository has a ``pages/`` folder, that puts each run back into Streamlit's old
    folder-based multipage mode, which ``ui.navigation.require_navigation`` leaves with an
    ``st.rerun()``; the rerun drops button clicks. A served app sets the flag once per process
    (off after app.py's first ``st.navigation``); this subclass gives the tests the same.
    """


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The dashboard, not yet run: its first run shows the Overview page."""
    monkeypatch.setattr(app_test_module, "PagesManager", _PagesFlagOwnedByTheTest)
    return AppTest.from_file(str(APP), default_timeout=120)
