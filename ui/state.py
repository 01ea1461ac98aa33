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
FOLDED_PREFIX = "folded/"  # a model with its BatchNorm layers folded: "folded/bn_cnn"
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
        if self.model_id.startswith(FOLDED_PREFIX):
            return f"{Path(ModelChoice(self.model_id.removeprefix(FOLDED_PREFIX), None).label).stem}-bn-folded"
        return self.model_id.removeprefix(UPLOAD_PREFIX).split("/", 1)[-1]


# --- uploads --------------------------------------------------------------------------------

# One limit for the browser, the page and the engine. server.maxUploadSize in
# .streamlit/config.toml holds the same number (the server refuses bigger requests outright);
# a test keeps the two equal. 200 MB takes MiniLM-sized models (all-MiniLM-L6-v2 is 91 MB as
# safetensors or ONNX) with room to spare.
UPLOAD_LIMIT_MB = 200
MAX_UPLOAD_BYTES = UPLOAD_LIMIT_MB * 1024**2  # Streamlit's megabytes are MiB
# float32 values that fit in the upload limit: what an uploaded model may hold at most.
MAX_UPLOAD_PARAMETERS = MAX_UPLOAD_BYTES // 4


@st.cache_resource
def _upload_folder() -> Path:
    """One temporary folder per server process for uploaded files, removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="compression-lab-uploads-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _safe_name(name: str) -> str:
    """A file name with no folder part and only harmless characters, at most 80 long.

    The end is kept (the engine tells .safetensors and .onnx files by their suffix) and
    leading dots go ("..", hidden files); a name with nothing left becomes "upload".

    >>> _safe_name("../../etc/passwd"), _safe_name("my model?.pt"), _safe_name("..")
    ('passwd', 'my_model_.pt', 'upload')
    """
    base = re.split(r"[/\\]", name)[-1]  # whichever separator the browser sent
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base)[-80:].lstrip(".")
    return cleaned if cleaned.strip("._-") else "upload"


def _write_new(path: Path, content: bytes, written: list[Path]) -> None:
    """Write ``path`` unless it exists (same hash, same name: same bytes), noting what was new."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    written.append(path)
    path.write_bytes(content)


def _store_upload(name: str, content: bytes, written: list[Path]) -> str:
    """Save one uploaded file under its hash and return an id usable as a cache key.

    Files written now (not those already there from an earlier upload) are added to ``written``.
    """
    digest = hashlib.sha256(content).hexdigest()[:16]
    path = _upload_folder() / digest / _safe_name(name)
    _write_new(path, content, written)
    return f"{UPLOAD_PREFIX}{digest}/{path.name}"


def _store_uploads(files: list[tuple[str, bytes]], written: list[Path]) -> str:
    """One file as itself; several (a Hugging Face folder's files) as one folder."""
    if len(files) == 1:
        return _store_upload(*files[0], written)
    names = [_safe_name(name) for name, _ in files]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        raise compression.ModelLoadError(
            f"several uploaded files would be stored as {', '.join(clashes)}; give each file of a "
            "folder its own name."
        )
    digest = hashlib.sha256(b"".join(hashlib.sha256(c).digest() + n.encode() for n, c in sorted(files))).hexdigest()[:16]
    folder = _upload_folder() / digest / "model"
    for name, (_, content) in zip(names, files):
        _write_new(folder / name, content, written)
    return f"{UPLOAD_PREFIX}{digest}/model"


def _remove(paths: list[Path]) -> None:
    """Delete the files, then their folders inside the upload folder that are left empty."""
    root = _upload_folder()
    for path in paths:
        path.unlink(missing_ok=True)
        for folder in path.parents:
            if folder == root or root not in folder.parents or any(folder.iterdir()):
                break
            folder.rmdir()


def load_upload(files: list[tuple[str, bytes]], data: tuple[str, bytes] | None = None) -> tuple[str, str | None]:
    """Check, store and load an upload (model files, optional .npz); return (model_id, data_id).

    Files over the upload limit are refused before anything is written; a refused upload
    (``CompressionError`` with the engine's message) leaves no file of its own behind.
    """
    for name, content in [*files, *([data] if data else [])]:
        if len(content) > MAX_UPLOAD_BYTES:
            raise compression.ModelLoadError(
                f"{name} is {len(content):,} bytes, over the upload limit of {MAX_UPLOAD_BYTES:,} "
                f"bytes ({MAX_UPLOAD_BYTES / 1024**2:g} MB)."
            )
    written: list[Path] = []
    try:
        model_id = _store_uploads(files, written)
        data_id = _store_upload(*data, written) if data else None
        base_model(model_id, data_id)
    except BaseException:  # refused, a bug, or a rerun cutting the load short: nothing is kept
        _remove(written)
        raise
    return model_id, data_id


def _source(item_id: str) -> str:
    if item_id.startswith(UPLOAD_PREFIX):
        return str(_upload_folder() / item_id.removeprefix(UPLOAD_PREFIX))
    return item_id


# --- cached engine calls --------------------------------------------------------------------


