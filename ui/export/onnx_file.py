"""The Export page's ONNX section: the compressed model as an ONNX graph (float32 or int8),
scored by onnxruntime and offered for download."""
from __future__ import annotations

import json

import streamlit as st

import compression
from compression.cli.command_lines import command_line
from compression.units import format_bytes
from compression.workflows.onnx_scoring import INT8_MODES, NO_INT8, export_and_score
from ui import controls, state, stores
from ui.export.downloads import CommandModel
from ui.model_ids import ModelChoice
from ui.text import t


def render(choice: ModelChoice, model: compression.LoadedModel, result: compression.CompressionResult, stem: str,
           source: CommandModel) -> None:
    """Draw the section; ``source`` is the model as the command line names it."""
    st.subheader(t("export.onnx"))
    st.markdown(t("export.onnx_intro"))
    int8 = st.segmented_control(t("export.int8"), INT8_MODES, default=NO_INT8, key="export_int8",
                                format_func=lambda name: t(f"export.int8_formats.{name}")) or NO_INT8
    exports = stores.ONNX_EXPORTS  # (model, recipe, int8) → file and scores
    export_key = (choice, state.recipe_json(), int8)
    if st.button(t("export.export_onnx"), key="export_onnx"):
        try:
            with st.spinner(t("export.exporting_onnx")):
                exported = export_and_score(model, result.module, int8)
            exports.put(export_key, stores.OnnxExport(exported.program, exported.evaluation))
        except compression.CompressionError as error:
            st.error(t("export.onnx_failed", error=error))
    if export_key in exports:
        program, scores = exports[export_key]
        columns = st.columns(3)
        columns[0].metric(t("export.onnx_file"), format_bytes(len(program)))
        if scores is not None:
            columns[1].metric(t("export.metric_in_onnxruntime", metric=controls.metric_label(scores.metric)),
                              controls.metric_text(scores.metric, scores.value),
                              delta=controls.metric_text(scores.metric, scores.value - scores.baseline_value, change=True),
                              delta_color=controls.change_color(scores.metric), delta_description=t("export.vs_torch"))
        columns[2].download_button(t("export.download_onnx"), program, file_name=f"{stem}{'' if int8 == NO_INT8 else '-int8-' + int8}.onnx",
                                   mime="application/octet-stream")
        st.code(command_line("export", source.source, recipe=json.dumps(result.report.recipe, separators=(",", ":")), int8=int8,
                             out=f"{stem}.onnx", **source.options), language="bash")
