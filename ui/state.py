"""The session's model and recipe: what every page works on, kept in step with the URL.

The recipe lives in the session (widgets come and go with pages; the recipe stays) and is
mirrored in the URL's query parameters (:mod:`ui.url`), so a copied link opens the same view.
"""
from __future__ import annotations

import json
from typing import Any

import streamlit as st

import compression
import sample_models
from compression.preview import MagnitudeIndex, PackedSizes, PruningPreview, previewable
from ui import cache, stores, url
from ui.model_ids import ModelChoice


def init_session() -> None:
    """On a session's first run, take the model and recipe from the URL (or the defaults)."""
    if stores.MODEL_ID.is_set():
        return
    model_id, model_warning = url.linked_model()
    recipe_dict, recipe_warning = url.linked_recipe()
    if recipe_warning or model_warning:
        stores.URL_WARNING.set(recipe_warning or model_warning)
    stores.MODEL_ID.set(model_id)
    stores.DATA_ID.set(None)
    stores.RECIPE.set(recipe_dict)
    sync_url()


def url_warning() -> str | None:
    """Why the link was not followed, once."""
    return stores.URL_WARNING.pop()


def sync_url() -> None:
    """The session's model, recipe and language into the URL (a page switch clears the query parameters)."""
    url.show(stores.MODEL_ID.get(), recipe())


def link_parameters() -> dict[str, str]:
    """The query parameters a link to another page carries: this session's model, recipe and language."""
    return url.link_parameters(stores.MODEL_ID.get(), recipe())


def choice() -> ModelChoice:
    return ModelChoice(stores.MODEL_ID.get(), stores.DATA_ID.get())


def choose_model(model_id: str, data_id: str | None = None) -> None:
    stores.MODEL_ID.set(model_id)
    stores.DATA_ID.set(data_id)
    sync_url()


def remember_model(model_id: str) -> None:
    """Offer an upload or a folded model in the sidebar for the rest of the session."""
    stores.LISTED_MODELS.put(model_id, ModelChoice(model_id, None).label)


def model_options() -> list[str]:
    """Zoo names, then this session's uploads and folded models, and the current model (a
    link may name a folded one)."""
    options = list(dict.fromkeys([*sample_models.ZOO_NAMES, *stores.LISTED_MODELS.keys()]))  # a family put back: once
    current = stores.MODEL_ID.get()
    return options if current in options else [*options, current]


# --- the recipe -----------------------------------------------------------------------------


def recipe() -> dict[str, Any]:
    """The session's recipe as a plain dict (prune and quantize sections, overrides)."""
    return stores.RECIPE.get()


def recipe_json() -> str:
    return compression.Recipe.from_dict(recipe()).to_json()


def recipe_json_pretty() -> str:
    return json.dumps(recipe(), indent=2) if recipe() else ""


def reset_recipe() -> None:
    """Drop every section and every recipe widget's value, so pages redraw from scratch."""
    use_recipe({})


def use_recipe(recipe_dict: dict[str, Any]) -> None:
    """Make ``recipe_dict`` the session's recipe; the recipe widgets start again from it."""
    stores.RECIPE.set(compression.Recipe.from_dict(recipe_dict).to_dict())
    for key in [key for key in st.session_state if isinstance(key, str) and key.startswith(("prune_", "quantize_"))]:
        del st.session_state[key]
    sync_url()


def set_section(section: str, value: dict[str, Any] | None) -> None:
    """Replace one recipe section (None removes it) and keep the URL in step."""
    updated = {key: val for key, val in recipe().items() if key != section}
    if value is not None:
        updated[section] = value
    updated = compression.Recipe.from_dict(updated).to_dict()
    if updated != recipe():  # every rerun sets its sections: only a change touches the URL
        stores.RECIPE.set(updated)
        sync_url()


def set_prune_overrides(own_amounts: dict[str, float], switched_off: set[str]) -> None:
    """Per-layer prune overrides from the pruning page's table; quantize overrides are kept."""
    overrides = {}
    for pattern, override in recipe().get("overrides", {}).items():
        kept = {key: value for key, value in override.items() if key != "prune"}
        if kept:
            overrides[pattern] = kept
    for layer, amount in own_amounts.items():
        overrides.setdefault(layer, {})["prune"] = {"amount": amount}
    for layer in switched_off:
        overrides.setdefault(layer, {})["prune"] = None
    set_section("overrides", overrides or None)


def pruning_index(choice: ModelChoice) -> MagnitudeIndex:
    """The sorted weights of the session's model (built once per model, shared by the sessions)."""
    return MagnitudeIndex.of(cache.base_model(choice.model_id, choice.data_id))


def pruning_preview(choice: ModelChoice) -> PruningPreview | None:
    """The exact preview of the session's recipe where it is magnitude pruning alone, else None."""
    recipe_now = compression.Recipe.from_dict(recipe())
    if not previewable(recipe_now):
        return None
    return pruning_index(choice).preview(recipe_now.prune)


def pruning_sizes(choice: ModelChoice) -> PackedSizes:
    """The packed file's exact sizes for the session's recipe, which :func:`pruning_preview` shows."""
    return cache.packed_sizes(choice.model_id, choice.data_id, recipe_json())
