"""The Export page's TFLite section: the compressed model converted by litert-torch, where installed."""
from __future__ import annotations

import streamlit as st

import compression
from compression.io import tflite_export  # through the module: tests switch tflite_available off
from compression.units import format_bytes
from ui import state, stores
from ui.model_ids import ModelChoice
from ui.text import t


def render(choice: ModelChoice, model: compression.LoadedModel, result: compression.CompressionResult, stem: str) -> None:
    """Draw the section: the conversion where litert-torch is installed, else how to add it."""
    st.subheader(t("export.tflite"))
    st.markdown(t("export.tflite_intro"))
    if not tflite_export.tflite_available():
        st.info(t("export.tflite_missing", command=tflite_export.INSTALL_COMMAND))
    else:
        tflite_files = stores.TFLITE_EXPORTS  # (model, recipe) → bytes
        tflite_key = (choice, state.recipe_json())
        if st.button(t("export.convert_tflite"), key="export_tflite"):
            try:
                with st.spinner(t("export.converting_tflite")):
                    tflite_files.put(tflite_key, tflite_export.export_tflite(model, result.module))
            except compression.CompressionError as error:
                st.error(t("export.tflite_failed", error=error))
        if tflite_key in tflite_files:
            columns = st.columns(3)
            columns[0].metric(t("export.tflite_file"), format_bytes(len(tflite_files[tflite_key])))
            columns[1].download_button(t("export.download_tflite"), tflite_files[tflite_key], file_name=f"{stem}.tflite",
                                       mime="application/octet-stream")
