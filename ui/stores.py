"""What a session keeps across pages: one typed store per kind of result, each with one owner.

A Streamlit session has one ``st.session_state`` for every page. Here each thing kept there has
a name, a key and value type, and the one module that writes it (``owner``); other pages read it
through the same object, so a reader never guesses a key or a shape. Runs stay until the
session ends: switching pages and back shows the finished run again.

Stores keep the ``st.session_state`` names the dashboard always had (AppTests read ``model_id``,
``recipe`` and ``sweep_points`` there). ``tests/ui/test_stores.py`` checks that only the owner
writes a store and that no other module names these keys.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypedDict, TypeVar, overload

import streamlit as st

from ui.model_ids import ModelChoice

if TYPE_CHECKING:
    import pandas as pd

    from compression.evaluation import Evaluation
    from compression.recipe import PruneSpec
    from compression.workflows.distillation import DistillConfig, DistillResult
    from compression.workflows.gradual import AgpSchedule, GradualStep
    from compression.workflows.gradual_comparison import ArmScore
    from compression.workflows.latency import Verdict
    from compression.workflows.search import SearchResult
    from compression.workflows.xray import XRay
    from ui.background_runs import BackgroundRun

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


class SessionStore(Generic[K, V]):
    """A dict kept in ``st.session_state[name]``, written by ``owner`` (a path such as
    ``pages/gradual.py``) and read by anyone. Reading never creates the dict."""

    def __init__(self, name: str, owner: str) -> None:
        self.name = name
        self.owner = owner

    def _entries(self) -> dict[K, V]:
        return st.session_state.get(self.name, {})

    def __contains__(self, key: K) -> bool:
        return key in self._entries()

    def __getitem__(self, key: K) -> V:
        return self._entries()[key]

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: V) -> V: ...
    def get(self, key: K, default: V | None = None) -> V | None:
        return self._entries().get(key, default)

    def items(self) -> list[tuple[K, V]]:
        return list(self._entries().items())

    def keys(self) -> list[K]:
        return list(self._entries())

    def put(self, key: K, value: V) -> None:
        st.session_state.setdefault(self.name, {})[key] = value

    def setdefault(self, key: K, default: V) -> V:
        """The value under ``key``, storing ``default`` first where there is none (a cache the
        engine fills in place)."""
        return st.session_state.setdefault(self.name, {}).setdefault(key, default)


class SessionValue(Generic[T]):
    """One value kept in ``st.session_state[name]``, written by ``owner``."""

    def __init__(self, name: str, owner: str) -> None:
        self.name = name
        self.owner = owner

    def is_set(self) -> bool:
        return self.name in st.session_state

    def get(self) -> T:
        return st.session_state[self.name]

    def set(self, value: T) -> None:
        st.session_state[self.name] = value

    def pop(self) -> T | None:
        return st.session_state.pop(self.name, None)


# --- the values stored --------------------------------------------------------------------------


class GradualRun(TypedDict):
    """A finished gradual-pruning run: its steps, and the three arms of ``compare_gradual``
    (gradual, one-shot, one-shot + as much fine-tuning) packed, sizes in bytes."""

    steps: list[GradualStep]
    arms: tuple[ArmScore, ...]


# "with" is a Python keyword, hence the functional form: the two students and their encoded sizes.
DistillRun = TypedDict("DistillRun", {"with": "DistillResult", "without": "DistillResult", "encoded": dict[str, int]})


class OnnxExport(NamedTuple):
    """An exported ONNX file and its onnxruntime scores (None: the model has no evaluation data)."""

    program: bytes
    scores: Evaluation | None


class LatencyMeasurement(NamedTuple):
    """One press of "Measure latency": the table, each variant's metric and what they say."""

    table: pd.DataFrame
    scores: dict[str, float]
    verdicts: list[Verdict]
    skipped: dict[str, str]  # variant → why it has no row
    threads: int


class XRayRun(NamedTuple):
    """The X-ray of one recipe (``scan``) and the what-if drawn over it, if any, with their seconds."""

    recipe_json: str
    scan: XRay
    seconds: float
    what_if: XRay | None = None
    what_if_seconds: float = 0.0
    what_if_refusal: str = ""  # why the last what-if asked for does not apply


Measurements = dict[str, dict[str, Any]]  # the engine's cache of scored recipes, by recipe JSON
RecipeKey = tuple[ModelChoice, str]  # (model, recipe JSON)

# --- the session's model and recipe (ui/state.py) -------------------------------------------------

MODEL_ID: SessionValue[str] = SessionValue("model_id", owner="ui/state.py")
"""The model the session works on (a sample name, ``upload/…`` or ``folded/…``)."""
DATA_ID: SessionValue[str | None] = SessionValue("data_id", owner="ui/state.py")
"""Its uploaded evaluation data, if any."""
RECIPE: SessionValue[dict[str, Any]] = SessionValue("recipe", owner="ui/state.py")
"""The recipe as a plain dict, shared by every page and mirrored in the URL."""
LISTED_MODELS: SessionStore[str, str] = SessionStore("uploaded_models", owner="ui/state.py")
"""Uploads and folded models offered in the sidebar: model id → label."""
URL_WARNING: SessionValue[str] = SessionValue("url_warning", owner="ui/state.py")
"""Why a link was not followed, shown once."""
LESSON_STEP: SessionValue[tuple[str, int]] = SessionValue("lesson_step", owner="ui/lessons/card.py")
"""The lesson step the session follows: (lesson name, step number from 1), mirrored in the URL."""

