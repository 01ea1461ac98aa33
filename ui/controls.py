"""Widgets that edit the recipe, and the small read-outs every page shares.

Widgets keep their values in ``st.session_state`` under their keys; a key is seeded from the
recipe the first time a page draws it, so values survive page switches and come from links.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import streamlit as st

import compression
import sample_models
from compression.gradual import training_data
from compression.model import ACCURACY
from compression.stats import Histogram
from ui import state


def seed(key: str, value: Any) -> str:
    """Give a widget its starting value (from the recipe) unless it already has one."""
    if key not in st.session_state:
        st.session_state[key] = value
    return key


def choose(label: str, options: Sequence[Any], key: str, current: Any, **kwargs: Any) -> Any:
    """A selectbox seeded with ``current`` (or the first option when it is not one of them)."""
    return st.selectbox(label, options, key=seed(key, current if current in options else options[0]), **kwargs)


def format_bytes(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    if count < 1024**2:
        return f"{count / 1024:.1f} KiB"
    return f"{count / 1024**2:.1f} MiB"


def metric_label(metric: str) -> str:
    return {"accuracy": "Accuracy", "top1_agreement": "Top-1 agreement", "cosine_similarity": "Cosine similarity"}.get(
        metric, metric
    )


def live_scores(result: compression.CompressionResult, choice: state.ModelChoice) -> dict[str, Any] | None:
    """The compressed model's metric (cached per recipe); None where the model has no data.

    Large models are scored on a sample and take about a second: a spinner says so.
    """
    model = state.base_model(choice.model_id, choice.data_id)
    if model.evaluation is None:
        return None
    samples = state.live_samples(model)
    if samples is None:
        return state.evaluation(choice.model_id, choice.data_id, report_recipe_json(result), samples)
    with st.spinner("Evaluating…"):
        return state.evaluation(choice.model_id, choice.data_id, report_recipe_json(result), samples)


def size_and_metric_row(result: compression.CompressionResult, scores: dict[str, Any] | None) -> None:
    """Sparsity, the three sizes and the metric with its change from the baseline.

    What each number means is said once, by :func:`numbers_explained` outside the live part,
    rather than in tooltips: Streamlit's tooltips measure themselves on every redraw, which
    slows each slider move.
    """
    report = result.report
    row = st.container(horizontal=True, gap="medium")
    row.metric("Sparsity", f"{report.sparsity:.1%}")
    row.metric("Dense fp32", format_bytes(report.dense_fp32_bytes))
    row.metric("Encoded", format_bytes(report.encoded_bytes))
    ratio = report.compression_ratio
    row.metric("Packed file", format_bytes(report.file_bytes), delta_color="off", delta_arrow="off",
               delta=f"{ratio:.1f}× smaller" if ratio >= 1.05 else f"{ratio:.2f}× the dense size")
    if scores is None:
        row.metric("Metric", "—")
    else:
        row.metric(metric_label(scores["metric"]), f"{scores['value']:.4f}",
                   delta=f"{scores['value'] - scores['baseline_value']:+.4f}", delta_description="vs. uncompressed")


def numbers_explained(model: compression.LoadedModel) -> None:
    """One caption for the size and metric row: what each number is, and the metric's data."""
    text = ("**Sparsity**: zeros over all compressible weights. **Dense fp32**: 4 bytes per value of the "
            "state dict. **Encoded**: the packed file's payload (bit-packed codes, positions of non-zeros, "
            "scales, untouched tensors). **Packed file**: the file on disk, header included (Export page). ")
    if model.evaluation is None:
        text += "No metric: this model has no evaluation data (upload an .npz on the Model page)."
    else:
        samples = state.live_samples(model)
        data = model.evaluation.description if samples is None else (
            f"the first {samples} of {model.evaluation.description} (the Trade-offs page uses all of them)"
        )
        text += f"**{metric_label(model.evaluation.metric)}**: measured on {data}, against the uncompressed model."
    st.caption(text)


def recipe_box(key_prefix: str) -> None:
    """The session's recipe as JSON, drawn inside a page's fragment so it follows every move."""
    # Drawn only while open: a closed box costs a slider move nothing.
    box = st.expander("Recipe (JSON)", key=f"{key_prefix}_recipe_box", on_change="rerun")
    if box.open:
        box.code(state.recipe_json_pretty() or "{}", language="json")


@dataclass(frozen=True)
class ReportView:
    """A report seen through the preview's shape: layers by name, global histograms, θ."""

    layers: dict[str, compression.LayerReport]
    histogram_before: Histogram
    histogram_after: Histogram
    threshold: float | None


def report_view(report: compression.CompressionReport) -> ReportView:
    thresholds = {layer.threshold for layer in report.layers}
    return ReportView(
        {layer.name: layer for layer in report.layers}, report.histogram_before, report.histogram_after,
        thresholds.pop() if len(thresholds) == 1 else None,
    )


def report_recipe_json(result: compression.CompressionResult) -> str:
    return compression.Recipe.from_dict(result.report.recipe).to_json()


def load_current_model() -> tuple[state.ModelChoice, compression.LoadedModel]:
    """The session's model, or a clear error and a stop (never a traceback page)."""
    choice = state.choice()
    try:
        with st.spinner(f"Loading {choice.label}…"):
            return choice, state.base_model(choice.model_id, choice.data_id)
    except compression.CompressionError as error:
        st.error(f"{choice.label} could not be loaded: {error}")
        st.stop()
        raise  # st.stop() raises; this line only tells type checkers so


def warn_if_nothing_compressible(model: compression.LoadedModel) -> None:
    """Say why every number stays at its baseline when the model has no Linear or Conv layer."""
    if not model.compressible:
        st.warning(
            f"{model.name} has no Linear or Conv layer, the default set to compress: sliders change nothing. "
            "Add parameters by name with the recipe's include patterns (Python API or CLI) to compress them."
        )


def require_training_data(choice: state.ModelChoice, model: compression.LoadedModel, why: str) -> None:
    """Stop the page with a clear warning unless the engine has training rows and labelled
    held-out data for the model (the digits samples): training and scoring need both."""
    try:
        training_data(model)
        labelled = model.evaluation is not None and model.evaluation.metric == ACCURACY
    except compression.CompressionError:
        labelled = False
    if not labelled:
        st.warning(f"{why}, which ships for the digits sample models ({', '.join(sample_models.DIGITS_MODELS)}) "
                   f"with their labelled test split; {choice.label} has none here. Pick one of those in the sidebar.")
        st.stop()


def require_evaluation(model: compression.LoadedModel, purpose: str) -> None:
    """Stop the page with a clear warning where the model has no evaluation data to score with."""
    if model.evaluation is None:
        st.warning(f"This model has no evaluation data: upload an .npz on the Model page to {purpose}.")
        st.stop()


def compress_current(choice: state.ModelChoice) -> compression.CompressionResult | None:
    """The compressed model for the session's recipe, or None after showing why not."""
    try:
        return state.compressed(choice.model_id, choice.data_id, state.recipe_json())
    except compression.CompressionError as error:
        st.error(str(error))
        return None
