"""Lessons: the data holds (texts in both languages, pages, recipes, models), a link opens a step's
card on its page with its model, recipe and settings, the buttons move through the steps and the
URL follows, and every step of every lesson runs its page in English and in Chinese.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator

import pytest
from streamlit.runtime.scriptrunner import get_script_run_ctx
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1 import app_test as app_test_module

import compression
import sample_models
import ui.text
from tests.ui.conftest import APP, _PagesFlagOwnedByTheTest
from tests.ui.test_languages import GLOSSARY, _glossary_terms
from ui.lessons import PARTS, LessonError, lesson, lessons, read
from ui.model_ids import FOLDED_PREFIX
from ui.text import catalog

EN, ZH = catalog("en"), catalog("zh")
PAGES = re.findall(r'st\.Page\("pages/(\w+)\.py"', APP.read_text())
TITLES = {page: key for page, key in re.findall(r'st\.Page\("pages/(\w+)\.py", title=t\("([\w.]+)"\)', APP.read_text())}
STEPS = [(found.name, number) for found in lessons() for number in range(1, len(found.steps) + 1)]
TOPICS = ("magnitude-pruning", "structured-and-nm", "gradual-pruning", "sensitivity-and-budgets", "linear-quantization",
          "nonlinear-and-floats", "bn-folding", "distillation", "tradeoffs-and-deployment")


# --- the data -----------------------------------------------------------------------------------


def test_every_topic_has_a_lesson_of_five_to_seven_steps():
    assert [found.name for found in lessons()] == list(TOPICS)
    assert all(5 <= len(found.steps) <= 7 for found in lessons())


def test_lesson_names_are_url_slugs_and_orders_are_distinct():
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", found.name) for found in lessons())
    assert len({found.order for found in lessons()}) == len(lessons())


def test_every_title_summary_and_step_text_is_there_in_both_languages():
    for found in lessons():
        texts = [found.title, found.summary, *(step.texts[part] for step in found.steps for part in PARTS)]
        assert all(set(text) == {"en", "zh"} and all(text.values()) for text in texts), found.name
        assert all(re.search(r"[\u4e00-\u9fff]", text["zh"]) for text in texts), found.name


def test_every_steps_page_is_one_that_app_serves():
    assert {step.page for found in lessons() for step in found.steps} <= set(PAGES)


def test_every_steps_recipe_is_a_valid_recipe_in_its_canonical_form():
    for found in lessons():
        for step in found.steps:
            assert compression.Recipe.from_dict(step.recipe).to_dict() == dict(step.recipe)


def test_every_steps_model_is_a_sample_model():
    models = {step.model for found in lessons() for step in found.steps}
    assert {model.removeprefix(FOLDED_PREFIX) for model in models} <= set(sample_models.ZOO_NAMES)


def test_chinese_lesson_texts_use_the_glossarys_terms():
    missing = [f"{found.name} step {number} {part}: {term!r} → {GLOSSARY[term]!r}"
               for found in lessons() for number, step in enumerate(found.steps, 1) for part in PARTS
               for term in _glossary_terms(step.text(part, "en")) if GLOSSARY[term] not in step.text(part, "zh")]
    assert not missing, missing


def test_every_text_renders_its_markdown_emphasis():
    # CommonMark does not close "**" between a full-width bracket and a Han character ("）**在"):
    # the stars would show. Streamlit renders markdown by the same rules.
    markdown = pytest.importorskip("markdown_it").MarkdownIt("commonmark")
    stray = [f"{found.name} step {number} {part} {language}" for found in lessons()
             for number, step in enumerate(found.steps, 1) for part in PARTS for language in ("en", "zh")
             if "*" in re.sub(r"<[^>]+>", "", markdown.render(step.text(part, language)))]
    assert not stray, stray


def test_a_lesson_file_with_a_mistake_is_refused_naming_the_step_and_field(tmp_path):
    path = tmp_path / "broken.toml"
    text = {"en": "x", "zh": "字"}
    step = {"page": "pruning", "model": "simplenet", "recipe": '{"prune": {"amount": 2}}',
            **{part: text for part in PARTS}}
    path.write_text(f"order = 1\ntitle = {_toml(text)}\nsummary = {_toml(text)}\n[[steps]]\n"
                    + "".join(f"{key} = {_toml(value)}\n" for key, value in step.items()))
    with pytest.raises(LessonError, match=r"broken.toml step 1.recipe: prune.amount must be a number between 0 and 1"):
        read(path)
    path.write_text(path.read_text().replace('zh = "字"', 'fr = "x"', 1))
    with pytest.raises(LessonError, match=r"broken.toml.title must give a text for each of en, zh"):
        read(path)


def _toml(value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {json.dumps(text, ensure_ascii=False)}" for key, text in value.items()) + " }"
    return "'" + value + "'"


# --- the card ------------------------------------------------------------------------------------


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setattr(app_test_module, "PagesManager", _PagesFlagOwnedByTheTest)
    return AppTest.from_file(str(APP), default_timeout=120)


@pytest.fixture
def formats_in(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """``formats_in(language)``: the language AppTest formats widget values in between runs (it does
    so outside the script run, where ``t`` sees no session; see tests/ui/test_languages.py)."""
    chosen = {"language": "en"}
    inside_runs = ui.text.language
    monkeypatch.setattr(ui.text, "language",
                        lambda: inside_runs() if get_script_run_ctx(suppress_warning=True) else chosen["language"])
    return lambda language: chosen.update(language=language)


def open_step(app: AppTest, name: str, number: int, language: str = "en") -> AppTest:
    """Run ``app`` from a link to the step (?lesson=&step=&lang=), opened on the Overview page."""
    app.query_params.update(lesson=name, step=str(number), lang=language)
    app.run()
    return app


def card_texts(app: AppTest) -> list[str]:
    return [element.value for element in app.get("markdown")]


def assert_shows_step(app: AppTest, name: str, number: int, language: str) -> None:
    found, texts = lesson(name), ui.text.catalog(language)
    step = found.steps[number - 1]
    assert not app.exception, [e.value for e in app.exception]
    assert app.caption[0].value == texts["lessons.step_of"].format(step=number, steps=len(found.steps))
    assert app.subheader[0].value == found.title[language]
    shown = card_texts(app)
    for part in PARTS:
        assert f"**{texts[f'lessons.{part}']}**" in shown and step.text(part, language) in shown
    assert app.title[0].value == texts[TITLES[step.page]]
    assert app.session_state["recipe"] == dict(step.recipe) and app.session_state["model_id"] == step.model
    assert (app.query_params["lesson"], app.query_params["step"], app.query_params["lang"]) == (name, str(number), language)
    assert json.loads(app.query_params.get("recipe", "{}")) == json.loads(json.dumps(dict(step.recipe), sort_keys=True))


@pytest.mark.parametrize("language", ["en", "zh"])
def test_a_link_to_a_step_shows_its_card_texts_model_and_recipe_on_its_page(app, language):
    open_step(app, "magnitude-pruning", 2, language)
    assert_shows_step(app, "magnitude-pruning", 2, language)
    labels = [button.label for button in app.button if button.key and button.key.startswith("lesson_")]
    texts = ui.text.catalog(language)
    assert labels == [texts["lessons.previous"], texts["lessons.next"], texts["lessons.leave"]]


def test_a_link_to_a_step_on_another_page_switches_to_that_page(app):
    open_step(app, "gradual-pruning", 1)  # AppTest starts on the Overview
    assert_shows_step(app, "gradual-pruning", 1, "en")
    assert app.slider(key="agp_final").value == 0.9 and app.slider(key="agp_epochs").value == 1


def test_next_and_previous_apply_the_steps_page_model_recipe_and_settings_and_update_the_url(app, formats_in):
    open_step(app, "structured-and-nm", 2, "zh")
    formats_in("zh")
    assert_shows_step(app, "structured-and-nm", 2, "zh")
    app.button(key="lesson_next").click().run()
    assert_shows_step(app, "structured-and-nm", 3, "zh")  # the Export page
    app.button(key="lesson_next").click().run()
    assert_shows_step(app, "structured-and-nm", 4, "zh")
    assert app.selectbox(key="prune_layer").value == "fc2.weight"
    app.button(key="lesson_previous").click().run()
    assert_shows_step(app, "structured-and-nm", 3, "zh")


def test_the_first_step_has_no_previous_and_the_last_no_next(app):
    open_step(app, "distillation", 1)
    assert app.button(key="lesson_previous").disabled and not app.button(key="lesson_next").disabled
    app = AppTest.from_file(str(APP), default_timeout=120)
    open_step(app, "distillation", len(lesson("distillation").steps))
    assert app.button(key="lesson_next").disabled


def test_a_steps_widgets_stay_the_students_to_move(app):
    open_step(app, "magnitude-pruning", 5)
    app.slider(key="prune_amount").set_value(0.8).run()
    assert '"amount":0.8' in app.query_params["recipe"] and app.caption[0].value == EN["lessons.step_of"].format(step=5, steps=6)


def test_a_page_switch_keeps_the_lesson_in_the_url_and_the_card_links_back(app):
    open_step(app, "linear-quantization", 3)
    app.switch_page("pages/model.py").run()
    assert (app.query_params["lesson"], app.query_params["step"]) == ("linear-quantization", "3")
    [back] = [link for link in app.get("page_link") if link.proto.label == EN["lessons.back_to_step"]]
    assert "lesson=linear-quantization" in back.proto.query_string and "step=3" in back.proto.query_string


def test_leaving_the_lesson_keeps_the_recipe_and_drops_the_card(app):
    open_step(app, "magnitude-pruning", 3)
    recipe = app.query_params["recipe"]
    app.button(key="lesson_leave").click().run()
    assert "lesson" not in app.query_params and "step" not in app.query_params
    assert app.query_params["recipe"] == recipe
    assert [b.key for b in app.button if b.key and b.key.startswith("lesson_")] == []


@pytest.mark.parametrize("name, step", [("no-such-lesson", "1"), ("magnitude-pruning", "99"), ("magnitude-pruning", "two")])
def test_a_link_to_a_step_that_does_not_exist_says_so_and_opens_no_card(app, name, step):
    app.query_params.update(lesson=name, step=step)
    app.run()
    assert EN["lessons.not_found"].split("{")[0] in app.warning[0].value
    assert "lesson" not in app.query_params and not app.exception


@pytest.mark.parametrize("language", ["en", "zh"])
def test_the_overview_lists_every_lesson_as_a_link_to_its_first_step_in_the_language(app, language):
    app.query_params["lang"] = language
    app.run()
    links = {link.proto.label: link.proto.query_string for link in app.get("page_link")}
    for found in lessons():
        query = links[found.title[language]]
        assert f"lesson={found.name}" in query and "step=1" in query and f"lang={language}" in query
    shown = " ".join(card_texts(app))
    assert all(found.summary[language] in shown for found in lessons())


# --- every step runs ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def walked() -> Iterator[Callable[[str, str], list[AppTest]]]:
    """``walked(lesson, language)``: one session per lesson and language opened at step 1 and moved
    through every step by its Next button; the app after each step (the same AppTest, checked at once)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app_test_module, "PagesManager", _PagesFlagOwnedByTheTest)
        chosen = {"language": "en"}
        inside_runs = ui.text.language
        patch.setattr(ui.text, "language",
                      lambda: inside_runs() if get_script_run_ctx(suppress_warning=True) else chosen["language"])

        def walk(name: str, language: str) -> Iterator[AppTest]:
            chosen["language"] = language
            app = open_step(AppTest.from_file(str(APP), default_timeout=120), name, 1, language)
            yield app
            for _ in lesson(name).steps[1:]:
                yield app.button(key="lesson_next").click().run()

        yield walk


@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("name", TOPICS)
def test_every_step_of_every_lesson_runs_its_page_with_its_settings(walked, name, language):
    for number, app in enumerate(walked(name, language), 1):
        assert not app.error, (number, [e.value for e in app.error])
        assert_shows_step(app, name, number, language)
        for key, value in lesson(name).steps[number - 1].settings.items():
            assert app.session_state[key] == value, (number, key)
