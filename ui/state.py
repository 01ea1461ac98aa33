"""The dashboard's shared state: which model, which recipe, and the caches behind both.

The recipe lives in ``st.session_state`` (widgets come and go with pages; the recipe stays)
and is mirrored in the URL's query parameters, so a copied link opens the same view.
Base models are loaded once per process and shared read-only; results are cached by
(model, data, recipe JSON); the engine never mutates what it is given, so sharing is safe.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

import compression
import sample_models
from compression.errors import CompressionError
from compression.preview import MagnitudeIndex, PruningPreview, previewable

DEFAULT_MODEL = "simplenet"
UPLOAD_PREFIX = "upload/"
_MODEL_KEY = "model_id"
_DATA_KEY = "data_id"
_RECIPE_KEY = "recipe"
_UPLOAD_NAMES_KEY = "uploaded_models"
_URL_WARNING_KEY = "url_warning"


@dataclass(frozen=True)
class ModelChoice:
    """The model and evaluation data a session works on, as cache keys."""

    model_id: str
    data_id: str | None

    @property
    def label(self) -> str:
        return self.model_id.removeprefix(UPLOAD_PREFIX).split("/", 1)[-1]


# --- uploads --------------------------------------------------------------------------------


@st.cache_resource
def _upload_folder() -> Path:
    """One temporary folder per server process for uploaded files, removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="compression-lab-uploads-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _safe_name(name: str) -> str:
    """A file name with no path parts and only harmless characters (the suffix is kept)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).strip("._") or "upload"
    return stem[-80:]


def store_upload(name: str, content: bytes) -> str:
    """Save one uploaded file under its hash and return an id usable as a cache key."""
    digest = hashlib.sha256(content).hexdigest()[:16]
    folder = _upload_folder() / digest
    folder.mkdir(exist_ok=True)
    path = folder / _safe_name(name)
    if not path.exists():
        path.write_bytes(content)
    return f"{UPLOAD_PREFIX}{digest}/{path.name}"


def store_uploads(files: list[tuple[str, bytes]]) -> str:
    """One file as itself; several (a Hugging Face folder's files) as one folder."""
    if len(files) == 1:
        return store_upload(*files[0])
    digest = hashlib.sha256(b"".join(hashlib.sha256(c).digest() + n.encode() for n, c in sorted(files))).hexdigest()[:16]
    folder = _upload_folder() / digest / "model"
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files:
        (folder / _safe_name(name)).write_bytes(content)
    return f"{UPLOAD_PREFIX}{digest}/model"


def _source(item_id: str) -> str:
    if item_id.startswith(UPLOAD_PREFIX):
        return str(_upload_folder() / item_id.removeprefix(UPLOAD_PREFIX))
    return item_id


# --- cached engine calls --------------------------------------------------------------------


@st.cache_resource(max_entries=6, show_spinner=False)
def base_model(model_id: str, data_id: str | None) -> compression.LoadedModel:
    """The loaded model, shared by every session of this process (read-only)."""
    return compression.load_model(_source(model_id), _source(data_id) if data_id else None)


@st.cache_resource(max_entries=12, show_spinner=False)
def compressed(model_id: str, data_id: str | None, recipe_json: str) -> compression.CompressionResult:
    """One compression per (model, data, recipe); a slider returning to a value is instant."""
    return compression.compress(base_model(model_id, data_id), recipe_json)


@st.cache_resource(max_entries=6, show_spinner=False)
def smaller_model(
    model_id: str, data_id: str | None, amount: float, norm: str, scope: str
) -> tuple[compression.ChannelResult, float | None]:
    """Structured pruning with the channels removed, and its metric (None without data): an
    fx trace, shape propagation and an evaluation, done once per setting rather than per rerun."""
    model = base_model(model_id, data_id)
    result = compression.remove_channels(model, amount, norm=norm, scope=scope)
    value = compression.evaluate(result.as_loaded(model)).value if model.evaluation is not None else None
    return result, value


def pruning_preview(choice: ModelChoice) -> PruningPreview | None:
    """The exact preview of the session's recipe where it is magnitude pruning alone, else None."""
    recipe_now = compression.Recipe.from_dict(recipe())
    if not previewable(recipe_now):
        return None
    return MagnitudeIndex.of(base_model(choice.model_id, choice.data_id)).preview(recipe_now.prune)


LIVE_SAMPLES = 64
LIVE_SAMPLES_ABOVE_PARAMETERS = 5_000_000


def live_samples(model: compression.LoadedModel) -> int | None:
    """Rows the live views evaluate on: all for small models, the first 64 for large ones
    (MiniLM's 512 sentences take about 9 s on two cores; 64 take about 1 s)."""
    large = sum(p.numel() for p in model.module.parameters()) > LIVE_SAMPLES_ABOVE_PARAMETERS
    return LIVE_SAMPLES if large and model.evaluation is not None and model.evaluation.size > LIVE_SAMPLES else None


@st.cache_data(max_entries=512, show_spinner=False)
def evaluation(model_id: str, data_id: str | None, recipe_json: str | None, samples: int | None = None) -> dict[str, Any]:
    """The metric of the compressed model (or the base model when ``recipe_json`` is None)."""
    model = base_model(model_id, data_id)
    module = compressed(model_id, data_id, recipe_json).module if recipe_json else None
    result = compression.evaluate(model, module, samples=samples)
    return {"metric": result.metric, "value": result.value, "baseline_value": result.baseline_value,
            **result.extras}


# --- the session's model and recipe ---------------------------------------------------------


def require_navigation() -> None:
    """Make sure a page runs inside app.py's navigation, never on its own.

    With a ``pages/`` folder beside app.py, Streamlit runs a page script by itself (its old
    multipage mode) when a server's first request names a page, until some run calls
    st.navigation. Clearing that mode and rerunning sends the request through app.py, with
    its sidebar and session set-up. (Private flag: Streamlit offers no public switch.)
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def init_session() -> None:
    """On a session's first run, take the model and recipe from the URL (or the defaults)."""
    if _MODEL_KEY in st.session_state:
        return
    model_id = st.query_params.get("model", DEFAULT_MODEL)
    if model_id not in sample_models.ZOO_NAMES:
        st.session_state[_URL_WARNING_KEY] = (
            f"The link asks for model {model_id!r}, which is not a sample model here "
            f"(uploads are not shared by links); showing {DEFAULT_MODEL} instead."
        )
        model_id = DEFAULT_MODEL
    st.session_state[_MODEL_KEY] = model_id
    st.session_state[_DATA_KEY] = None
    st.session_state[_UPLOAD_NAMES_KEY] = {}
    recipe: dict[str, Any] = {}
    if "recipe" in st.query_params:
        try:
            recipe = compression.Recipe.from_json(st.query_params["recipe"]).to_dict()
        except CompressionError as error:
            st.session_state[_URL_WARNING_KEY] = f"The link's recipe was not used: {error}"
    st.session_state[_RECIPE_KEY] = recipe
    sync_url()


def url_warning() -> str | None:
    return st.session_state.pop(_URL_WARNING_KEY, None)


def choice() -> ModelChoice:
    return ModelChoice(st.session_state[_MODEL_KEY], st.session_state[_DATA_KEY])


def choose_model(model_id: str, data_id: str | None = None) -> None:
    st.session_state[_MODEL_KEY] = model_id
    st.session_state[_DATA_KEY] = data_id
    sync_url()


def remember_upload(model_id: str) -> None:
    st.session_state[_UPLOAD_NAMES_KEY][model_id] = ModelChoice(model_id, None).label


def model_options() -> list[str]:
    """Zoo names, then this session's uploads."""
    return list(sample_models.ZOO_NAMES) + list(st.session_state[_UPLOAD_NAMES_KEY])


def recipe() -> dict[str, Any]:
    """The session's recipe as a plain dict (prune and quantize sections, overrides)."""
    return st.session_state[_RECIPE_KEY]


def recipe_json() -> str:
    return compression.Recipe.from_dict(recipe()).to_json()


def recipe_json_pretty() -> str:
    return json.dumps(recipe(), indent=2) if recipe() else ""


def reset_recipe() -> None:
    """Drop every section and every recipe widget's value, so pages redraw from scratch."""
    use_recipe({})


def use_recipe(recipe_dict: dict[str, Any]) -> None:
    """Make ``recipe_dict`` the session's recipe; the recipe widgets start again from it."""
    st.session_state[_RECIPE_KEY] = compression.Recipe.from_dict(recipe_dict).to_dict()
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
        st.session_state[_RECIPE_KEY] = updated
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


def sync_url() -> None:
    """Model (zoo models only: uploads live in this session) and recipe into the URL.

    Only parameters that change are written: each write is a message to the browser.
    """
    wanted = {}
    if st.session_state[_MODEL_KEY] in sample_models.ZOO_NAMES:
        wanted["model"] = st.session_state[_MODEL_KEY]
    if recipe():
        wanted["recipe"] = json.dumps(recipe(), separators=(",", ":"), sort_keys=True)
    for name in ("model", "recipe"):
        if name not in wanted and name in st.query_params:
            del st.query_params[name]
        elif name in wanted and st.query_params.get(name) != wanted[name]:
            st.query_params[name] = wanted[name]
