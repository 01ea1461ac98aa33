"""The text catalogs: every key the dashboard looks up exists, every text is looked up, values
fill exactly a text's placeholders, and no page hands Streamlit words of its own.

Keys are read from the source: the first argument of every ``t(...)`` call, a literal (or a
choice between two literals). A key built from a value (an option's display label) is allowed
only as an f-string under one of ``DYNAMIC_PREFIXES``.
"""
from __future__ import annotations

import ast
import re
import string
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import pytest
from streamlit.testing.v1 import AppTest

import ui.text
from ui.text import DEFAULT_LANGUAGE, catalog, t

ROOT = Path(__file__).resolve().parents[2]
CATALOG = catalog(DEFAULT_LANGUAGE)
# Modules that draw: the app, its pages, and the shared widgets, state and charts in ui/.
SOURCES = sorted([ROOT / "app.py", *(ROOT / "pages").glob("*.py"), *(ROOT / "ui").rglob("*.py")])
# Display labels of option values, looked up as prefix + value.
DYNAMIC_PREFIXES = (
    "metrics.",
    "families.",
    "pruning.methods.",
    "pruning.cuts.",
    "pruning.scopes.",
    "pruning.views.",
    "quantization.schemes.",
    "quantization.granularities.",
    "sensitivity.kinds.",
    "tradeoffs.sweep_schemes.",
    "export.int8_formats.",
    "languages.",
    "zoo.models.",
    "tables.columns.",  # ui/table_headers.py: the label of each column the engine names
    "quantization.stored_schemes.",  # ui/text/engine_text.py: the scheme a packed file records
    "formulas.",  # ui/teaching.py: the formula (and its line) of each setting in use
    "teaching.missing.",
    "teaching.mistakes.",
)
# Texts of the engine's display codes, looked up by code (ui/text/engine_text.py); test_languages.py
# checks them against the codes and values the engine gives.
ENGINE_CODES = "engine."
# Streamlit calls whose first positional argument is shown as text, and where it sits when it is
# not the first (None: only keywords carry text, e.g. st.Page's first argument is a script path).
TEXT_CALLS = {name: 0 for name in (
    "title", "header", "subheader", "markdown", "caption", "write", "info", "warning", "error", "success",
    "button", "slider", "select_slider", "selectbox", "radio", "checkbox", "toggle", "number_input",
    "text_input", "text_area", "multiselect", "file_uploader", "download_button", "segmented_control",
    "expander", "tabs", "metric", "spinner", "latex", "toast", "popover", "status",
    "CheckboxColumn", "NumberColumn", "TextColumn",
)} | {"progress": 1, "page_link": None, "Page": None, "set_page_config": None}
TEXT_KEYWORDS = {"label", "body", "text", "help", "title", "page_title", "delta", "delta_description",
                 "placeholder", "caption", "format_func"}
WORD = re.compile(r"[^\W\d_]{2,}")  # two letters in a row: a word, not a unit such as "B" or "x"


@dataclass(frozen=True)
class Lookup:
    """One ``t(...)`` call: the keys it may look up and the names of the values it gives."""

    where: str
    keys: tuple[str, ...]
    prefix: str | None  # a dynamic key's prefix
    values: frozenset[str]


def _calls(path: Path) -> list[ast.Call]:
    return [node for node in ast.walk(ast.parse(path.read_text(), str(path))) if isinstance(node, ast.Call)]


def _is_t(call: ast.Call) -> bool:
    return isinstance(call.func, ast.Name) and call.func.id == "t"


def _lookup(call: ast.Call, where: str) -> Lookup:
    assert call.args and not any(k.arg is None for k in call.keywords), f"{where}: t(key, name=value, ...) only"
    values = frozenset(k.arg for k in call.keywords)
    key = call.args[0]
    if isinstance(key, ast.Constant) and isinstance(key.value, str):
        return Lookup(where, (key.value,), None, values)
    if isinstance(key, ast.IfExp) and all(isinstance(k, ast.Constant) for k in (key.body, key.orelse)):
        return Lookup(where, (key.body.value, key.orelse.value), None, values)
    if isinstance(key, ast.JoinedStr) and isinstance(key.values[0], ast.Constant):
        prefix = key.values[0].value
        assert prefix in DYNAMIC_PREFIXES, f"{where}: key built under {prefix!r}, which DYNAMIC_PREFIXES does not list"
        return Lookup(where, tuple(k for k in CATALOG if k.startswith(prefix)), prefix, values)
    raise AssertionError(f"{where}: the key is neither a literal nor an f-string under a listed prefix")


