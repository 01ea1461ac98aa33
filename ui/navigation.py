"""Every page runs inside app.py's navigation, never on its own: the one workaround for Streamlit's
pages-folder mode.

The dashboard's pages live in a top-level ``pages/`` folder beside app.py. Streamlit takes such
a folder for its old multipage mode: the first ``PagesManager`` of a process sets the class flag
``PagesManager.uses_pages_directory`` when ``pages/`` exists, and while it is set the script
runner runs a requested page script by itself (``_mpa_v1``), without app.py's sidebar and
session set-up. The first ``st.navigation`` call clears the flag for the whole process, so only
a server's first requests are affected, but a link opened on a fresh server is such a request.
Streamlit offers no public switch; ``tests/ui/test_navigation.py`` fails if the flag or the
behaviour changes.
"""
from __future__ import annotations

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from ui import stores


def require_navigation() -> None:
    """Called first by every page: rerun through app.py where this run did not come from it."""
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
    if not stores.MODEL_ID.is_set():
        # This run began in that mode before another session (opened at the same moment on a
        # fresh server) left it: app.py never ran for this session, so go through it now.
        st.rerun()