# --- results, by the page that makes them ---------------------------------------------------------

GRADUAL_RUNS: SessionStore[tuple[ModelChoice, AgpSchedule, PruneSpec, str], GradualRun] = SessionStore(
    "agp_runs", owner="pages/gradual.py")
"""Finished gradual-pruning runs by (model, schedule, how the arms prune, packing recipe JSON);
the Trade-offs page draws them beside the sweep."""
SENSITIVITY_FRAMES: SessionStore[ModelChoice, pd.DataFrame] = SessionStore(
    "sensitivity_runs", owner="pages/sensitivity.py")
"""Per-layer sensitivity measurements of a model."""
SENSITIVITY_MEASUREMENTS: SessionStore[ModelChoice, Measurements] = SessionStore(
    "sensitivity_caches", owner="pages/sensitivity.py")
"""Scored single-layer recipes, shared by the sensitivity runs and the searches of a model."""
SENSITIVITY_SCANS: SessionStore[ModelChoice, BackgroundRun] = SessionStore("sensitivity_scans", owner="pages/sensitivity.py")
"""The background scans (:mod:`ui.scan_runs`) this session has drawn, by model: a scan that ends
between two redraws is still taken in."""
SEARCHES: SessionStore[tuple[ModelChoice, float, bool], SearchResult] = SessionStore(
    "searches", owner="pages/sensitivity.py")
"""Tolerance searches by (model, tolerance, per layer); the Trade-offs page draws them."""
DISTILLATION_RUNS: SessionStore[tuple[ModelChoice, DistillConfig], DistillRun] = SessionStore(
    "distill_runs", owner="pages/distillation.py")
"""Both students of a run; the Trade-offs page draws them."""
SWEEPS: SessionStore[tuple[ModelChoice, tuple, tuple, tuple, str], pd.DataFrame] = SessionStore(
    "sweeps", owner="pages/tradeoffs.py")
"""Sweep frames by (model, amounts, bits, schemes, recipe JSON)."""
SWEEP_MEASUREMENTS: SessionStore[ModelChoice, Measurements] = SessionStore("sweep_points", owner="pages/tradeoffs.py")
"""Scored grid points per model: a sweep over an overlapping grid measures only what is new."""
SWEEP_RANGES: SessionStore[str, list] = SessionStore("sweep_ranges", owner="pages/tradeoffs.py")
"""The sweep's chosen ranges by widget key (widget values vanish when the page is left)."""
SWEEP_RUNS: SessionStore[tuple[ModelChoice, tuple, tuple, tuple, str], BackgroundRun] = SessionStore(
    "sweep_runs", owner="pages/tradeoffs.py")
"""The background runs (:mod:`ui.sweep_runs`) this session has drawn, by the key of ``SWEEPS``:
a run that ends between two redraws is still taken in."""
ONNX_EXPORTS: SessionStore[tuple[ModelChoice, str, str], OnnxExport] = SessionStore(
    "onnx_exports", owner="ui/export/onnx_file.py")
"""ONNX files by (model, recipe JSON, int8 mode)."""
TFLITE_EXPORTS: SessionStore[RecipeKey, bytes] = SessionStore("tflite_exports", owner="ui/export/tflite_file.py")
"""TFLite files by (model, recipe JSON)."""
LATENCY_MEASUREMENTS: SessionStore[RecipeKey, LatencyMeasurement] = SessionStore(
    "latency_reports", owner="ui/export/latency.py")
"""The last latency measurement by (model, recipe JSON)."""
XRAYS: SessionStore[ModelChoice, XRayRun] = SessionStore("xrays", owner="pages/xray.py")
"""The latest X-ray of each model, for the recipe it names: one per model, as each holds a
compressed copy of the model and the layers' recorded activations."""
CALIBRATION_REFUSALS: SessionStore[RecipeKey, str] = SessionStore(
    "calibration_refusals", owner="ui/calibrated_run.py")
"""Why a model cannot run a recipe's calibrated methods (the engine's message) by (model, recipe
JSON): said at once when the recipe comes back, without another press of Run."""

ALL: tuple[SessionStore | SessionValue, ...] = (
    MODEL_ID, DATA_ID, RECIPE, LISTED_MODELS, URL_WARNING, LESSON_STEP, GRADUAL_RUNS, SENSITIVITY_FRAMES,
    SENSITIVITY_MEASUREMENTS, SENSITIVITY_SCANS, SEARCHES, DISTILLATION_RUNS, SWEEPS, SWEEP_MEASUREMENTS, SWEEP_RANGES, SWEEP_RUNS,
    ONNX_EXPORTS, TFLITE_EXPORTS, LATENCY_MEASUREMENTS, XRAYS, CALIBRATION_REFUSALS,
)
