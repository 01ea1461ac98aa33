"""The Export page's smaller dense model: structured pruning's channels removed, as a .pt2."""
from __future__ import annotations

import pandas as pd
import streamlit as st

import compression
from compression.macs import MacCount
from compression.io.program import program_bytes
from ui import cache, controls
from ui.model_ids import ModelChoice
from ui.text import t


def render(choice: ModelChoice, model: compression.LoadedModel, result: compression.CompressionResult, stem: str) -> None:
    """Draw the section where the recipe prunes structured channels by one amount; else nothing."""
    prune_section = result.report.recipe.get("prune") or {}
    if prune_section.get("method") != "structured" or "amount" not in prune_section:
        return
    st.subheader(t("export.smaller"))
    st.markdown(t("export.smaller_intro"))
    try:
        smaller, smaller_value = cache.smaller_model(choice.model_id, choice.data_id, prune_section["amount"],
                                                     prune_section.get("norm", "l1"), prune_section.get("scope", "layer"))
    except compression.CompressionError as error:
        st.warning(t("export.cannot_remove", error=error))
    else:
        columns = st.columns(3)
        columns[0].metric(t("export.parameters"), f"{smaller.parameters_after:,}",
                          delta=f"{smaller.parameters_after - smaller.parameters_before:+,}", delta_color="off")
        if smaller_value is not None:
            columns[1].metric(controls.metric_label(model.evaluation.metric),
                              controls.metric_text(model.evaluation.metric, smaller_value))
        if smaller.skipped:
            kept = "; ".join(f"{name}: {why}" for name, why in smaller.skipped.items())
            st.caption(t("export.kept_whole", layers=kept))
        _compute(choice, prune_section, columns[2])
        if st.button(t("export.prepare_smaller"), key="export_smaller"):
            try:
                program = program_bytes(smaller.module, model)
            except compression.CompressionError as error:
                st.error(t("export.smaller_failed", error=error))
            else:
                st.download_button(t("export.download_smaller"), program, file_name=f"{stem}-smaller.pt2",
                                   mime="application/octet-stream", key="export_smaller_download")


def _compute(choice: ModelChoice, prune_section: dict, column) -> None:
    """MACs per input before and after the removal, measured on both models, beside what
    (1 − p)² predicts for a layer that loses a fraction p of its inputs and of its outputs."""
    amount = prune_section["amount"]
    before, after = cache.smaller_macs(choice.model_id, choice.data_id, amount,
                                       prune_section.get("norm", "l1"), prune_section.get("scope", "layer"))
    if before.total is None or after.total is None:
        st.caption(t("export.macs_unknown", reason=before.reason or after.reason))
        return
    column.metric(t("export.macs"), f"{after.total:,}", delta=f"{after.total - before.total:+,}", delta_color="off",
                  help=t("export.macs_help", before=f"{before.total:,}"))
    st.caption(t("export.macs_expected", amount=amount, expected=(1 - amount) ** 2, measured=after.total / before.total))
    st.dataframe(_macs_table(before, after), hide_index=True, width="stretch", column_config={
        "layer": t("export.columns.layer"), "before": t("export.columns.macs_before"),
        "after": t("export.columns.macs_after"),
        "kept": st.column_config.NumberColumn(t("export.columns.macs_kept"), format="percent"),
    })


def _macs_table(before: MacCount, after: MacCount) -> pd.DataFrame:
    rows = [{"layer": name, "before": macs, "after": after.layers.get(name, 0),
             "kept": after.layers.get(name, 0) / macs if macs else None} for name, macs in before.layers.items()]
    if before.unattributed or after.unattributed:
        rows.append({"layer": t("export.unattributed"), "before": before.unattributed, "after": after.unattributed,
                     "kept": after.unattributed / before.unattributed if before.unattributed else None})
    return pd.DataFrame(rows)
