"""Model page: pick a sample model, upload one (optionally with evaluation data) or open one of the
server's model folder."""
import pandas as pd
import streamlit as st
import torch

import compression
import sample_models
from compression.layer_table import layer_table
from compression.units import format_bytes
from compression.model_inputs import scoring_refusal
from ui import cache, controls, input_shapes, model_family, navigation, server_models, state, teaching, uploads
from ui.model_ids import FOLDED_PREFIX, SERVER_PREFIX
from ui.text import t
from ui.text.engine_text import localized, sample_model

UPLOAD_TYPES = ["pt", "pth", "safetensors", "pt2", "onnx", "json", "txt", "model", "bin"]

navigation.require_navigation()
st.title(t("model.title"))
st.markdown(t("model.intro"))

serves_folder = server_models.folder() is not None  # no folder named: no tab
tabs = st.tabs([t("model.samples_tab"), t("model.upload_tab"), *([t("model.server_tab")] if serves_folder else [])])
sample_tab, upload_tab = tabs[:2]

with sample_tab:
    choice = state.choice()
    zoo = list(sample_models.ZOO_NAMES)
    # The radio follows the session's model (which the sidebar or an upload may have changed)
    # and changes it only when the user clicks it.
    st.session_state["model_zoo"] = choice.model_id if choice.model_id in zoo else None
    st.radio(
        t("model.sample_model"), zoo, format_func=lambda name: f"{name} — {sample_model(name)}",
        key="model_zoo", on_change=lambda: state.choose_model(st.session_state["model_zoo"]),
    )

with upload_tab:
    # The widget's limit is what the browser enforces; cache.load_upload enforces the same one
    # on the server (a request can bypass the browser), and the engine's file limit matches it.
    files = st.file_uploader(
        t("model.model_files"), type=UPLOAD_TYPES,
        accept_multiple_files=True, key="model_upload", max_upload_size=uploads.UPLOAD_LIMIT_MB,
    )
    data_file = st.file_uploader(
        t("model.data_file"), help=t("model.data_file_help"),
        type=uploads.DATA_TYPES, key="model_data", max_upload_size=uploads.UPLOAD_LIMIT_MB,
    )
    if st.button(t("model.use_files"), disabled=not files, type="primary"):
        try:
            with st.spinner(t("model.checking_upload")):
                model_id, data_id = cache.load_upload(
                    [(f.name, f.getvalue()) for f in files],
                    (data_file.name, data_file.getvalue()) if data_file else None,
                )
        except compression.CompressionError as error:
            st.error(t("model.not_loaded", error=error))
        else:
            state.remember_model(model_id)
            state.choose_model(model_id, data_id)
            st.rerun()

if serves_folder:
    with tabs[2]:
        st.markdown(t("model.server_intro", suffixes=", ".join(f"`{suffix}`" for suffix in server_models.MODEL_SUFFIXES),
                      limit=server_models.MAX_LISTED))
        server_ids = server_models.listed()
        if not server_ids:
            st.info(t("model.server_none"))
        else:
            current = state.choice().model_id
            server_id = st.selectbox(t("model.server_model"), server_ids, key="model_server",
                                     index=server_ids.index(current) if current in server_ids else 0,
                                     format_func=lambda model_id: model_id.removeprefix(SERVER_PREFIX))
            if st.button(t("model.open_server_model"), type="primary", key="model_server_open"):
                try:
                    with st.spinner(t("model.opening_server_model", name=server_id.removeprefix(SERVER_PREFIX))):
                        cache.base_model(server_id, None)
                except compression.CompressionError as error:
                    st.error(t("model.not_loaded", error=error))
                else:
                    state.remember_model(server_id)
                    state.choose_model(server_id)
                    st.rerun()

choice, model = controls.load_current_model()
st.subheader(choice.label)
st.caption(localized(model.description))
model_family.render(choice)

layers = layer_table(model)
table = pd.DataFrame([{"layer": row.name, "type": row.type, "shape": " × ".join(map(str, row.shape)),
                       "parameters": row.parameters, "bytes": row.bytes, "macs": row.macs} for row in layers.layers])
