"""Export page: the packed model, its dense weights, the recipe, and the CLI that redoes it."""
import json
import os
import shlex

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
from compression.io.onnx.export import evaluate_onnx, export_onnx
from compression.io.onnx.int8 import calibration_inputs_for, quantize_onnx_dynamic, quantize_onnx_static
from compression.packing import dense_safetensors
from compression.io.program import program_bytes
from compression.io.tflite_export import INSTALL_COMMAND, export_tflite, tflite_available
from ui import cache, controls, navigation, state
from ui.model_ids import FOLDED_PREFIX, UPLOAD_PREFIX, ModelChoice

navigation.require_navigation()
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
unfolded = choice.model_id.removeprefix(FOLDED_PREFIX)
source = unfolded if not unfolded.startswith(UPLOAD_PREFIX) else f"path/to/{ModelChoice(unfolded, None).label}"
setup = []
if unfolded != choice.model_id:  # the CLI folds BatchNorm into a .pt2 first
    setup = [shlex.join(["python", "-m", "compression", "fuse", source, "--out", f"{stem}.pt2"])]
    source = f"{stem}.pt2"
command = ["python", "-m", "compression", "apply", source, "--recipe", json.dumps(result.report.recipe, separators=(",", ":")),
           "--out", f"{stem}.packed", "--dense-out", f"{stem}-dense.safetensors"]
if choice.data_id:
    command += ["--data", "path/to/" + choice.data_id.rsplit("/", 1)[-1]]
st.code("\n".join([*setup, shlex.join(command)]), language="bash")
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
        smaller, smaller_value = cache.smaller_model(choice.model_id, choice.data_id, prune_section["amount"],
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
            try:
                program = program_bytes(smaller.module, model)
            except compression.CompressionError as error:
                st.error(f"The smaller model could not be exported: {error}")
            else:
                st.download_button("Download the smaller model (.pt2)", program, file_name=f"{stem}-smaller.pt2",
                                   mime="application/octet-stream", key="export_smaller_download")

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

st.subheader("Run it on a phone: TFLite")
st.markdown(
    "The compressed model converted by **litert-torch** to a `.tflite` flatbuffer for LiteRT (TensorFlow Lite) "
    "on Android, iOS and microcontrollers; the weights are the recipe's values in float32. The file takes "
    "batches of exactly the example's size (litert-torch cannot lower a dynamic batch)."
)
if not tflite_available():
    st.info(f"TFLite export needs an optional package, litert-torch (it brings jax and the LiteRT runtime, "
            f"about 1.2 GB): `{INSTALL_COMMAND}`.")
else:
    tflite_files = st.session_state.setdefault("tflite_exports", {})  # (model, recipe) → bytes
    tflite_key = (choice, state.recipe_json())
    if st.button("Convert to TFLite", key="export_tflite"):
        try:
            with st.spinner("Converting with litert-torch (10-20 s for the sample models)…"):
                tflite_files[tflite_key] = export_tflite(model, result.module)
        except compression.CompressionError as error:
            st.error(f"TFLite export failed: {error}")
    if tflite_key in tflite_files:
        columns = st.columns(3)
        columns[0].metric("TFLite file", controls.format_bytes(len(tflite_files[tflite_key])))
        columns[1].download_button("Download .tflite", tflite_files[tflite_key], file_name=f"{stem}.tflite",
                                   mime="application/octet-stream")

st.subheader("Latency, measured on this machine")
st.markdown(
    "Median time of one batch of 1 and of 64 rows, after warm-up, the variants timed in turns. "
    "Each row changes one thing: **torch fp32** is the uncompressed model; **torch, this recipe** the recipe's "
    "model, same shapes; **channels removed** a smaller dense model (structured pruning at the recipe's amount, "
    "else 50%); **ORT** the uncompressed model exported to ONNX and run by onnxruntime, in float32 and in int8 "
    "(int8 is compared with ORT fp32). The verdicts below say which of these run faster here."
)
timings = st.session_state.setdefault("latency_reports", {})  # (model, recipe) → the last measurement
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
    timings[latency_key] = (table, scores, verdicts(table, built.techniques), built.skipped, threads)
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