def lookups() -> list[Lookup]:
    return [_lookup(call, f"{path.relative_to(ROOT)}:{call.lineno}")
            for path in SOURCES for call in _calls(path) if _is_t(call)]


def placeholders(text: str) -> set[str]:
    """The names a text's ``str.format`` fields take: "{limit:,}" and "{model!r}" give limit and model."""
    return {re.match(r"\w*", field).group() for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def looks_like_a_placeholder(text: str) -> bool:
    """Whether a text shown as it is still holds a "{name}" field (LaTeX's \\frac{w}, x^{2} and
    plotly's %{y} do not count)."""
    return re.search(r"(?<![\w\\%^_}]){[A-Za-z_]\w*(?:[:!][^{}]*)?}", text) is not None


def test_every_key_looked_up_is_in_the_catalog():
    missing = [f"{lookup.where}: {key}" for lookup in lookups() for key in lookup.keys if key not in CATALOG]
    assert not missing, missing


def test_every_dynamic_prefix_has_texts():
    assert all(any(key.startswith(prefix) for key in CATALOG) for prefix in DYNAMIC_PREFIXES)


def test_every_text_in_the_catalog_is_looked_up():
    used = {key for lookup in lookups() for key in lookup.keys}
    unused = sorted(key for key in set(CATALOG) - used if not key.startswith(ENGINE_CODES))
    assert not unused, f"texts no page looks up: {unused}"


def test_values_given_fill_exactly_the_placeholders():
    wrong = [
        f"{lookup.where}: {key} takes {sorted(placeholders(CATALOG[key]))}, given {sorted(lookup.values)}"
        for lookup in lookups() if lookup.values for key in lookup.keys
        if key in CATALOG and placeholders(CATALOG[key]) != lookup.values
    ]
    assert not wrong, wrong


def test_texts_looked_up_without_values_have_no_placeholder():
    # Such a text is shown as it is (not formatted): a "{name}" in it would reach the page.
    wrong = [f"{lookup.where}: {key}" for lookup in lookups() if not lookup.values for key in lookup.keys
             if key in CATALOG and looks_like_a_placeholder(CATALOG[key])]
    assert not wrong, wrong


def _words(node: ast.AST, nested: bool = False) -> list[str]:
    """String literals with words in an expression, outside ``t(...)`` calls: text that a
    catalog should hold. Option values (dict keys, subscripts) and conditions do not count, nor
    does a lone name passed to a call inside the expression (``row.get("detail")``)."""
    match node:
        case ast.Constant(value=str(value)):
            return [value] if WORD.search(value) and not (nested and value.isidentifier()) else []
        case ast.Call() if _is_t(node):
            return []
        case ast.Call():
            arguments = [*node.args, *(k.value for k in node.keywords)]
            return _words(node.func, nested) + [w for part in arguments for w in _words(part, nested=True)]
        case ast.JoinedStr(values=parts) | ast.BoolOp(values=parts) | ast.List(elts=parts) | ast.Tuple(elts=parts):
            return [w for part in parts for w in _words(part, nested)]
        case ast.FormattedValue(value=inner) | ast.Attribute(value=inner) | ast.Subscript(value=inner) | \
             ast.Lambda(body=inner) | ast.GeneratorExp(elt=inner) | ast.ListComp(elt=inner) | ast.Starred(value=inner):
            return _words(inner, nested)
        case ast.BinOp(left=left, right=right):
            return _words(left, nested) + _words(right, nested)
        case ast.IfExp(body=body, orelse=orelse):
            return _words(body, nested) + _words(orelse, nested)
        case ast.Dict(values=parts):
            return [w for part in parts if part is not None for w in _words(part, nested)]
    return []


def _text_arguments(call: ast.Call) -> list[ast.AST]:
    name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None)
    if isinstance(call.func, ast.Attribute) and getattr(call.func.value, "id", None) == "charts":
        return [*call.args, *(k.value for k in call.keywords)]  # a chart's title and labels
    if name not in TEXT_CALLS:
        return []
    position = TEXT_CALLS[name]
    positional = [call.args[position]] if position is not None and len(call.args) > position else []
    return positional + [k.value for k in call.keywords if k.arg in TEXT_KEYWORDS]


