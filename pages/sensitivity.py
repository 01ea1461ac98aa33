"""Sensitivity page: which layers tolerate pruning and fewer bits, and a sparsity budget spread by it."""
import pandas as pd
import streamlit as st

import compression
from compression.search import search_layerwise, search_sparsity
from compression.sensitivity import DEFAULT_AMOUNTS, DEFAULT_BITS, allocate_sparsity, allocation_recipe, sensitivity
from ui import charts, controls, state

state.require_navigation()
st.title("Sensitivity")
st.markdown(
    "Prune or quantize **one layer at a time** and measure the metric: the drop tells how much each layer "
    "minds. Robust layers can take more pruning, sensitive ones less. The **budget** slider spreads one "
    "overall sparsity over the layers so that each gives up about the same metric (a layer that drops "
    "less at a given amount is pruned more), and the **search** finds the largest sparsity whose drop stays "
    "within a tolerance you set, moving the threshold θ step by step."
)
st.latex(r"\text{drop}_\ell(a) = m(\text{model}) - m(\text{model with layer } \ell \text{ pruned by } a)"
         r"\qquad \sum_\ell n_\ell\, a_\ell = a \sum_\ell n_\ell,\ \ \text{drop}_\ell(a_\ell) \text{ equal}")

choice, model = controls.load_current_model()
controls.require_evaluation(model, "measure sensitivity")
metric = controls.metric_label(model.evaluation.metric)
samples = state.live_samples(model)
if samples is not None:
    st.caption(f"Large model: each measurement uses the first {samples} evaluation rows.")
results = st.session_state.setdefault("sensitivity_runs", {})  # model → frame, kept across pages
caches = st.session_state.setdefault("sensitivity_caches", {})

st.subheader("One layer at a time")
if st.button("Measure sensitivity", type="primary", key="sensitivity_run"):
    progress = st.progress(0.0, text="Starting…")
    try:
        results[choice] = sensitivity(
            model, samples=samples, cache=caches.setdefault(choice, {}),
            progress=lambda done, total, _: progress.progress(done / max(total, 1), text=f"{done} of {total} measurements"),
        )
    except compression.CompressionError as error:
        st.error(f"Stopped: {error}")
    progress.empty()

frame = results.get(choice)
if frame is None:
    st.info(f"Press **Measure sensitivity**: {len(model.compressible)} layers × {len(DEFAULT_AMOUNTS)} amounts "
            f"and {len(DEFAULT_BITS)} bit-widths, each compressed alone and scored. Results stay when you switch pages.")
    st.stop()

kind = st.segmented_control("Compress each layer by", ["prune", "quantize"], key="sensitivity_kind",
                            format_func={"prune": "pruning (amount)", "quantize": "quantization (bits)"}.get) or "prune"
curves_column, heatmap_column = st.columns(2, gap="medium")
curves_column.plotly_chart(charts.sensitivity_curves(frame, kind, metric), width="stretch", key="sensitivity_curves")
heatmap_column.plotly_chart(charts.sensitivity_heatmap(frame, kind, metric), width="stretch", key="sensitivity_heatmap")


@st.fragment
def budget() -> None:
    """The budget slider: allocation is pure arithmetic on the measured curves, so it is live."""
    st.subheader("Spread a sparsity budget")
    amount = st.slider("Overall sparsity (parameter-weighted)", 0.0, 0.95, 0.5, 0.01, key="sensitivity_budget")
    allocation = allocate_sparsity(frame, amount)
    parameters = frame.drop_duplicates("layer").set_index("layer")["parameters"]
    st.plotly_chart(charts.allocation_bars(allocation, amount), width="stretch", key="sensitivity_allocation")
    removed = sum(allocation[name] * parameters[name] for name in allocation) / parameters.sum()
    st.caption(f"Weights removed: {removed:.1%} of {int(parameters.sum()):,}. The metric of this allocation "
               "is measured when you use it (Pruning page) or on the Trade-offs page.")
    if st.button("Use this allocation as the recipe", key="sensitivity_use_allocation"):
        state.use_recipe(allocation_recipe(allocation, amount))
        st.switch_page("pages/pruning.py")


budget()

st.subheader("Search within a tolerance")
tolerance = st.slider(f"Largest allowed drop in {metric.lower()}", 0.0, 0.1, 0.01, 0.001, format="%.3f",
                      key="sensitivity_tolerance")
per_layer = st.toggle("Spread over layers by sensitivity (else one global θ)", value=False, key="sensitivity_per_layer")
searches = st.session_state.setdefault("searches", {})
search_key = (choice, tolerance, per_layer)
if st.button("Search", key="sensitivity_search"):
    progress = st.progress(0.0, text="Searching…")
    try:
        run = search_layerwise if per_layer else search_sparsity
        kwargs = {"sensitivity_frame": frame} if per_layer else {}
        searches[search_key] = run(model, **kwargs, tolerance=tolerance, samples=samples, cache=caches.setdefault(choice, {}),
                                   progress=lambda done, total, _: progress.progress(min(done / max(total, 1), 1.0),
                                                                                     text=f"step {done}"))
    except compression.CompressionError as error:
        st.error(f"Stopped: {error}")
    progress.empty()

found = searches.get(search_key)
if found is not None:
    st.plotly_chart(charts.search_steps(found.steps, tolerance, metric), width="stretch", key="sensitivity_search_steps")
    theta = "" if pd.isna(found.threshold) else f", θ = {found.threshold:.4g}"
    st.success(f"Largest sparsity within a drop of {tolerance:.3f}: **{found.amount:.2f}**{theta} — "
               f"{metric.lower()} {found.value:.4f} (drop {found.drop:.4f}), after {found.evaluations} measurements.")
    shown = found.steps.drop(columns=["recipe", "thresholds"], errors="ignore")
    st.dataframe(shown, hide_index=True, width="stretch")
    if st.button("Use this recipe", key="sensitivity_use_search"):
        state.use_recipe(found.recipe)
        st.switch_page("pages/pruning.py")
