"""The dashboard in English and Simplified Chinese: the catalogs agree, the glossary holds, every
page runs in both, the language comes from the link, the switch or the browser and stays with its
session, and a Chinese page leaves little English outside code, formulas, charts and tables.
"""
from __future__ import annotations

import ast
import re
import string
import threading
import tomllib
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import streamlit
from streamlit.testing.v1 import AppTest
from streamlit.runtime.scriptrunner import get_script_run_ctx
from streamlit.testing.v1 import app_test as app_test_module

import compression
import sample_models
import ui.text
from tests.ui.conftest import APP, _PagesFlagOwnedByTheTest
from ui.language import from_browser
from ui.text import catalog
from ui.text.engine_text import localized, sample_model

ROOT = Path(__file__).resolve().parents[2]
EN, ZH = catalog("en"), catalog("zh")
GLOSSARY = tomllib.loads((ROOT / "ui" / "text" / "glossary.toml").read_text())["terms"]
# Every page app.py serves, read from its st.Page calls (a page added there is tested here).
PAGES = re.findall(r'st\.Page\("(pages/\w+\.py)"', APP.read_text())
HAN = re.compile(r"[\u4e00-\u9fff]")
ENGLISH_WORD = re.compile(r"[A-Za-z]{2,}")
# Shown as text: their value (headings, paragraphs, captions, messages) and any element's label/options.
TEXT_ELEMENTS = {"Title", "Header", "Subheader", "Markdown", "Caption", "Info", "Warning", "Error", "Success"}
NOT_PROSE = {"Code", "Latex"}  # code and formulas stay as they are in every language
MAX_ENGLISH_SHARE = 0.25


def fields(text: str) -> list[tuple[str, str, str]]:
    """A text's ``str.format`` fields as (name, conversion, format spec), sorted."""
    return sorted((name, conversion or "", spec or "")
                  for _, name, spec, conversion in string.Formatter().parse(text) if name is not None)


# --- the catalogs -----------------------------------------------------------------------------


def test_both_catalogs_have_the_same_keys():
    assert sorted(set(EN) - set(ZH)) == [], "keys without a Chinese text"
    assert sorted(set(ZH) - set(EN)) == [], "Chinese texts of keys English does not have"


def test_each_text_has_the_same_placeholders_and_format_specs_in_both():
    differ = [f"{key}: {fields(EN[key])} vs {fields(ZH[key])}" for key in EN
              if key in ZH and not key.endswith("formula") and fields(EN[key]) != fields(ZH[key])]
    assert not differ, differ


def test_formulas_are_the_same_in_both():
    assert [key for key in EN if key.endswith("formula") and EN[key] != ZH[key]] == []


def test_option_labels_are_translated_where_the_value_is_a_word():
    # Values such as "per_channel" stay in recipes and URLs; what the widget shows is the label.
    assert ZH["quantization.granularities.per_channel"] == "逐通道"
    assert ZH["pruning.methods.magnitude"] == "幅值"


def _glossary_terms(english: str) -> Iterator[str]:
    """The glossary's terms an English text uses, longest first, each occurrence taken out once matched."""
    text = re.sub(r"\{[^{}]*\}|[*`_]", " ", english).replace("-", " ")
    for term in sorted(GLOSSARY, key=len, reverse=True):
        pattern = re.compile(r"\b" + r"\s+".join(map(re.escape, term.split())) + r"(?:e?s)?\b", re.IGNORECASE)
        if pattern.search(text):
            yield term
            text = pattern.sub(" ", text)


def test_the_glossary_reader_takes_the_longest_term_first():
    assert list(_glossary_terms("**Structured** pruning on a log-scale axis")) == ["structured pruning", "log scale"]


def test_chinese_texts_use_the_glossarys_term_wherever_english_uses_the_english_one():
    missing = [f"{key}: {term!r} → {GLOSSARY[term]!r}" for key in EN if not key.endswith("formula")
               for term in _glossary_terms(EN[key]) if GLOSSARY[term] not in ZH[key]]
    assert not missing, missing


# --- text the engine makes ------------------------------------------------------------------


def _display_codes() -> dict[str, set[str]]:
    """Every ``DisplayText(code, english, **values)`` the engine makes: code → value names."""
    codes: dict[str, set[str]] = {}
    for path in (ROOT / "compression").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DisplayText" and node.args \
                    and isinstance(node.args[0], ast.Constant):
                codes[node.args[0].value] = {keyword.arg for keyword in node.keywords}
    return codes


def test_every_code_the_engine_tags_text_with_has_a_text_in_both_catalogs_taking_its_values():
    codes = _display_codes()
    assert len(codes) >= 8
    for language in (EN, ZH):
        wrong = {code: names for code, names in codes.items()
                 if {name for name, *_ in fields(language.get(f"engine.{code}", "<missing>"))} != names}
        assert not wrong, wrong


