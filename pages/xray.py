"""Error X-ray page: where along the model's depth the recipe's error enters, and what-ifs per layer."""
import json
import time

import streamlit as st

import compression
from compression.workflows.xray import KEEP_FLOAT, LESS_PRUNING, MORE_BITS, hook_refusal, layer_detail, what_if, xray
from ui import charts, controls, navigation, state, stores, xray_charts
from ui.stores import XRayRun
from ui.text import t
from ui.text.engine_text import localized

navigation.require_navigation()
st.title(t("xray.title"))
st.markdown(t("xray.intro"))

choice, model = controls.load_current_model()
controls.require_evaluation(model, t("xray.needs_evaluation"))
refusal = hook_refusal(model)
if refusal is not None:
    st.warning(t("xray.not_supported", reason=localized(refusal)))
    st.stop()

recipe_json = state.recipe_json()
runs = stores.XRAYS  # one X-ray per model, for the recipe it names
if compression.Recipe.from_json(recipe_json).is_empty:
    st.info(t("xray.recipe_empty"))
st.caption(t("xray.recipe", recipe=recipe_json))

if st.button(t("xray.run"), type="primary", key="xray_run"):
    progress = st.progress(0.0, text=t("xray.compressing"))
    steps = {"compress": t("xray.compressing"), "record": t("xray.recording"), "accumulated": t("xray.accumulating")}
    started = time.perf_counter()
    try:
        scan = xray(model, recipe_json, progress=lambda done, total, label: progress.progress(
            min(done / max(total, 1), 1.0), text=steps.get(label) or t("xray.layer_step", done=done, total=total)))
        runs.put(choice, XRayRun(recipe_json, scan, time.perf_counter() - started))
    except compression.CompressionError as error:
        st.error(t("xray.stopped", error=error))
    progress.empty()

run = runs.get(choice)
if run is None:
    st.info(t("xray.not_measured", layers=len(model.compressible)))
    st.stop()
if run.recipe_json != recipe_json:
    st.warning(t("xray.stale", recipe=run.recipe_json))

scan = run.what_if or run.scan
names = [row.name for row in scan.rows]
labels = dict(zip(names, charts.short_names(names)))
compressed = [row for row in run.scan.rows if row.compressed]
worst = min(compressed, key=lambda row: row.local_sqnr_db) if compressed else run.scan.rows[0]
if st.session_state.get("xray_layer") not in names:
    st.session_state["xray_layer"] = worst.name

summary = st.container(horizontal=True, gap="medium")
before = run.scan.output_sqnr_db if run.what_if is not None else None
summary.metric(t("xray.output_sqnr"), xray_charts.sqnr_text(scan.output_sqnr_db),
               delta=None if before is None else t("xray.db_change", value=scan.output_sqnr_db - before))
summary.metric(t("xray.output_cosine"), t("xray.cosine_value", value=scan.output_cosine),
               delta=None if before is None else t("xray.cosine_change", value=scan.output_cosine - run.scan.output_cosine))
if compressed:
    summary.metric(t("xray.worst"), labels[worst.name], delta=xray_charts.sqnr_text(worst.local_sqnr_db),
                   delta_color="off", delta_arrow="off")
st.caption(t("xray.measured_on", data=localized(scan.data), samples=scan.samples, seconds=run.seconds))
if scan.not_run:
    st.caption(t("xray.not_run", layers=", ".join(scan.not_run)))


def pick_layer() -> None:
    """A click on the chart chooses the layer in the select box."""
    points = st.session_state["xray_depth"]["selection"]["points"]
    name = xray_charts.layer_at(scan, points[0]) if points else None
    if name is not None:
        st.session_state["xray_layer"] = name


def try_what_if(change: str | None) -> None:
    """Run a what-if on the chosen layer (None: back to the recipe) before the page redraws.

    A callback, so that the numbers and the chart above the buttons already show it."""
    started = time.perf_counter()
    try:
        changed = None if change is None else what_if(run.scan, st.session_state["xray_layer"], change)
        runs.put(choice, run._replace(what_if=changed, what_if_seconds=time.perf_counter() - started, what_if_refusal=""))
    except compression.CompressionError as error:
        runs.put(choice, run._replace(what_if_refusal=str(error)))


layer = st.session_state["xray_layer"]
st.plotly_chart(xray_charts.error_depth(scan, run.scan if run.what_if is not None else None, layer),
                width="stretch", key="xray_depth", on_select=pick_layer, selection_mode="points")
st.caption(t("xray.chart_note"))

layer = st.selectbox(t("xray.layer"), names, key="xray_layer", format_func=lambda name: labels[name])
row = scan.layer(layer)
st.caption(t("xray.layer_row", local=xray_charts.sqnr_text(row.local_sqnr_db),
             accumulated=xray_charts.sqnr_text(row.accumulated_sqnr_db), module=row.module))

st.subheader(t("xray.what_if_title"))
changes = {KEEP_FLOAT: t("xray.keep_float"), MORE_BITS: t("xray.more_bits"), LESS_PRUNING: t("xray.less_pruning")}
buttons = st.container(horizontal=True)
for change, label in changes.items():
    buttons.button(label, key=f"xray_{change}", on_click=try_what_if, args=(change,))
buttons.button(t("xray.back_to_recipe"), key="xray_clear", disabled=run.what_if is None, on_click=try_what_if, args=(None,))
if run.what_if_refusal:
    st.warning(t("xray.what_if_refused", error=run.what_if_refusal))
if run.what_if is not None:
    [change] = run.what_if.changes
    st.caption(t("xray.what_if_shown", layer=labels[change.layer], change=changes[change.change],
                 override=json.dumps(change.override), seconds=run.what_if_seconds))

st.subheader(t("xray.detail_title", layer=labels[layer]))
detail = layer_detail(scan, layer)
inputs_column, kurtosis_column, weights_column = st.columns(3)
if detail.input_maxima is None:
    inputs_column.info(t("xray.no_float_inputs"))
else:
    inputs_column.plotly_chart(xray_charts.channel_bars(
        detail.input_maxima, t("xray.input_maxima"), t("xray.max_abs"), t("xray.channel_hover")),
        width="stretch", key="xray_input_maxima")
    kurtosis_column.plotly_chart(xray_charts.channel_bars(
        detail.input_kurtosis, t("xray.input_kurtosis"), t("xray.kurtosis"), t("xray.channel_hover"), outliers=False),
        width="stretch", key="xray_input_kurtosis")
    far = xray_charts.outliers(detail.input_maxima)
    inputs_column.caption(t("xray.outliers", count=far.count, channels=far.channels, largest=far.largest, median=far.median))
weights_column.plotly_chart(xray_charts.weight_ranges(detail.weight.low, detail.weight.high, t("xray.weight_ranges")),
                            width="stretch", key="xray_weight_ranges")
far = xray_charts.outliers(detail.weight.magnitude)
weights_column.caption(t("xray.weight_outliers", count=far.count, channels=far.channels, largest=far.largest,
                         median=far.median))
