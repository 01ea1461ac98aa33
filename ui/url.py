"""The URL's query parameters: the model and recipe a link asks for, and the session's written back.

``?model=mlp&recipe={"prune":{...}}&lang=zh``: a copied link opens the same view, in the same
language (``ui.language`` reads ``lang``). Uploads are not linkable (they live in their
session); a sample model or one of the server's model folder, folded or not, is.
"""
from __future__ import annotations

import json
from typing import Any

import streamlit as st

import compression
from compression.errors import CompressionError
from ui import server_models
from ui.language import QUERY_PARAMETER
from ui.model_ids import DEFAULT_MODEL, linkable
from ui.text import language, t


def linked_model() -> tuple[str, str | None]:
    """The model the link names (the default where it names none), and why it was not followed."""
    model_id = st.query_params.get("model", DEFAULT_MODEL)
    if linkable(model_id):
        refusal = server_models.refusal(model_id)
        if refusal is None:
            return model_id, None
        return DEFAULT_MODEL, t("links.server_model_refused", reason=refusal, default=DEFAULT_MODEL)
    return DEFAULT_MODEL, t("links.unknown_model", model=model_id, default=DEFAULT_MODEL)


def linked_recipe() -> tuple[dict[str, Any], str | None]:
    """The link's recipe as a plain dict (empty where it has none), and why it was not used."""
    if "recipe" not in st.query_params:
        return {}, None
    try:
        return compression.Recipe.from_json(st.query_params["recipe"]).to_dict(), None
    except CompressionError as error:
        return {}, t("links.recipe_not_used", error=error)


def show(model_id: str, recipe: dict[str, Any]) -> None:
    """Model (sample and server models, folded or not: uploads live in this session), recipe and
    the session's language into the URL.

    Only parameters that change are written: each write is a message to the browser.
    """
    wanted = link_parameters(model_id, recipe)
    for name in ("model", "recipe", QUERY_PARAMETER):
        if name not in wanted and name in st.query_params:
            del st.query_params[name]
        elif name in wanted and st.query_params.get(name) != wanted[name]:
            st.query_params[name] = wanted[name]


def link_parameters(model_id: str, recipe: dict[str, Any]) -> dict[str, str]:
    """The query parameters of a link to this view: model (where linkable), recipe, language."""
    wanted = {}
    if linkable(model_id):
        wanted["model"] = model_id
    if recipe:
        # The canonical JSON, compact: sorted keys except the override patterns, whose order
        # decides which one wins.
        canonical = compression.Recipe.from_dict(recipe).to_json()
        wanted["recipe"] = json.dumps(json.loads(canonical), separators=(",", ":"))
    wanted[QUERY_PARAMETER] = language()
    return wanted
