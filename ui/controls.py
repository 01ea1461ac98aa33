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
from compression.workflows.gradual import training_data
from compression.metrics import ACCURACY, METRICS
from compression.stats import Histogram
from compression.preview import PackedSizes
from compression.units import format_bytes
from ui import cache, state
from ui.model_ids import ModelChoice
from ui.text import t
from ui.text.engine_text import localized


def seed(key: str, value: Any) -> str:
    """Give a widget its starting value (from the recipe) unless it already has one."""
    if key not in st.session_state:
        st.session_state[key] = value
    return key


def choose(label: str, options: Sequence[Any], key: str, current: Any, **kwargs: Any) -> Any:
    """A selectbox seeded with ``current`` (or the first option when it is not one of them)."""
    return st.selectbox(label, options, key=seed(key, current if current in options else options[0]), **kwargs)


METRICS_NAMED = tuple(METRICS)  # every metric the engine scores by has a display name in the catalog


def metric_label(metric: str) -> str:
    """The metric's display name; a metric the catalog does not name shows as the engine calls it."""
    return t(f"metrics.{metric}") if metric in METRICS_NAMED else metric


def metric_axis(metric: str) -> str:
    """The metric's name as a chart axis or a tolerance says it: "(lower is better)" added where
    it is (perplexity), so that a curve going up is not read as an improvement."""
    lower_is_better = metric in METRICS and not METRICS[metric].higher_is_better
    return t("controls.lower_is_better", metric=metric_label(metric)) if lower_is_better else metric_label(metric)


def metric_text(metric: str, value: float, change: bool = False) -> str:
    """A value (or, with ``change``, a signed difference) of ``metric`` as the page shows it: four
    decimals for scores between 0 and 1, two for a metric whose scale depends on the model and
    the text (perplexity: 117.43, as papers print it).

    >>> metric_text("perplexity", 8.74141, change=True), metric_text("accuracy", 0.97777)
    ('+8.74', '0.9778')
    """
    digits = 2 if metric in METRICS and METRICS[metric].relative_tolerance else 4
    return f"{value:+.{digits}f}" if change else f"{value:.{digits}f}"


def change_color(metric: str) -> str:
    """Streamlit's delta colour for a change of ``metric``: a rise is good unless lower is better
    (perplexity), where it shows red."""
    return "normal" if METRICS[metric].higher_is_better else "inverse"


PENDING = "pending"  # in the scores while a large model's metric waits for its button
MEASURE_KEY = "measure_metric"


def live_scores(choice: ModelChoice, recipe_json: str) -> dict[str, Any] | None:
    """The compressed model's metric for ``recipe_json`` (cached per recipe); None where the
    model has no data.

    Large models and language models are scored on a sample (its rows under ``samples``) and
    take about a second: a spinner says so. Above :func:`ui.cache.metric_on_demand`'s size the
    metric waits (``{PENDING: True}``) for the button :func:`size_and_metric_row` draws, unless
    this recipe was scored before; a press reruns the page with the button's state set.
    """
    model = cache.base_model(choice.model_id, choice.data_id)
    if model.evaluation is None:
        return None
    samples = cache.live_samples(model)
    notes = {"samples": samples} if samples is not None else {}
    if cache.metric_on_demand(model):
        kept = cache.scored(choice.model_id, choice.data_id, recipe_json, samples)
        if kept is not None:
            return {**kept, **notes}
        if not st.session_state.get(MEASURE_KEY):
            return {PENDING: True, "metric": model.evaluation.metric}
    elif samples is None:
        return cache.evaluation(choice.model_id, choice.data_id, recipe_json, samples)
    with st.spinner(t("controls.evaluating")):
        return {**cache.evaluation(choice.model_id, choice.data_id, recipe_json, samples), **notes}


