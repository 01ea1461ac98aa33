"""The lesson card: a step's four texts on top of its page, and the way to the next step.

``?lesson=<name>&step=<k>`` opens step k. app.py calls :func:`follow` before the URL is written
back: a step opened by a link (a bookmark, an Overview link, the card's buttons) makes the step's
model, recipe and settings the session's, once, so the page shows what the texts describe and the
widgets then stay the student's to move. :func:`render` draws the card before the page runs, so it
sits on top. The step lives in the session (``stores.LESSON_STEP``) and goes back into the URL
after a page switch, which clears the query parameters.
"""
from __future__ import annotations

import streamlit as st
from streamlit.navigation.page import StreamlitPage

from ui import state, stores, url
from ui.lessons import Lesson, lesson, lessons
from ui.model_ids import ModelChoice
from ui.text import language, t

LESSON_PARAMETER = "lesson"
STEP_PARAMETER = "step"
OVERVIEW = "overview"  # the page Streamlit serves at "/" (its url_path is empty)


def link_parameters(found: Lesson, number: int) -> dict[str, str]:
    """The query parameters of a link to step ``number`` (from 1): the lesson and step, and the
    step's model and recipe and the session's language as every link carries them."""
    step = found.steps[number - 1]
    return {**url.link_parameters(step.model, dict(step.recipe)), LESSON_PARAMETER: found.name,
            STEP_PARAMETER: str(number)}


def _linked() -> tuple[Lesson, int] | None:
    """The lesson and step the URL names (the first step where it names none); None after a
    warning where it names a lesson or step that does not exist."""
    name, number = st.query_params[LESSON_PARAMETER], st.query_params.get(STEP_PARAMETER, "1")
    found = lesson(name)
    if found is None or not number.isdigit() or not 1 <= int(number) <= len(found.steps):
        st.warning(t("lessons.not_found", lesson=name, step=number,
                     lessons=", ".join(each.name for each in lessons())))
        return None
    return found, int(number)


def _open(found: Lesson, number: int) -> None:
    """Make step ``number`` the session's: its model, its recipe (the recipe widgets start again
    from it) and its settings."""
    step = found.steps[number - 1]
    stores.LESSON_STEP.set((found.name, number))
    if state.choice() != ModelChoice(step.model, None):
        state.choose_model(step.model)
    state.use_recipe(dict(step.recipe))
    for key, value in step.settings.items():
        st.session_state[key] = value


def _page_name(page: StreamlitPage) -> str:
    return page.url_path or OVERVIEW


def follow(page: StreamlitPage) -> None:
    """Open the step the URL names where the session is not on it yet (switching to its page);
    put the session's step back into a URL that names none (a page switch cleared it)."""
    active = stores.LESSON_STEP.get() if stores.LESSON_STEP.is_set() else None
    if LESSON_PARAMETER not in st.query_params:
        if active is not None:
            st.query_params[LESSON_PARAMETER], st.query_params[STEP_PARAMETER] = active[0], str(active[1])
        return
    linked = _linked()
    if linked is None:
        _forget()
        return
    found, number = linked
    if (found.name, number) != active:
        _open(found, number)
        if found.steps[number - 1].page != _page_name(page):
            st.switch_page(found.steps[number - 1].script, query_params=link_parameters(found, number))


def _forget() -> None:
    stores.LESSON_STEP.pop()
    for name in (LESSON_PARAMETER, STEP_PARAMETER):
        st.query_params.pop(name, None)


def _go(found: Lesson, number: int) -> None:
    _open(found, number)
    st.switch_page(found.steps[number - 1].script, query_params=link_parameters(found, number))


def _leave() -> None:
    """Stop following the lesson; the recipe and model stay as they are."""
    _forget()
    st.rerun()


def render(page: StreamlitPage) -> None:
    """The card of the session's step, if it follows a lesson: "step k of n", the lesson's title,
    the four texts and the buttons."""
    if not stores.LESSON_STEP.is_set():
        return
    name, number = stores.LESSON_STEP.get()
    found = lesson(name)
    if found is None:
        return
    step, chosen = found.steps[number - 1], language()
    headings = {"predict": t("lessons.predict"), "do": t("lessons.do"), "look_for": t("lessons.look_for"),
                "why": t("lessons.why")}
    with st.container(border=True, key="lesson_card"):
        st.caption(t("lessons.step_of", step=number, steps=len(found.steps)))
        st.subheader(found.title[chosen])
        for parts in (("predict", "do"), ("look_for", "why")):
            for column, part in zip(st.columns(2, gap="medium"), parts):
                column.markdown(f"**{headings[part]}**")
                column.markdown(step.text(part, chosen))
        if _page_name(page) != step.page:
            st.page_link(step.script, label=t("lessons.back_to_step"), icon=":material/undo:",
                         query_params=link_parameters(found, number))
        buttons = st.container(horizontal=True)
        previous = buttons.button(t("lessons.previous"), key="lesson_previous", icon=":material/arrow_back:",
                                  disabled=number == 1)
        following = buttons.button(t("lessons.next"), key="lesson_next", icon=":material/arrow_forward:",
                                   type="primary", disabled=number == len(found.steps))
        leave = buttons.button(t("lessons.leave"), key="lesson_leave", icon=":material/close:")
    if previous:
        _go(found, number - 1)
    if following:
        _go(found, number + 1)
    if leave:
        _leave()
