"""Compression Lab's dashboard entry point: ``streamlit run app.py``.

The interactive pages (model, pruning, quantization, trade-offs, export) are the next
milestone; until they land this page says so and shows what the engine already offers.
"""
import streamlit as st

import sample_models

st.set_page_config(page_title="Compression Lab", layout="wide")
st.title("Compression Lab")
st.info(
    "The interactive pages (sliders, live histograms, sparsity maps, trade-off curves) are "
    "being built. The compression engine is ready: use it from Python or the command line."
)
st.subheader("Sample models")
st.table({"model": list(sample_models.ZOO_NAMES), "description": [sample_models.describe(n) for n in sample_models.ZOO_NAMES]})
st.subheader("Try the engine")
st.code(
    "python -m compression info mlp\n"
    "python -m compression apply mlp --recipe '{\"prune\": {\"method\": \"magnitude\", \"amount\": 0.5, "
    "\"scope\": \"global\"}, \"quantize\": {\"scheme\": \"linear\", \"bits\": 4}}' --out mlp.packed\n"
    "python -m compression sweep mlp --amounts 0,0.5,0.9 --bits 8,4",
    language="bash",
)