def size_and_metric_row(sizes: compression.CompressionReport | PackedSizes, scores: dict[str, Any] | None) -> None:
    """Sparsity, the three sizes and the metric with its change from the baseline.

    ``sizes`` come from a compression's report or, for magnitude pruning alone, from the exact
    preview (the same numbers without compressing). What each number means is said once, by
    :func:`numbers_explained` outside the live part, rather than in tooltips: Streamlit's
    tooltips measure themselves on every redraw, which slows each slider move.
    """
    row = st.container(horizontal=True, gap="medium")
    row.metric(t("controls.sparsity"), f"{sizes.sparsity:.1%}")
    row.metric(t("controls.dense_fp32"), format_bytes(sizes.dense_fp32_bytes))
    row.metric(t("controls.encoded"), format_bytes(sizes.encoded_bytes))
    ratio = sizes.compression_ratio
    row.metric(t("controls.packed_file"), format_bytes(sizes.file_bytes), delta_color="off", delta_arrow="off",
               delta=t("controls.times_smaller" if ratio >= 1.05 else "controls.times_dense", ratio=ratio))
    if scores is None:
        row.metric(t("controls.metric"), "—")
    elif PENDING in scores:
        row.metric(metric_label(scores["metric"]), "—", delta=t("controls.metric_waits"),
                   delta_color="off", delta_arrow="off")
        row.button(t("controls.measure_metric"), key=MEASURE_KEY)
    else:
        row.metric(metric_label(scores["metric"]), metric_text(scores["metric"], scores["value"]),
                   delta=metric_text(scores["metric"], scores["value"] - scores["baseline_value"], change=True),
                   delta_color=change_color(scores["metric"]),
                   # a sample's numbers differ from the Model page's: say so beside them
                   delta_description=t("controls.vs_uncompressed_sample", samples=scores["samples"]) if "samples" in scores
                   else t("controls.vs_uncompressed"))


def numbers_explained(model: compression.LoadedModel) -> None:
    """One caption for the size and metric row: what each number is, and the metric's data."""
    if model.evaluation is None:
        metric = t("controls.no_metric")
    else:
        samples = cache.live_samples(model)
        data = localized(model.evaluation.description)
        if samples is not None:
            data = t("controls.live_sample", samples=samples, data=data)
        metric = t("controls.metric_measured", metric=metric_label(model.evaluation.metric), data=data)
        if cache.metric_on_demand(model):
            metric += " " + t("controls.metric_on_demand", parameters=cache.METRIC_ON_DEMAND_ABOVE_PARAMETERS)
    st.caption(t("controls.numbers_explained", metric=metric))


def recipe_box(key_prefix: str) -> None:
    """The session's recipe as JSON, drawn inside a page's fragment so it follows every move."""
    # Drawn only while open: a closed box costs a slider move nothing.
    box = st.expander(t("controls.recipe_box"), key=f"{key_prefix}_recipe_box", on_change="rerun")
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


def load_current_model() -> tuple[ModelChoice, compression.LoadedModel]:
    """The session's model, or a clear error and a stop (never a traceback page)."""
    choice = state.choice()
    try:
        with st.spinner(t("controls.loading", model=choice.label)):
            return choice, cache.base_model(choice.model_id, choice.data_id)
    except compression.CompressionError as error:
        st.error(t("controls.not_loaded", model=choice.label, error=error))
        st.stop()
        raise  # st.stop() raises; this line only tells type checkers so


def warn_if_nothing_compressible(model: compression.LoadedModel) -> None:
    """Say why every number stays at its baseline when the model has no Linear or Conv layer."""
    if not model.compressible:
        st.warning(t("controls.nothing_compressible", model=model.name))


def require_training_data(choice: ModelChoice, model: compression.LoadedModel, why: str) -> None:
    """Stop the page with a clear warning unless the engine has training rows and labelled
    held-out data for the model (the digits samples): training and scoring need both."""
    try:
        training_data(model)
        labelled = model.evaluation is not None and model.evaluation.metric == ACCURACY
    except compression.CompressionError:
        labelled = False
    if not labelled:
        st.warning(t("controls.needs_training_data", why=why, models=", ".join(sample_models.DIGITS_MODELS),
                     model=choice.label))
        st.stop()


def require_evaluation(model: compression.LoadedModel, purpose: str) -> None:
    """Stop the page with a clear warning where the model has no evaluation data to score with."""
    if model.evaluation is None:
        st.warning(t("controls.needs_evaluation", purpose=purpose))
        st.stop()


def compress_current(choice: ModelChoice) -> compression.CompressionResult | None:
    """The compressed model for the session's recipe, or None after showing why not."""
    try:
        return cache.compressed(choice.model_id, choice.data_id, state.recipe_json())
    except compression.CompressionError as error:
        st.error(t("errors.lead_in", error=error))
        return None
