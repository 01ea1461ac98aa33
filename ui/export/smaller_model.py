"""The Export page's smaller dense model: structured pruning's channels removed, as a .pt2."""
from __future__ import annotations

import streamlit as st

import compression
from compression.io.program import program_bytes
from ui import cache, controls
from ui.model_ids import ModelChoice


def render(choice: ModelChoice, model: compression.LoadedModel, result: compression.CompressionResult, stem: str) -> None:
    """Draw the section where the recipe prunes structured channels by one amount; else nothing."""
    prune_section = result.report.recipe.get("prune") or {}
    if prune_section.get("method") != "structured" or "amount" not in prune_section:
        return
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
