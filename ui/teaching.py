"""The teaching boxes of a page: the formulas its current settings use, the recipe in plain
PyTorch, and the mistakes tutorials often make about its technique.

Each box is an expander drawn only while open (``on_change="rerun"``): closed, it costs a
slider move nothing. Which formulas show follows the settings, so a page carries only the
ones in use; every formula says what the engine computes (the catalog cites the code).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import streamlit as st

import sample_models
from compression.model import LoadedModel
from ui import state
from ui.plain_pytorch import pruning_snippet, quantization_snippet
from ui.text import t

CUT_METHODS = ("magnitude", "random", "structured")  # the methods cut by an amount or θ
METHOD_TOPICS = {"random": ["random_scores"], "structured": ["channel_scores"]}
SCHEME_TOPICS = {"pow2": ["pow2", "pow2_scale"], "kmeans": ["kmeans", "codebook_cost"]}


def pruning_topics(section: Mapping[str, Any] | None, cut: str | None = None) -> list[str]:
    """The formulas (``formulas.<topic>``) a prune section uses: its cut, then its scores.
    ``cut`` ("amount" or "threshold") is for a section the page has not given its cut yet."""
    method = (section or {}).get("method")
    if method == "n:m":
        return ["n_m"]
    if method not in CUT_METHODS:
        return []  # off, or Wanda and SparseGPT, whose formulas calibrated_run shows
    if (cut or ("threshold" if "threshold" in section else "amount")) == "threshold":
        cut = "threshold_cut"
    else:
        cut = "global_cut" if section.get("scope") == "global" else "layer_cut"
    return [cut, *METHOD_TOPICS.get(method, [])]


def quantization_topics(section: Mapping[str, Any] | None) -> list[str]:
    """The formulas a quantize section uses: its grid, its granularity, and SQNR (the chart)."""
    if not section:
        return []
    scheme = section.get("scheme")
    if scheme == "float":
        return ["float_bits", section["format"], "sqnr"]
    if scheme == "linear" and section.get("bits") == 1:
        topics = []  # binarisation: the page's caption gives its formula
    elif scheme in SCHEME_TOPICS:
        topics = list(SCHEME_TOPICS[scheme])
    else:  # linear, and GPTQ and AWQ, whose codes are on the linear grid
        topics = ["symmetric" if section.get("symmetric", True) else "asymmetric"]
    if scheme != "kmeans":  # one codebook per tensor: no granularity
        topics.append(section.get("granularity", "per_channel"))
    return [*topics, "sqnr"]


def formulas_box(topics: Sequence[str], key: str) -> None:
    """The formulas of ``topics``, each under a line saying what it is and where it applies."""
    if not topics:
        return
    box = st.expander(t("teaching.formulas"), key=key, on_change="rerun")
    if box.open:
        with box:
            for topic in topics:
                st.markdown(t(f"formulas.{topic}"))
                st.latex(t(f"formulas.{topic}_formula"))


def plain_pytorch_box(section: str, model: LoadedModel, model_id: str) -> None:
    """The current recipe's ``section`` ("prune" or "quantize") in plain PyTorch, with a line for
    each part plain torch cannot say."""
    box = st.expander(t("teaching.plain_pytorch"), key=f"{section}_plain_pytorch", on_change="rerun")
    if not box.open:
        return
    source = model_id if model_id in sample_models.ZOO_NAMES else None  # else the snippet takes `model` as given
    written = pruning_snippet if section == "prune" else quantization_snippet
    snippet = written(state.recipe(), model.compressible, model.output_axes, source)
    with box:
        if snippet.code is not None:
            st.caption(t("teaching.plain_prune" if section == "prune" else "teaching.plain_quantize"))
            st.code(snippet.code, language="python")
        elif not snippet.missing:
            st.caption(t("teaching.plain_nothing"))
        if snippet.missing:
            st.markdown("\n".join([t("teaching.plain_missing"), *(f"- {t(f'teaching.missing.{code}')}" for code in snippet.missing)]))


def mistakes_box(mistakes: Sequence[str], key: str) -> None:
    """What tutorials often get wrong (``teaching.mistakes.<name>``), each with its correction."""
    box = st.expander(t("teaching.mistakes_title"), key=key, on_change="rerun")
    if box.open:
        with box:
            for mistake in mistakes:
                st.markdown(t(f"teaching.mistakes.{mistake}"))