columns = st.columns(5 if model.stored_weights is None else 6)
columns[0].metric(t("model.compressible_layers"), len(table))
columns[1].metric(t("model.compressible_weights"), f"{layers.compressible_parameters:,}")
columns[2].metric(t("model.all_values"), f"{layers.parameters:,}", help=t("model.all_values_help"))
columns[3].metric(t("model.size"), format_bytes(layers.bytes), help=t("model.size_help"))
if model.stored_weights is not None:
    stored = model.stored_weights
    columns[4].metric(t("model.checkpoint", dtypes=", ".join(stored.dtypes)), format_bytes(stored.total_bytes),
                      help=t("model.checkpoint_help", stored=localized(stored.summary)))
macs = layers.macs
if macs.total is None:
    st.caption(t("model.macs_unknown", reason=macs.reason))
else:
    row_shapes = " + ".join(" × ".join(map(str, shape)) for shape in macs.row_shapes)
    shown = f"{macs.total:,}" if macs.total < 10**7 else f"{macs.total / 10**6:,.1f} M"  # fits its column
    columns[-1].metric(t("model.macs"), shown, help=t("model.macs_help", shape=row_shapes, total=f"{macs.total:,}"))
    if macs.unattributed:
        st.caption(t("model.macs_unattributed", macs=f"{macs.unattributed:,}"))
st.caption(t("model.fingerprint", fingerprint=cache.weights_fingerprint(choice.model_id, model)))
if model.evaluation is None:
    refusal = scoring_refusal(choice.label, model.input_specs)
    st.warning(t("model.inputs.not_scored", reason=refusal) if refusal else t("model.no_evaluation"))
else:
    try:
        with st.spinner(t("model.evaluating")):
            baseline = cache.evaluation(choice.model_id, choice.data_id, None)
        st.metric(t("model.baseline", metric=controls.metric_label(baseline["metric"]).lower()),
                  controls.metric_text(baseline["metric"], baseline["value"]),
                  help=t("model.measured_on", data=localized(model.evaluation.description)))
    except compression.CompressionError as error:
        st.error(t("model.evaluation_failed", error=error))
if len(table):
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"layer": t("model.columns.layer"), "type": t("model.columns.type"),
                                "shape": t("model.columns.shape"), "parameters": t("model.columns.parameters"),
                                "bytes": st.column_config.NumberColumn(t("model.columns.bytes"), format="%d B"),
                                "macs": st.column_config.NumberColumn(t("model.columns.macs"), help=t("model.columns.macs_help"))})
else:
    st.warning(t("model.nothing_compressible"))
input_shapes.render(choice, model)

is_folded = choice.model_id.startswith(FOLDED_PREFIX)
if not is_folded and any(isinstance(layer, torch.nn.modules.batchnorm._BatchNorm) for layer in model.module.modules()):
    st.subheader(t("model.fusion"))
    st.markdown(t("model.fusion_intro"))
    st.latex(t("model.fusion_formula"))
    teaching.mistakes_box(["fusion"], "fusion_mistakes")
    try:
        with st.spinner(t("model.folding")):
            fusion, check = cache.folded(choice.model_id, choice.data_id)
    except compression.CompressionError as error:
        st.warning(t("model.cannot_fold", error=error))
    else:
        columns = st.columns(4)
        columns[0].metric(t("model.pairs_folded"), len(fusion.pairs))
        columns[1].metric(t("model.stored_values"), f"{check.values_after:,}",
                          delta=f"{check.values_after - check.values_before:+,}", delta_color="off")
        if check.max_output_difference is not None:
            columns[2].metric(t("model.output_change"), f"{check.max_output_difference:.1e}")
            columns[3].metric(t("model.metric_folded", metric=controls.metric_label(model.evaluation.metric)), f"{check.value_after:.4f}")
        if fusion.pairs:
            pairs = ", ".join(t("model.folded_pair", norm=norm, layer=layer) for layer, norm in fusion.pairs)
            st.caption(t("model.folded_measured", pairs=pairs, data=localized(model.evaluation.description)) if model.evaluation
                       else t("model.folded", pairs=pairs))
            folded_id = FOLDED_PREFIX + choice.model_id
            if st.button(t("model.use_folded"), key="model_use_folded", type="primary"):
                state.remember_model(folded_id)
                state.choose_model(folded_id, choice.data_id)
                st.rerun()
        else:
            st.caption(t("model.nothing_folded"))
