"""The Model page's inputs section: each model input as its file records it, and a form to give
the sizes the file leaves open (what ``--input-shape`` does on the command line).

Applying sizes reloads the model under another id (``ui.model_ids.with_input_shapes``), so every
cached result of the model as first loaded stays valid and is kept apart.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

import compression
from compression.io.input_specs import SHAPED_FORMATS, parse_input_shape
from compression.model_inputs import STATIC, ModelInput
from ui import cache, state
from ui.model_ids import ModelChoice, with_input_shapes
from ui.text import t
from ui.text.engine_text import localized


def render(choice: ModelChoice, model: compression.LoadedModel) -> None:
    """The inputs table, and the sizes form for a file whose sizes the user may set."""
    specs = model.input_specs
    if not specs:
        return
    with st.expander(t("model.inputs.title"), expanded=any(spec.problem for spec in specs)):
        rows = [{"input": spec.name, "dtype": spec.dtype, "shape": localized(spec.shape_text), "note": spec.problem or ""}
                for spec in specs]
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                     column_config={"input": t("model.inputs.columns.input"), "dtype": t("model.inputs.columns.dtype"),
                                    "shape": t("model.inputs.columns.shape"), "note": t("model.inputs.columns.note")})
        open_specs = [spec for spec in specs if any(dim.origin != STATIC for dim in spec.dims)]
        if model.format not in SHAPED_FORMATS:  # a folder's inputs are its family's: shown only
            return
        if not open_specs:
            st.caption(t("model.inputs.all_static"))
            return
        with st.form("model_input_shapes", border=False):
            texts = {spec.name: st.text_input(t("model.inputs.sizes", spec=localized(spec.summary)), value=_sizes(spec),
                                              key=f"model_input_shape_{index}")
                     for index, spec in enumerate(open_specs)}
            applied = st.form_submit_button(t("model.inputs.apply"))
    if applied:
        _apply(choice, texts)


def _sizes(spec: ModelInput) -> str:
    """The sizes in use, as the form takes them (empty where one is unknown)."""
    return "" if None in spec.shape else ",".join(map(str, spec.shape))


def _apply(choice: ModelChoice, texts: dict[str, str]) -> None:
    """Reload the model with the sizes typed in, and make it the session's model."""
    try:
        shapes = dict(parse_input_shape(f"{name}={text.strip()}") for name, text in texts.items() if text.strip())
        model_id = with_input_shapes(choice.model_id, shapes)
        with st.spinner(t("model.inputs.reloading")):
            cache.base_model(model_id, choice.data_id)
    except compression.CompressionError as error:
        st.error(t("model.inputs.not_applied", error=error))
        return
    state.remember_model(model_id)
    state.choose_model(model_id, choice.data_id)
    st.rerun()