def test_the_english_catalog_says_what_the_engine_says():
    model = compression.load_model("simplenet")
    for text in (model.description, model.evaluation.description, model.training.description):
        assert localized(text) == text
    assert [sample_model(name) for name in sample_models.ZOO_NAMES] == \
        [sample_models.describe(name) for name in sample_models.ZOO_NAMES]


def test_the_browser_language_is_read_from_the_locale_then_the_weighted_header():
    assert from_browser("zh-CN", None) == "zh"
    assert from_browser(None, "en-US,en;q=0.9") == "en"
    assert from_browser(None, "de;q=0.9, zh-TW;q=0.8, en;q=0.5") == "zh"
    assert from_browser("de-DE", "fr") is None


# --- the app in a language --------------------------------------------------------------------


@pytest.fixture(scope="module")
def opened() -> Iterator[Callable[[str, str], AppTest]]:
    """``opened(page, language)``: the page as a first visit by a ``?lang=`` link shows it, run once per module."""
    shown: dict[tuple[str, str], AppTest] = {}

    def open_page(page: str, language: str) -> AppTest:
        if (page, language) not in shown:
            app = new_app()
            app.query_params["lang"] = language
            app.run()
            shown[page, language] = app.switch_page(page).run()
        return shown[page, language]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app_test_module, "PagesManager", _PagesFlagOwnedByTheTest)
        yield open_page


def new_app() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=120)


@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs_in_both_languages(opened, page, language):
    app = opened(page, language)
    assert not app.exception, [e.value for e in app.exception]
    assert not app.error, [e.value for e in app.error]
    assert bool(HAN.search(app.title[0].value)) == (language == "zh"), app.title[0].value


def _shown_text(node) -> Iterator[str]:
    kind = type(node).__name__
    if kind in NOT_PROSE:
        return
    if kind in TEXT_ELEMENTS and isinstance(getattr(node, "value", None), str):
        yield node.value
    if isinstance(getattr(node, "label", None), str):
        yield node.label
    options = getattr(node, "options", None)
    if isinstance(options, (list, tuple)):
        yield from (str(option) for option in options)
    for child in getattr(node, "children", {}).values():
        yield from _shown_text(child)


def english_words(app: AppTest) -> int:
    """English words in what the page shows as prose: headings, paragraphs, captions, messages,
    labels and options; inline code, inline formulas and icons taken out."""
    text = " ".join(_shown_text(app._tree))
    text = re.sub(r"`[^`]*`|\$[^$]*\$|:material/\w+:", " ", text)
    return len(ENGLISH_WORD.findall(text))


def english_shares(opened) -> dict[str, tuple[int, int]]:
    """Per page: (English words on the Chinese page, English words on the English page)."""
    return {page: (english_words(opened(page, "zh")), english_words(opened(page, "en"))) for page in PAGES}


def test_a_chinese_page_keeps_under_a_quarter_of_the_english_pages_english_words(opened):
    shares = english_shares(opened)
    print("English words left on each page in Chinese (zh / en):")
    for page, (chinese, english) in shares.items():
        print(f"  {page:28} {chinese:4} / {english:4} = {chinese / english:.1%}")
    over = {page: counts for page, counts in shares.items() if counts[0] >= MAX_ENGLISH_SHARE * counts[1]}
    assert not over, over


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setattr(app_test_module, "PagesManager", _PagesFlagOwnedByTheTest)
    return new_app()


