"""Guided lessons: data files of steps, each a page, a model, a recipe and four short texts.

A lesson is ``ui/lessons/<name>.toml`` (the name is its URL slug, ``?lesson=<name>&step=<k>``):
its ``order`` on the Overview page, a ``title`` and a one-line ``summary`` and, per step, the
``page`` (a file of ``pages/``), the ``model`` (a sample zoo id; ``folded/bn_cnn`` is bn_cnn with its
BatchNorm folded), the ``recipe`` (the URL's JSON), optional ``settings`` (widget keys of that page
and their values: sliders that are not part of the recipe, such as the distillation temperature)
and the texts ``predict``, ``do``, ``look_for`` and ``why``. Every text is a table with one entry per language::

    [[steps]]
    page = "pruning"
    model = "simplenet"
    recipe = '{"prune": {"method": "magnitude", "amount": 0.5, "scope": "global"}}'
    predict.en = "Which layer loses most?"
    predict.zh = "哪一层被剪掉的最多？"

Files are read and checked once per process; a mistake in one names the file, the step and the
field. ``ui/lessons/card.py`` draws a step; the Overview page lists the lessons.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import compression
import sample_models
from compression.errors import RecipeError
from ui.language import LANGUAGES
from ui.model_ids import FOLDED_PREFIX

FOLDER = Path(__file__).parent
PAGES = FOLDER.parents[1] / "pages"
PARTS = ("predict", "do", "look_for", "why")  # a step's texts, in the order the card shows them


class LessonError(ValueError):
    """A lesson file that does not say what a lesson needs."""


@dataclass(frozen=True)
class Step:
    """One step: open ``page`` with ``model`` and ``recipe`` (and ``settings``), then read the texts."""

    page: str
    model: str
    recipe: Mapping[str, Any]
    settings: Mapping[str, Any]
    texts: Mapping[str, Mapping[str, str]]  # part → language → text

    @property
    def script(self) -> str:
        """The page's script, as ``st.switch_page`` and ``st.page_link`` name it."""
        return f"pages/{self.page}.py"

    def text(self, part: str, language: str) -> str:
        return self.texts[part][language]


@dataclass(frozen=True)
class Lesson:
    name: str
    order: int
    title: Mapping[str, str]  # language → text
    summary: Mapping[str, str]
    steps: tuple[Step, ...]


def _texts(value: Any, where: str) -> Mapping[str, str]:
    if not isinstance(value, dict) or sorted(value) != sorted(LANGUAGES):
        raise LessonError(f"{where} must give a text for each of {', '.join(LANGUAGES)}; got {value!r}")
    empty = [language for language, text in value.items() if not isinstance(text, str) or not text.strip()]
    if empty:
        raise LessonError(f"{where} has no text in {', '.join(empty)}")
    return MappingProxyType({language: value[language].strip() for language in LANGUAGES})


def _step(values: Any, where: str) -> Step:
    if not isinstance(values, dict):
        raise LessonError(f"{where} must be a table; got {values!r}")
    allowed = {"page", "model", "recipe", "settings", *PARTS}
    unknown, missing = set(values) - allowed, allowed - {"settings"} - set(values)
    if unknown or missing:
        raise LessonError(f"{where}: unknown field(s) {sorted(unknown)}, missing field(s) {sorted(missing)}")
    if not (PAGES / f"{values['page']}.py").is_file():
        raise LessonError(f"{where}.page: no page pages/{values['page']}.py")
    if str(values["model"]).removeprefix(FOLDED_PREFIX) not in sample_models.ZOO_NAMES:
        raise LessonError(f"{where}.model must be one of {', '.join(sample_models.ZOO_NAMES)}, or one of them after "
                          f"{FOLDED_PREFIX!r} (BatchNorm folded); got {values['model']!r}")
    try:
        recipe = compression.Recipe.from_json(values["recipe"]).to_dict()
    except (RecipeError, TypeError) as error:
        raise LessonError(f"{where}.recipe: {error}") from None
    settings = values.get("settings", {})
    if not isinstance(settings, dict):
        raise LessonError(f"{where}.settings must map widget keys to values; got {settings!r}")
    return Step(values["page"], values["model"], MappingProxyType(recipe), MappingProxyType(settings),
                MappingProxyType({part: _texts(values[part], f"{where}.{part}") for part in PARTS}))


def read(path: Path) -> Lesson:
    """One lesson file, checked: every field there, every text in every language, every recipe valid."""
    with open(path, "rb") as file:
        values = tomllib.load(file)
    where = path.name
    unknown = set(values) - {"order", "title", "summary", "steps"}
    if unknown:
        raise LessonError(f"{where}: unknown field(s) {sorted(unknown)}")
    steps = values.get("steps")
    if not isinstance(steps, list) or not steps:
        raise LessonError(f"{where}: a lesson needs [[steps]]")
    order = values.get("order")
    if isinstance(order, bool) or not isinstance(order, int):
        raise LessonError(f"{where}.order must be an integer; got {order!r}")
    return Lesson(path.stem, order, _texts(values.get("title"), f"{where}.title"),
                  _texts(values.get("summary"), f"{where}.summary"),
                  tuple(_step(step, f"{where} step {number}") for number, step in enumerate(steps, 1)))


@cache
def lessons() -> tuple[Lesson, ...]:
    """Every lesson, in the Overview's order; read once per process."""
    return tuple(sorted((read(path) for path in FOLDER.glob("*.toml")), key=lambda lesson: (lesson.order, lesson.name)))


def lesson(name: str) -> Lesson | None:
    return next((found for found in lessons() if found.name == name), None)
