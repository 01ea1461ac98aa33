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


def render(choice: ModelChoice, model: compression.LoadedModel, result: compression.CompressionResult) -> None:
    """Draw the section: the threads to time with, and the last measurement for this recipe."""
    st.subheader("Latency, measured on this machine")
    st.markdown(
        "Median time of one batch of 1 and of 64 rows, after warm-up, the variants timed in turns. "
        "Each row changes one thing: **torch fp32** is the uncompressed model; **torch, this recipe** the recipe's "
        "model, same shapes; **channels removed** a smaller dense model (structured pruning at the recipe's amount, "
        "else 50%); **ORT** the uncompressed model exported to ONNX and run by onnxruntime, in float32 and in int8 "
        "(int8 is compared with ORT fp32). The verdicts below say which of these run faster here."
    )
    timings = stores.LATENCY_MEASUREMENTS  # (model, recipe) → the last measurement
    latency_key = (choice, state.recipe_json())
    threads = st.columns([1, 4])[0].number_input(
        "Threads", min_value=1, max_value=os.cpu_count() or 1, value=1, step=1, key="export_latency_threads",
        help="torch and onnxruntime intra-op threads while timing. With one, all the work runs on one thread and is "
             "timed by that thread's CPU time, which other programs' load does not inflate; with more, by the wall "
             "clock, and torch waits at each layer for any core that another program holds.",
    )
    if st.button("Measure latency", key="export_latency"):
        with st.spinner("Building the variants: channel removal, ONNX export, int8 quantization…"):
            built = standard_variants(model, result.report.recipe, recipe_module=result.module, threads=threads,
                                      calibration_rows=cache.live_samples(model))
        bar = st.progress(0.0, text="Timing…")
        with torch_threads(threads):
            table = latency_table(model, built.modules, cpu_time=threads == 1,
                                  progress=lambda done, total, what: bar.progress(done / total, text=f"Timing {what}"))
        bar.empty()
        with st.spinner("Scoring each variant…"):
            scores = variant_scores(model, built.modules, samples=cache.live_samples(model))
        timings.put(latency_key, stores.LatencyMeasurement(table, scores, verdicts(table, built.techniques),
                                                           built.skipped, threads))
    if latency_key in timings:
        table, scores, found, skipped, measured_threads = timings[latency_key]
        shown = table.rename(columns={"ms_per_batch": "ms per batch", "speed_up": f"speed-up vs {TORCH_FP32}"})
        columns = {"ms per batch": st.column_config.NumberColumn(format="%.3f"),
                   f"speed-up vs {TORCH_FP32}": st.column_config.NumberColumn(format="%.2fx")}
        if scores:
            metric = controls.metric_label(model.evaluation.metric)
            shown[metric] = shown["variant"].map(scores)
            columns[metric] = st.column_config.NumberColumn(format="%.4f")
        st.dataframe(shown, hide_index=True, width="stretch", column_config=columns, height=35 * (len(shown) + 1) + 3)
        cpu = cpu_info()
        st.caption(f"Measured on this machine: {cpu.name} ({cpu.vnni_note}), {measured_threads} thread"
                   f"{'s' if measured_threads > 1 else ''} (torch and onnxruntime), "
                   + ("timed by the thread's CPU time. " if measured_threads == 1 else "timed by the wall clock. ")
                   + "Timings move with the machine's load: compare rows of one measurement.")
        for verdict in found:
            (st.success if verdict.faster else st.info)(verdict.text)
        for label, reason in skipped.items():
            st.caption(f"No row for {label}: {reason}")