@pytest.fixture
def formats_in(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """``formats_in(language)``: the language of the session AppTest runs next.

    Before a run, AppTest formats each widget's value with the widget's own ``format_func`` to send
    its state; it does so outside the script run, where ``t`` finds no session and says English.
    The served app formats only inside runs, where the session's language is known.
    """
    chosen = {"language": "en"}
    inside_runs = ui.text.language
    monkeypatch.setattr(ui.text, "language",
                        lambda: inside_runs() if get_script_run_ctx(suppress_warning=True) else chosen["language"])
    return lambda language: chosen.update(language=language)


def test_lang_zh_in_the_link_opens_the_app_in_chinese(app):
    app.query_params["lang"] = "zh"
    app.run()
    assert app.title[0].value == ZH["overview.title"]
    assert app.session_state["language"] == "zh"


def test_a_link_without_lang_opens_in_english_and_the_url_says_so(app):
    app.run()
    assert app.title[0].value == EN["overview.title"]
    assert app.query_params["lang"] == "en"


def test_the_language_survives_page_switches_and_stays_in_the_url(app, formats_in):
    app.query_params["lang"] = "zh"
    app.run()
    formats_in("zh")
    for page in ("pages/pruning.py", "pages/quantization.py", "pages/overview.py"):
        app.switch_page(page).run()
        assert HAN.search(app.title[0].value), (page, app.title[0].value)
        assert app.query_params["lang"] == "zh"


def test_the_sidebar_switch_changes_the_language_and_the_url(app, formats_in):
    app.run()
    [switch] = app.sidebar.button_group
    assert switch.value == "en" and list(switch.options) == ["English", "中文"]
    switch.set_value("zh").run()
    formats_in("zh")
    assert app.title[0].value == ZH["overview.title"]
    assert app.query_params["lang"] == "zh"
    app.switch_page("pages/pruning.py").run()
    assert app.title[0].value == ZH["pruning.title"]
    app.sidebar.button_group[0].set_value("en").run()
    formats_in("en")
    assert app.title[0].value == EN["pruning.title"] and app.query_params["lang"] == "en"


def test_switching_the_language_keeps_every_setting_of_the_page(app, formats_in):
    app.run()
    app.switch_page("pages/pruning.py").run()
    app.selectbox(key="prune_method").set_value("structured").run()
    app.radio(key="prune_scope").set_value("layer").run()
    recipe = app.query_params["recipe"]
    app.sidebar.button_group[0].set_value("zh").run()
    formats_in("zh")
    assert not app.exception and app.title[0].value == ZH["pruning.title"]
    assert (app.selectbox(key="prune_method").value, app.radio(key="prune_scope").value) == ("structured", "layer")
    assert app.query_params["recipe"] == recipe
    app.slider(key="prune_amount").set_value(0.4).run()
    assert not app.exception and '"amount":0.4' in app.query_params["recipe"]


def test_every_link_to_another_page_carries_the_language_model_and_recipe(app):
    app.query_params["lang"] = "zh"
    app.run()
    queries = [dict(urllib.parse.parse_qsl(link.proto.query_string)) for link in app.get("page_link")]
    pages = [query for query in queries if "lesson" not in query]  # a lesson link carries its step's model and recipe
    assert len(pages) == 9  # the overview's steps: model, fusion (the model page again), pruning … export
    assert {urllib.parse.urlencode(sorted(query.items())) for query in pages} == {"lang=zh&model=simplenet"}
    assert {query["lang"] for query in queries} == {"zh"}


class _ChineseBrowser:
    locale = "zh-CN"
    headers = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}


def test_a_chinese_browser_starts_in_chinese_where_the_link_names_no_language(app, monkeypatch):
    monkeypatch.setattr(streamlit, "context", _ChineseBrowser())
    app.run()
    assert app.title[0].value == ZH["overview.title"]
    assert app.query_params["lang"] == "zh"


def test_the_link_wins_over_the_browser(app, monkeypatch):
    monkeypatch.setattr(streamlit, "context", _ChineseBrowser())
    app.query_params["lang"] = "en"
    app.run()
    assert app.title[0].value == EN["overview.title"]


def test_two_sessions_in_two_languages_never_affect_each_other(monkeypatch, formats_in):
    monkeypatch.setattr(app_test_module, "PagesManager", _PagesFlagOwnedByTheTest)
    chinese, english = new_app(), new_app()
    chinese.query_params["lang"] = "zh"
    chinese.run()
    english.run()
    formats_in("zh")
    chinese.switch_page("pages/pruning.py").run()
    formats_in("en")
    english.switch_page("pages/pruning.py").run()
    assert chinese.title[0].value == ZH["pruning.title"]
    assert english.title[0].value == EN["pruning.title"]
    assert [b.label for b in chinese.sidebar.button] == [ZH["app.reset_recipe"]]
    assert [b.label for b in english.sidebar.button] == [EN["app.reset_recipe"]]


def _titles_in_the_linked_language() -> None:
    import time

    import streamlit as st

    from ui import language
    from ui.text import t

    language.choose()
    seen = set()
    for _ in range(40):  # long enough for the other session's run to interleave with this one
        seen.add(t("app.pages.pruning"))
        time.sleep(0.002)
    st.title(" | ".join(sorted(seen)))


def test_sessions_running_at_the_same_time_each_keep_their_language():
    sessions = {language: AppTest.from_function(_titles_in_the_linked_language) for language in ("en", "zh")}
    sessions["zh"].query_params["lang"] = "zh"
    start = threading.Barrier(len(sessions))

    def run(app: AppTest) -> None:
        start.wait()
        app.run()

    threads = [threading.Thread(target=run, args=(app,)) for app in sessions.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sessions["en"].title[0].value == EN["app.pages.pruning"]
    assert sessions["zh"].title[0].value == ZH["app.pages.pruning"]
