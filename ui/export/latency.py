"""The Export page's latency table: the standard variants timed on this machine, with verdicts."""
from __future__ import annotations

import os

import streamlit as st

import compression
from compression.workflows.latency import (
    TORCH_FP32,
    cpu_info,
    latency_table,
    standard_variants,
    torch_threads,
    variant_scores,
    verdicts,
)
from ui import cache, controls, state, stores
from ui.model_ids import ModelChoice
from ui.text import t
from ui.text.engine_text import localized


def render(choice: ModelChoice, model: compression.LoadedModel, result: compression.CompressionResult) -> None:
    """Draw the section: the threads to time with, and the last measurement for this recipe."""
    st.subheader(t("export.latency"))
    st.markdown(t("export.latency_intro"))
    timings = stores.LATENCY_MEASUREMENTS  # (model, recipe) → the last measurement
    latency_key = (choice, state.recipe_json())
    threads = st.columns([1, 4])[0].number_input(
        t("export.threads"), min_value=1, max_value=os.cpu_count() or 1, value=1, step=1, key="export_latency_threads",
        help=t("export.threads_help"),
    )
    if st.button(t("export.measure_latency"), key="export_latency"):
        with st.spinner(t("export.building_variants")):
            built = standard_variants(model, result.report.recipe, recipe_module=result.module, threads=threads,
                                      calibration_rows=cache.live_samples(model))
        bar = st.progress(0.0, text=t("export.timing"))
        with torch_threads(threads):
            table = latency_table(model, built.modules, cpu_time=threads == 1,
                                  progress=lambda done, total, what: bar.progress(
                                      done / total, text=t("export.timing_variant", variant=localized(what))))
        bar.empty()
        with st.spinner(t("export.scoring_variants")):
            scores = variant_scores(model, built.modules, samples=cache.live_samples(model))
        timings.put(latency_key, stores.LatencyMeasurement(table, scores, verdicts(table, built.techniques),
                                                           built.skipped, threads))
    if latency_key in timings:
        table, scores, found, skipped, measured_threads = timings[latency_key]
        headers = {"variant": t("export.columns.variant"), "batch": t("export.columns.batch"),
                   "ms_per_batch": t("export.columns.ms_per_batch"),
                   "speed_up": t("export.columns.speed_up", baseline=TORCH_FP32)}
        shown = table.rename(columns=headers)
        columns = {headers["ms_per_batch"]: st.column_config.NumberColumn(format="%.3f"),
                   headers["speed_up"]: st.column_config.NumberColumn(format="%.2fx")}
        if scores:
            metric = controls.metric_label(model.evaluation.metric)
            shown[metric] = shown[headers["variant"]].map(scores)
            columns[metric] = st.column_config.NumberColumn(format="%.4f")
        shown[headers["variant"]] = shown[headers["variant"]].map(localized)
        st.dataframe(shown, hide_index=True, width="stretch", column_config=columns, height=35 * (len(shown) + 1) + 3)
        cpu = cpu_info()
        st.caption(t("export.measured_one_thread" if measured_threads == 1 else "export.measured_threads",
                     cpu=cpu.name, vnni=localized(cpu.vnni_note), threads=measured_threads))
        for verdict in found:
            (st.success if verdict.faster else st.info)(localized(verdict.text))
        for label, reason in skipped.items():
            st.caption(t("export.no_row", variant=localized(label), reason=localized(reason)))
