"""Export page: the packed model, its dense weights, the recipe, and the CLI that redoes it."""
import io
import json
import shlex

import streamlit as st
import torch

import compression
from compression.latency import latency_table
from compression.onnx_export import (
    OnnxRuntimeModule,
    calibration_inputs_for,
    evaluate_onnx,
    export_onnx,
    quantize_onnx_dynamic,
    quantize_onnx_static,
)
from compression.packing import dense_safetensors
from ui import controls, state

state.require_navigation()
st.title("Export")
st.markdown(
    "Download what the current recipe produced. The **packed file** is the compressed model as "
    "stored: bit-packed codes, positions of non-zeros and scales in a safetensors container; its "
    "size is the one shown on every page. The **dense weights** are the same values decoded back to "
    "float32 under the original parameter names, for any PyTorch code. The **recipe** reproduces it all."
)
st.latex(r"\text{ratio} = \frac{\text{dense fp32 bytes}}{\text{packed file bytes}}")

choice, model = controls.load_current_model()
result = controls.compress_current(choice)
if result is None:
    st.stop()
controls.size_and_metric_row(result, controls.live_scores(result, choice))
controls.numbers_explained(model)

recipe_text = json.dumps(result.report.recipe, indent=2)
stem = choice.label.rsplit(".", 1)[0]
columns = st.columns(3)
columns[0].download_button("Packed model (.packed)", result.packed.to_bytes(), file_name=f"{stem}.packed",
                           mime="application/octet-stream", type="primary")
columns[1].download_button("Dense weights (.safetensors)",
                           dense_safetensors(result.module.state_dict()),
                           file_name=f"{stem}-dense.safetensors", mime="application/octet-stream")
columns[2].download_button("Recipe (.json)", recipe_text, file_name=f"{stem}-recipe.json", mime="application/json")

st.subheader("Reproduce from the command line")
source = choice.model_id if not choice.model_id.startswith(state.UPLOAD_PREFIX) else f"path/to/{choice.label}"
command = ["python", "-m", "compression", "apply", source, "--recipe", json.dumps(result.report.recipe, separators=(",", ":")),
           "--out", f"{stem}.packed", "--dense-out", f"{stem}-dense.safetensors"]
if choice.data_id:
    command += ["--data", "path/to/" + choice.data_id.rsplit("/", 1)[-1]]
st.code(shlex.join(command), language="bash")
st.caption("Or save the recipe above and pass --recipe recipe.json. The packed file's size equals the report's file_bytes.")
st.subheader("Recipe")
st.code(recipe_text, language="json")

prune_section = result.report.recipe.get("prune") or {}
if prune_section.get("method") == "structured" and "amount" in prune_section:
    st.subheader("A smaller dense model")
    st.markdown(
        "Structured pruning zeroes whole output channels; here they are **removed**: each pruned layer keeps "
        "only its surviving channels and the next layer only the matching inputs, so the model is smaller and "
        "runs dense. Its outputs equal the masked model's (a removed channel's constant bias is folded into "
        "the next layer). Layers whose channels meet a residual add or the model's output stay whole."
    )
    try:
        smaller, smaller_value = state.smaller_model(choice.model_id, choice.data_id, prune_section["amount"],
                                                     prune_section.get("norm", "l1"), prune_section.get("scope", "layer"))
    except compression.CompressionError as error:
        st.warning(f"Channels cannot be removed from this model: {error}")
    else:
        columns = st.columns(3)
        columns[0].metric("Parameters", f"{smaller.parameters_after:,}",
                          delta=f"{smaller.parameters_after - smaller.parameters_before:+,}", delta_color="off")
        if smaller_value is not None:
            columns[1].metric(controls.metric_label(model.evaluation.metric), f"{smaller_value:.4f}")
        if smaller.skipped:
            st.caption("Kept whole, so the metric is that of this recipe with these layers unpruned: "
                       + "; ".join(f"{name}: {why}" for name, why in smaller.skipped.items()))
        if st.button("Prepare the smaller model (.pt2)", key="export_smaller"):
            buffer = io.BytesIO()
            torch.export.save(torch.export.export(smaller.module, model.example_inputs), buffer)
            st.download_button("Download the smaller model (.pt2)", buffer.getvalue(), file_name=f"{stem}-smaller.pt2",
                               mime="application/octet-stream", key="export_smaller_download")

st.subheader("Run it elsewhere: ONNX")
st.markdown(
    "The compressed model as an ONNX graph, run and scored here by **onnxruntime** on the same held-out data. "
    "**int8** stores weights as 8-bit integers for onnxruntime's integer kernels: *dynamic* quantizes "
    "activations on the fly; *static* calibrates their ranges once on training rows (QDQ: quantize/dequantize "
    "pairs around float ops; QOperator: integer operators). Whether that runs faster depends on the CPU: "
    "`python bench/latency.py` measures it on this machine."
)
int8 = st.segmented_control("int8", ["none", "dynamic", "qdq", "qoperator"], default="none", key="export_int8",
                            format_func={"none": "float32", "dynamic": "int8 dynamic", "qdq": "int8 static (QDQ)",
                                         "qoperator": "int8 static (QOperator)"}.get) or "none"
exports = st.session_state.setdefault("onnx_exports", {})  # (model, recipe, int8) → bytes and score
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
        exports[export_key] = (program, scores)
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

st.subheader("Latency, measured on this machine")
st.markdown(
    "Median wall-clock time of one batch (after warm-up), for the uncompressed model, this recipe's "
    "model in torch, and its ONNX export in onnxruntime when you have made one above. Zeros from "
    "unstructured pruning and fake-quantized weights still run through torch's dense float kernels, so "
    "expect no speed-up from them there; onnxruntime and int8 may help, depending on the CPU and layer sizes."
)
timings = st.session_state.setdefault("latency_tables", {})
if st.button("Measure latency", key="export_latency"):
    variants = {"torch, uncompressed": model.module, "torch, this recipe": result.module}
    if export_key in exports:
        variants[f"onnxruntime, this recipe ({'float32' if int8 == 'none' else 'int8 ' + int8})"] = \
            OnnxRuntimeModule(exports[export_key][0])
    with st.spinner("Timing batches of 1 and 64…"):
        timings[export_key] = latency_table(model, variants)
if export_key in timings:
    table = timings[export_key].rename(columns={"ms_per_batch": "ms per batch", "speed_up": "speed-up vs uncompressed"})
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"ms per batch": st.column_config.NumberColumn(format="%.3f"),
                                "speed-up vs uncompressed": st.column_config.NumberColumn(format="%.2fx")})
    st.caption(f"{torch.get_num_threads()} torch threads; onnxruntime uses one per core. Timings move with the "
               "machine's load: compare rows of one measurement. `python bench/latency.py` gives the full table.")