@pytest.mark.parametrize("path", [p for p in SOURCES if "text" not in p.parts and p.name != "charts.py"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_hand_streamlit_no_words_of_their_own(path):
    found = [f"{path.name}:{call.lineno}: {word!r}" for call in _calls(path)
             for argument in _text_arguments(call) for word in _words(argument)]
    assert not found, f"look these up with t(...) from ui/text/{DEFAULT_LANGUAGE}.toml: {found}"


CHART_TEXT_KEYWORDS = {"name", "text", "hovertemplate", "title", "subtitle"}


def test_charts_take_titles_axes_legends_and_hovers_from_the_catalog():
    path = ROOT / "ui" / "charts.py"
    found = []
    for call in _calls(path):
        arguments = [k.value for k in call.keywords if k.arg in CHART_TEXT_KEYWORDS]
        if isinstance(call.func, ast.Name) and call.func.id in ("_layout", "_key"):
            arguments += call.args
        found += [f"charts.py:{call.lineno}: {word!r}" for argument in arguments for word in _words(argument)]
    assert not found, found


def test_the_word_check_catches_a_literal_label():
    call = ast.parse('st.button(f"Run {what}", key="run")').body[0].value
    assert [w for a in _text_arguments(call) for w in _words(a)] == ["Run "]
    looked_up = ast.parse('st.button(t("page.run", what=what), key="run")').body[0].value
    assert not [w for a in _text_arguments(looked_up) for w in _words(a)]


def test_every_option_the_engine_offers_has_a_label():
    from compression.io.families import FAMILIES
    from compression.recipe import FLOAT_FORMATS, SCHEME_BITS
    from compression.workflows.sweep import SWEEP_SCHEMES
    from ui.controls import METRICS_NAMED

    wanted = [f"quantization.schemes.{name}" for name in (*SCHEME_BITS, *FLOAT_FORMATS)]
    wanted += [f"tradeoffs.sweep_schemes.{name}" for name in SWEEP_SCHEMES]
    wanted += [f"metrics.{name}" for name in METRICS_NAMED]
    wanted += [f"families.{name}" for name in FAMILIES]
    assert not [key for key in wanted if key not in CATALOG]


def test_a_missing_key_raises_a_key_error_naming_it():
    with pytest.raises(KeyError, match="no_such.key"):
        t("no_such.key")


def test_a_text_with_values_is_formatted_and_one_without_is_shown_as_it_is():
    assert t("app.pages.pruning") == "Pruning"
    assert t("controls.times_smaller", ratio=3.14159) == "3.1× smaller"


def test_the_catalog_cannot_be_changed():
    assert isinstance(CATALOG, MappingProxyType)
    with pytest.raises(TypeError):
        CATALOG["app.pages.pruning"] = "changed"  # type: ignore[index]


def _page_in_a_chosen_language() -> None:
    import streamlit as st

    from ui.text import LANGUAGE_KEY, t

    st.session_state[LANGUAGE_KEY] = st.query_params.get("language", "en")
    st.title(t("app.pages.pruning"))


def test_the_language_is_the_sessions_own(tmp_path, monkeypatch):
    (tmp_path / "en.toml").write_text('[app.pages]\npruning = "Pruning"\n')
    (tmp_path / "xx.toml").write_text('[app.pages]\npruning = "Élagage"\n')
    monkeypatch.setattr(ui.text, "CATALOGS", tmp_path)
    catalog.cache_clear()
    try:
        other = AppTest.from_function(_page_in_a_chosen_language)
        other.query_params["language"] = "xx"
        assert other.run().title[0].value == "Élagage"
        assert AppTest.from_function(_page_in_a_chosen_language).run().title[0].value == "Pruning"
    finally:
        catalog.cache_clear()
