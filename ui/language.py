"""The session's language: the link's ``?lang=``, the sidebar switch, or the browser's.

app.py settles it on every run before any text is looked up. It lives in the session
(``st.session_state[LANGUAGE_KEY]``, which ``ui.text.t`` reads) and goes back into the URL with
the model and recipe (``ui.url.show``), so the address bar, copied links and page links all
carry it. Nothing here is process-wide: sessions in two languages never see each other's.
"""
from __future__ import annotations

import streamlit as st

from ui.text import DEFAULT_LANGUAGE, LANGUAGE_KEY, language, t

LANGUAGES = ("en", "zh")
QUERY_PARAMETER = "lang"
SWITCH_KEY = "language_switch"


def from_browser(locale: str | None, accept_language: str | None) -> str | None:
    """The first of our languages the browser prefers: its locale (``navigator.language``), then
    the ``Accept-Language`` header's tags by their weights; None where it names neither.

    >>> from_browser(None, "fr-CH, en;q=0.8, zh-CN;q=0.9")
    'zh'
    >>> from_browser("en-GB", "zh-CN,zh;q=0.9"), from_browser("", None)
    ('en', None)
    """
    weighted = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, parameters = part.partition(";")
        weight = parameters.strip().removeprefix("q=")
        try:
            weighted.append((-float(weight) if weight else -1.0, position, tag))
        except ValueError:  # a malformed weight: the tag counts last
            weighted.append((0.0, position, tag))
    tags = [locale or "", *(tag for *_, tag in sorted(weighted))]
    for tag in tags:
        primary = tag.strip().split("-")[0].lower()
        if primary in LANGUAGES:
            return primary
    return None


def choose() -> None:
    """This run's language: the link's where it names one of ours, else the one the session
    already has, else the browser's, else English."""
    linked = st.query_params.get(QUERY_PARAMETER)
    if linked in LANGUAGES:
        st.session_state[LANGUAGE_KEY] = linked
    elif st.session_state.get(LANGUAGE_KEY) not in LANGUAGES:
        browser = from_browser(st.context.locale, st.context.headers.get("Accept-Language"))
        st.session_state[LANGUAGE_KEY] = browser or DEFAULT_LANGUAGE


def _switched() -> None:
    picked = st.session_state[SWITCH_KEY]
    if picked in LANGUAGES:  # None: the current choice clicked off, which changes nothing
        st.session_state[LANGUAGE_KEY] = picked
        st.query_params[QUERY_PARAMETER] = picked  # the link's choice would otherwise win on the rerun


def switch() -> None:
    """The sidebar's English / 中文 control, showing the session's language."""
    st.session_state[SWITCH_KEY] = language()
    st.segmented_control(t("app.language"), LANGUAGES, key=SWITCH_KEY, on_change=_switched,
                         format_func=lambda code: t(f"languages.{code}"))
