"""Every sentence the dashboard shows, looked up by key in a catalog per language.

Catalogs are data: ``ui/text/<language>.toml``, one table per page (``[pruning]`` holds
``pruning.title``). A text with placeholders is a ``str.format`` string (``{amount:.2f}``) and
is formatted only when values are given, so LaTeX and plotly's ``%{y}`` need no escaping in a
text used without values. The language belongs to the session (``st.session_state``), never
to the process: Streamlit serves every session from one process.

>>> t("app.pages.pruning")
'Pruning'
>>> t("quantization.bits_out_of_range", scheme="pow2", low=1, high=8, clamped=8)
'pow2 takes 1 to 8 bits; using 8.'
"""
from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator, Mapping

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

DEFAULT_LANGUAGE = "en"
LANGUAGE_KEY = "language"  # where a session keeps its choice
CATALOGS = Path(__file__).parent


@cache
def catalog(language: str) -> Mapping[str, str]:
    """The language's texts by dotted key, read once per process and never changed."""
    with open(CATALOGS / f"{language}.toml", "rb") as file:
        return MappingProxyType(dict(_flatten(tomllib.load(file))))


def _flatten(table: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for name, value in table.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{name}.")
        elif isinstance(value, str):
            yield f"{prefix}{name}", value
        else:
            raise TypeError(f"catalog entry {prefix}{name} is a {type(value).__name__}; every text is a string")


def language() -> str:
    """The session's language; the default outside a script run (charts built in tests)."""
    if get_script_run_ctx(suppress_warning=True) is None:
        return DEFAULT_LANGUAGE
    return st.session_state.get(LANGUAGE_KEY, DEFAULT_LANGUAGE)


def t(key: str, /, **values: Any) -> str:
    """The text under ``key`` in the session's language, with ``values`` put into its placeholders.

    A key that is not in the catalog raises ``KeyError`` naming it: a page never shows a raw key.
    """
    chosen = language()
    try:
        text = catalog(chosen)[key]
    except KeyError:
        raise KeyError(f"no text {key!r} in the {chosen!r} catalog (ui/text/{chosen}.toml)") from None
    return text.format(**values) if values else text
