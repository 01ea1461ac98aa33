"""Overview page: what the lab does, the way through its pages, and where the session stands."""
import json

import streamlit as st

import sample_models

from ui import controls, state

state.require_navigation()
st.title("Compression Lab")
st.markdown(
    "Make a PyTorch model smaller and watch what it costs. **Pruning** sets weights to zero; "
    "**quantization** stores each weight in a few bits. Every slider redraws the weight histograms, "
    "sparsity maps and errors at once, and every number is measured: sizes are the bytes of a real "
    "packed file, metrics are evaluations on held-out data. Settings from all pages form one "
    "**recipe**, kept in the URL: copy the link to share exactly this view."
)

st.subheader("The way through")
steps = [
    ("pages/model.py", "1 · Model", "Choose a sample model or upload your own, with evaluation data."),
    ("pages/pruning.py", "2 · Pruning", "Magnitude, random, structured channels or N:M; by amount or threshold θ."),
    ("pages/quantization.py", "3 · Quantization", "Linear, power-of-two, k-means or low-precision floats, 1-16 bits."),
    ("pages/gradual.py", "4 · Gradual pruning", "Prune step by step with fine-tuning (Zhu & Gupta's schedule), against one-shot."),
    ("pages/sensitivity.py", "5 · Sensitivity", "Which layers mind; spread a sparsity budget by it; search within a tolerance."),
    ("pages/distillation.py", "6 · Distillation", "Train a small student on the teacher's soft targets, against labels alone."),
    ("pages/tradeoffs.py", "7 · Trade-offs", "Sweep amounts × bits: metric against packed size, with the Pareto front."),
    ("pages/export.py", "8 · Export", "Download the packed model, its dense weights and the recipe; copy the CLI command."),
]
for page, label, what in steps:
    link, text = st.columns([1, 4], vertical_alignment="center")
    link.page_link(page, label=label)
    text.markdown(what)

choice, model = controls.load_current_model()
st.subheader(f"Now: {choice.label}")
st.caption(sample_models.describe(choice.model_id) if choice.model_id in sample_models.ZOO_NAMES else model.description)
result = controls.compress_current(choice)
if result is not None:
    controls.size_and_metric_row(result, controls.live_scores(result, choice))
    controls.numbers_explained(model)
recipe = state.recipe()
st.markdown("**Recipe**: " + ("none yet, so the numbers above are the uncompressed model's." if not recipe else ""))
if recipe:
    st.code(json.dumps(recipe, indent=2), language="json")

st.subheader("The same from Python")
example = {"prune": {"method": "magnitude", "amount": 0.5}}
source = choice.model_id if not choice.model_id.startswith(state.UPLOAD_PREFIX) else f"path/to/{choice.label}"
st.code(
    "import compression\n\n"
    f"model = compression.load_model({source!r})\n"
    + ("" if recipe else "# an example recipe: prune half of the weights\n")
    + f"result = compression.compress(model, {json.dumps(recipe or example)!r})\n"
    "print(result.report.file_bytes, compression.evaluate(model, result.module).value)",
    language="python",
)
