"""The Export page's TFLite section: the compressed model converted by litert-torch, where installed."""
from __future__ import annotations

import streamlit as st

import compression
from compression.io import tflite_export  # through the module: tests switch tflite_available off
from ui import controls, state, stores
from ui.model_ids import ModelChoice


def render(choice: ModelChoice, model: compression.LoadedModel, result: compression.CompressionResult, stem: str) -> None:
    """Draw the section: the conversion where litert-torch is installed, else how to add it."""
    st.subheader("Run it on a phone: TFLite")
    st.markdown(
        "The compressed model converted by **litert-torch** to a `.tflite` flatbuffer for LiteRT (TensorFlow Lite) "
        "on Android, iOS and microcontrollers; the weights are the recipe's values in float32. The file takes "
        "batches of exactly the example's size (litert-torch cannot lower a dynamic batch)."
    )
    if not tflite_export.tflite_available():
        st.info(f"TFLite export needs an optional package, litert-torch (it brings jax and the LiteRT runtime, "
                f"about 1.2 GB): `{tflite_export.INSTALL_COMMAND}`.")
    else:
        tflite_files = stores.TFLITE_EXPORTS  # (model, recipe) → bytes
        tflite_key = (choice, state.recipe_json())
        if st.button("Convert to TFLite", key="export_tflite"):
            try:
                with st.spinner("Converting with litert-torch (10-20 s for the sample models)…"):
                    tflite_files.put(tflite_key, tflite_export.export_tflite(model, result.module))
            except compression.CompressionError as error:
                st.error(f"TFLite export failed: {error}")
        if tflite_key in tflite_files:
            columns = st.columns(3)
            columns[0].metric("TFLite file", controls.format_bytes(len(tflite_files[tflite_key])))
            columns[1].download_button("Download .tflite", tflite_files[tflite_key], file_name=f"{stem}.tflite",
                                       mime="application/octet-stream")