@st.cache_resource(max_entries=6, show_spinner=False)
def base_model(model_id: str, data_id: str | None) -> compression.LoadedModel:
    """The loaded model, shared by every session of this process (read-only). Sample models
    and uploads alike are held to the upload limits (MiniLM is well inside them); a
    ``folded/`` id is the model after it with its BatchNorm layers folded."""
    if model_id.startswith(FOLDED_PREFIX):
        source_id = model_id.removeprefix(FOLDED_PREFIX)
        return folded(source_id, data_id)[0].as_loaded(base_model(source_id, data_id))
    return compression.load_model(
        _source(model_id), _source(data_id) if data_id else None,
        max_parameters=MAX_UPLOAD_PARAMETERS, max_file_bytes=MAX_UPLOAD_BYTES,
    )


@st.cache_resource(max_entries=12, show_spinner=False)
def compressed(model_id: str, data_id: str | None, recipe_json: str) -> compression.CompressionResult:
    """One compression per (model, data, recipe); a slider returning to a value is instant."""
    return compression.compress(base_model(model_id, data_id), recipe_json)


@st.cache_resource(max_entries=6, show_spinner=False)
def folded(model_id: str, data_id: str | None) -> tuple[compression.FusionResult, compression.FusionCheck]:
    """Conv+BatchNorm folding of a model and what it changed: traced, folded and measured once."""
    model = base_model(model_id, data_id)
    result = compression.fuse_conv_bn(model)
    return result, compression.check_fusion(model, result)


@st.cache_resource(max_entries=6, show_spinner=False)
def smaller_model(
    model_id: str, data_id: str | None, amount: float, norm: str, scope: str
) -> tuple[compression.ChannelResult, float | None]:
    """Structured pruning with the channels removed, and its metric (None without data): an
    fx trace, shape propagation and an evaluation, done once per setting rather than per rerun."""
    model = base_model(model_id, data_id)
    result = compression.remove_channels(model, amount, norm=norm, scope=scope)
    # Scored against the base model: a fidelity metric compares with the original outputs.
    value = compression.evaluate(model, result.module).value if model.evaluation is not None else None
    return result, value


@st.cache_data(
    max_entries=12, show_spinner=False,
    # Keyed by each tensor's storage and in-place version counter rather than by the model
    # alone: an in-place write into the shared weights (copy_, mul_, an optimizer step) bumps
    # a counter and the fingerprint is computed again, so the page would show the change
    # rather than a stale hash. (Writes through ``.data`` or a numpy view bump no counter.)
    hash_funcs={compression.LoadedModel: lambda model: [
        (name, tensor.data_ptr(), tensor._version) for name, tensor in model.module.state_dict().items()
    ]},
)
def weights_fingerprint(model_id: str, model: compression.LoadedModel) -> str:
    """The base model's weights fingerprint (``compression.model.weights_fingerprint``), once per
    model: 8 ms on mlp, 70 ms on MiniLM, and the Model page shows it on every visit."""
    return compression.model.weights_fingerprint(model.module)


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
    if _MODEL_KEY not in st.session_state:
        # This run began in that mode before another session (opened at the same moment on a
        # fresh server) left it: app.py never ran for this session, so go through it now.
        st.rerun()


def init_session() -> None:
    """On a session's first run, take the model and recipe from the URL (or the defaults)."""
    if _MODEL_KEY in st.session_state:
        return
    model_id = st.query_params.get("model", DEFAULT_MODEL)
    if not _linkable(model_id):
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


def _linkable(model_id: str) -> bool:
    """Whether a link can name the model: a sample model, or one with its BatchNorm folded
    (uploads live in their session only)."""
    return model_id.removeprefix(FOLDED_PREFIX) in sample_models.ZOO_NAMES


def url_warning() -> str | None:
    return st.session_state.pop(_URL_WARNING_KEY, None)


def choice() -> ModelChoice:
    return ModelChoice(st.session_state[_MODEL_KEY], st.session_state[_DATA_KEY])


def choose_model(model_id: str, data_id: str | None = None) -> None:
    st.session_state[_MODEL_KEY] = model_id
    st.session_state[_DATA_KEY] = data_id
    sync_url()


def remember_model(model_id: str) -> None:
    """Offer an upload or a folded model in the sidebar for the rest of the session."""
    st.session_state[_UPLOAD_NAMES_KEY][model_id] = ModelChoice(model_id, None).label


def model_options() -> list[str]:
    """Zoo names, then this session's uploads and folded models, and the current model (a
    link may name a folded one)."""
    options = list(sample_models.ZOO_NAMES) + list(st.session_state[_UPLOAD_NAMES_KEY])
    current = st.session_state[_MODEL_KEY]
    return options if current in options else [*options, current]


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
    """Model (sample models, folded or not: uploads live in this session) and recipe into the URL.

    Only parameters that change are written: each write is a message to the browser.
    """
    wanted = {}
    if _linkable(st.session_state[_MODEL_KEY]):
        wanted["model"] = st.session_state[_MODEL_KEY]
    if recipe():
        # The canonical JSON, compact: sorted keys except the override patterns, whose order
        # decides which one wins.
        wanted["recipe"] = json.dumps(json.loads(recipe_json()), separators=(",", ":"))
    for name in ("model", "recipe"):
        if name not in wanted and name in st.query_params:
            del st.query_params[name]
        elif name in wanted and st.query_params.get(name) != wanted[name]:
            st.query_params[name] = wanted[name]
