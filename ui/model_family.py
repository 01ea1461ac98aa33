"""The Model page's family choice: what kind of model the file was told to be, and an override
(what ``--family`` does on the command line).

The family decides the metric (a causal LM is scored by perplexity, a classifier by accuracy).
Choosing one reloads the model under another id (``ui.model_ids.with_family``), so results of the
model as detected stay cached and apart; choosing the detected family again goes back to it.
"""
from __future__ import annotations

import streamlit as st

import compression
from compression.io.families import FAMILIES
from ui import cache, state
from ui.model_ids import FOLDED_PREFIX, ModelChoice, load_options, with_family
from ui.text import t

DETECTED = ""  # the option that keeps the family told from the file
FAMILY_BOX_PIXELS = 420  # as wide as the longest option needs, not the page


def render(choice: ModelChoice) -> None:
    """The family selectbox; a pick other than the current one reloads the model as that family."""
    detected = cache.base_model(with_family(choice.model_id, None), choice.data_id).family
    given = load_options(choice.model_id.removeprefix(FOLDED_PREFIX)).family or DETECTED
    options = [DETECTED, *FAMILIES]
    # No key: the index is part of the widget's identity, so the box follows the session's model
    # when the sidebar or a link changes it, and keeps a pick that failed to load on screen.
    picked = st.container(key="model_family", width=FAMILY_BOX_PIXELS).selectbox(
        t("model.family.label"), options, index=options.index(given), help=t("model.family.help"),
        format_func=lambda family: t("model.family.detected", family=label(detected)) if family == DETECTED else label(family),
    )
    if picked == given:
        return
    model_id = with_family(choice.model_id, None if picked in (DETECTED, detected) else picked)
    if model_id == choice.model_id:  # the detected family picked by its name: nothing to reload
        return
    try:
        with st.spinner(t("model.family.reloading")):
            cache.base_model(model_id, choice.data_id)
    except compression.CompressionError as error:
        st.error(t("model.family.not_applied", family=label(picked), error=error))
        return
    state.remember_model(model_id)
    state.choose_model(model_id, choice.data_id)
    st.rerun()


def label(family: str | None) -> str:
    """The family's display name; a model of no known family shows as "other"."""
    return t(f"families.{family if family in FAMILIES else 'other'}")
