"""Model page: pick a sample model or upload one, optionally with evaluation data."""
import pandas as pd
import streamlit as st
import torch

import compression
import sample_models
from ui import controls, state

UPLOAD_TYPES = ["pt", "pth", "safetensors", "pt2", "onnx", "json", "txt", "model", "bin"]

state.require_navigation()
st.title("Model")
st.markdown(
    "Choose what to compress. The **sample models** ship with the app: three small digit "
    "classifiers (scored by accuracy on 450 held-out digits) and the MiniLM sentence embedder "
    "(scored by fidelity: how close its embeddings stay to the original's). Or **upload** your own: "
    "a state dict of a sample architecture (`.pt`, `.pth`, `.safetensors`), a model that carries its "
    "architecture (`.pt2` from `torch.export.save`, TorchScript from `torch.jit.save`), an ONNX model "
    "(`.onnx`: its weights are compressed and onnxruntime runs it), or the files of "
    "a Hugging Face model folder (`config.json` plus weights) selected together. Files that could "
    "only be opened by running code they carry are refused."
)

sample_tab, upload_tab = st.tabs(["Sample models", "Upload"])

with sample_tab:
    choice = state.choice()
    zoo = list(sample_models.ZOO_NAMES)
    # The radio follows the session's model (which the sidebar or an upload may have changed)
    # and changes it only when the user clicks it.
    st.session_state["model_zoo"] = choice.model_id if choice.model_id in zoo else None
    st.radio(
        "Sample model", zoo, format_func=lambda name: f"{name} — {sample_models.describe(name)}",
        key="model_zoo", on_change=lambda: state.choose_model(st.session_state["model_zoo"]),
    )

with upload_tab:
    # The widget's limit is what the browser enforces; state.load_upload enforces the same one
    # on the server (a request can bypass the browser), and the engine's file limit matches it.
    files = st.file_uploader(
        "Model file, or every file of a Hugging Face folder", type=UPLOAD_TYPES,
        accept_multiple_files=True, key="model_upload", max_upload_size=state.UPLOAD_LIMIT_MB,
    )
    data_file = st.file_uploader(
        "Evaluation data (optional): .npz with x and, for accuracy, integer labels y",
        type=["npz"], key="model_data", max_upload_size=state.UPLOAD_LIMIT_MB,
    )
    if st.button("Use these files", disabled=not files, type="primary"):
        try:
            with st.spinner("Checking and loading the upload…"):
                model_id, data_id = state.load_upload(
                    [(f.name, f.getvalue()) for f in files],
                    (data_file.name, data_file.getvalue()) if data_file else None,
                )
        except compression.CompressionError as error:
            st.error(f"Not loaded: {error}")
        else:
            state.remember_model(model_id)
            state.choose_model(model_id, data_id)
            st.rerun()

choice, model = controls.load_current_model()
st.subheader(choice.label)
st.caption(model.description)

parameters = model.module.state_dict()
table = pd.DataFrame(
    [
        {
            "layer": name,
            "type": model.layer_types[name],
            "shape": " × ".join(map(str, parameters[name].shape)),
            "parameters": parameters[name].numel(),
            "bytes": parameters[name].numel() * parameters[name].element_size(),
        }
        for name in model.compressible
    ]
)
total_values = sum(t.numel() for t in parameters.values())
total_bytes = sum(t.numel() * t.element_size() for t in parameters.values())
columns = st.columns(4)
columns[0].metric("Compressible layers", len(table))
columns[1].metric("Compressible weights", f"{int(table['parameters'].sum()):,}" if len(table) else "0")
columns[2].metric("All values", f"{total_values:,}", help="Every tensor of the state dict: weights, biases, norms, buffers.")
columns[3].metric("Size", controls.format_bytes(total_bytes), help="Bytes of the state dict as stored.")
st.caption(f"Weights SHA-256: `{state.weights_fingerprint(choice.model_id, model)}` (the first 16 hex digits, over every "
           "tensor's name, dtype, shape and bytes: the same in every session, before and after any compression).")
if model.evaluation is None:
    st.warning(
        "This model has no evaluation data (a TorchScript file does not record its input shape). "
        "Upload an .npz with the model to see accuracy or fidelity."
    )
else:
    try:
        with st.spinner("Evaluating the uncompressed model…"):
            baseline = state.evaluation(choice.model_id, choice.data_id, None)
        st.metric(f"Baseline {controls.metric_label(baseline['metric']).lower()}", f"{baseline['value']:.4f}",
                  help=f"Measured on {model.evaluation.description}.")
    except compression.CompressionError as error:
        st.error(f"Evaluation failed: {error}")
if len(table):
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"bytes": st.column_config.NumberColumn(format="%d B")})
else:
    st.warning("No Linear or Conv layer found: there is nothing to prune or quantize by default.")

is_folded = choice.model_id.startswith(state.FOLDED_PREFIX)
if not is_folded and any(isinstance(layer, torch.nn.modules.batchnorm._BatchNorm) for layer in model.module.modules()):
    st.subheader("Layer fusion: fold BatchNorm into the layer before")
    st.markdown(
        "At inference a BatchNorm is a fixed affine map per channel. When it reads a convolution's (or a "
        "Linear's) output that nothing else reads, it folds into that layer's weight and bias: one operation "
        "less per pair and the same outputs up to float rounding. Compress the folded model and the pruning "
        "and quantization act on the weights that really run."
    )
    st.latex(r"W' = W \cdot \frac{\gamma}{\sqrt{\sigma^2 + \epsilon}} \qquad "
             r"b' = (b - \mu) \cdot \frac{\gamma}{\sqrt{\sigma^2 + \epsilon}} + \beta")
    try:
        with st.spinner("Tracing and folding…"):
            fusion, check = state.folded(choice.model_id, choice.data_id)
    except compression.CompressionError as error:
        st.warning(f"BatchNorm cannot be folded here: {error}")
    else:
        columns = st.columns(4)
        columns[0].metric("Pairs folded", len(fusion.pairs))
        columns[1].metric("Stored values", f"{check.values_after:,}",
                          delta=f"{check.values_after - check.values_before:+,}", delta_color="off")
        if check.max_output_difference is not None:
            columns[2].metric("Max |output change|", f"{check.max_output_difference:.1e}")
            columns[3].metric(f"{controls.metric_label(model.evaluation.metric)} folded", f"{check.value_after:.4f}")
        if fusion.pairs:
            measured = f" Measured on {model.evaluation.description}." if model.evaluation else ""
            st.caption("Folded: " + ", ".join(f"{norm} into {layer}" for layer, norm in fusion.pairs)
                       + "." + measured)
            folded_id = state.FOLDED_PREFIX + choice.model_id
            if st.button("Compress the folded model", key="model_use_folded", type="primary"):
                state.remember_model(folded_id)
                state.choose_model(folded_id, choice.data_id)
                st.rerun()
        else:
            st.caption("No BatchNorm here reads only one layer's output, so nothing is folded exactly.")
