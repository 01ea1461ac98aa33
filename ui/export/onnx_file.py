"""The Export page's ONNX section: the compressed model as an ONNX graph (float32 or int8),
scored by onnxruntime and offered for download."""
from __future__ import annotations

import json
import shlex

import streamlit as st

import compression
from compression.io.onnx.export import evaluate_onnx, export_onnx
from compression.io.onnx.int8 import calibration_inputs_for, quantize_onnx_dynamic, quantize_onnx_static
from ui import controls, state, stores
from ui.model_ids import ModelChoice


def render(choice: ModelChoice, model: compression.LoadedModel, result: compression.CompressionResult, stem: str,
           source: str) -> None:
    """Draw the section; ``source`` is the model as the command line names it."""
    st.subheader("Run it elsewhere: ONNX")
    st.markdown(
        "The compressed model as an ONNX graph, run and scored here by **onnxruntime** on the same held-out data. "
        "**int8** stores weights as 8-bit integers for onnxruntime's integer kernels: *dynamic* quantizes "
        "activations on the fly; *static* calibrates their ranges once on training rows (QDQ: quantize/dequantize "
        "pairs around float ops; QOperator: integer operators). Whether that runs faster depends on the CPU: "
        "the latency table below measures it on this machine."
    )
    int8 = st.segmented_control("int8", ["none", "dynamic", "qdq", "qoperator"], default="none", key="export_int8",
                                format_func={"none": "float32", "dynamic": "int8 dynamic", "qdq": "int8 static (QDQ)",
                                             "qoperator": "int8 static (QOperator)"}.get) or "none"
    exports = stores.ONNX_EXPORTS  # (model, recipe, int8) → file and scores
    export_key = (choice, state.recipe_json(), int8)
    if st.button("Export to ONNX and score it", key="export_onnx"):
        try:
            with st.spinner("Exporting and running with onnxruntime…"):
                program = export_onnx(model, result.module)
                if int8 == "dynamic":
                    program = quantize_onnx_dynamic(program)
                elif int8 != "none":
                    program = quantize_onnx_static(program, calibration_inputs_for(model), format=int8)
                scores = evaluate_onnx(model, program) if model.evaluation is not None else None
            exports.put(export_key, stores.OnnxExport(program, scores))
        except compression.CompressionError as error:
            st.error(f"ONNX export failed: {error}")
    if export_key in exports:
        program, scores = exports[export_key]
        columns = st.columns(3)
        columns[0].metric("ONNX file", controls.format_bytes(len(program)))
        if scores is not None:
            columns[1].metric(f"{controls.metric_label(scores.metric)} in onnxruntime", f"{scores.value:.4f}",
                              delta=f"{scores.value - scores.baseline_value:+.4f}", delta_description="vs. uncompressed torch")
        columns[2].download_button("Download .onnx", program, file_name=f"{stem}{'' if int8 == 'none' else '-int8-' + int8}.onnx",
                                   mime="application/octet-stream")
        st.code(shlex.join(["python", "-m", "compression", "export", source, "--recipe",
                            json.dumps(result.report.recipe, separators=(",", ":")), "--int8", int8, "--out", f"{stem}.onnx"]),
                language="bash")
