"""Pruning page: which weights become zero, and what that does to the weights and the metric."""
import math

import pandas as pd
import streamlit as st

from compression.preview import MagnitudeIndex
from compression.stats import sparsity_map
from ui import charts, controls, state

METHODS = ["off", "magnitude", "random", "structured", "n:m"]
N_M_PATTERNS = ["2:4", "1:4", "4:8", "1:2", "2:8"]
DISPLAY_TILES = 96

state.require_navigation()
st.title("Pruning")
st.markdown(
    "Pruning sets weights to exactly zero. **Magnitude** pruning removes the smallest weights: "
    "every weight below a threshold θ, or the fraction *amount* of them (θ is then the cut that "
    "removes that many). **Global** scope uses one θ for all layers, so layers with small weights "
    "lose more; **per layer** removes the same fraction everywhere. **Random** is the baseline to beat. "
    "**Structured** removes whole output channels by their mean |w| (L1) or RMS (L2). **N:M** keeps the "
    "N largest of every M consecutive weights, the pattern sparse tensor cores accelerate."
)
st.latex(r"w' = \begin{cases} 0 & \text{if } |w| < \theta \\ w & \text{otherwise} \end{cases}"
         r"\qquad \text{sparsity} = \frac{\#\{w' = 0\}}{\#\{w\}}")

choice, model = controls.load_current_model()
recipe = state.recipe()
section = recipe.get("prune") or {}
weight_limit = MagnitudeIndex.of(model).limit or 1.0  # largest |w|, from the cached sorted weights


def prune_controls() -> dict | None:
    """The widgets of the prune section; returns the section (None: pruning off)."""
    # A first visit starts at magnitude pruning with nothing removed: the slider is right there.
    method = controls.choose("Method", METHODS, "prune_method", section.get("method", "magnitude" if not section else "off"))
    if method == "off":
        return None
    if method == "n:m":
        pattern = controls.choose(
            "Pattern N:M (keep N of every M)", N_M_PATTERNS, "prune_pattern",
            f"{section.get('n', 2)}:{section.get('m', 4)}",
        )
        n, m = (int(part) for part in pattern.split(":"))
        return {"method": "n:m", "n": n, "m": m}
    cut_options = ["amount", "threshold θ"] if method in ("magnitude", "structured") else ["amount"]
    cut = st.radio("Cut by", cut_options, horizontal=True,
                   key=controls.seed("prune_cut", "threshold θ" if "threshold" in section and len(cut_options) > 1 else "amount"))
    new = {"method": method}
    if cut == "amount":
        new["amount"] = st.slider(
            "Amount (fraction of weights removed)" if method != "structured" else "Amount (fraction of channels removed)",
            0.0, 1.0, step=0.01, key=controls.seed("prune_amount", float(section.get("amount", 0.0))),
        )
    else:
        step = 10 ** math.floor(math.log10(weight_limit / 200)) if weight_limit > 0 else 0.001
        new["threshold"] = st.slider(
            "Threshold θ", 0.0, float(weight_limit), step=step, format="%.4f",
            key=controls.seed("prune_threshold", min(float(section.get("threshold", weight_limit / 10)), weight_limit)),
            help="Weights with |w| below θ become zero (for structured: channels whose mean |w| or RMS is below θ).",
        )
    scope = st.radio("Scope", ["global", "layer"], horizontal=True,
                     format_func=lambda s: "global (one θ)" if s == "global" else "per layer",
                     key=controls.seed("prune_scope", section.get("scope", "global")))
    new["scope"] = scope
    if method == "structured":
        new["norm"] = st.radio("Channel norm", ["l1", "l2"], horizontal=True,
                               key=controls.seed("prune_norm", section.get("norm", "l1")))
    if method == "random":
        new["seed"] = int(st.number_input("Seed", 0, 2**31 - 1, step=1, key=controls.seed("prune_seed", section.get("seed", 0))))
    return new


def draw_histogram_and_bars(view, layer_names: list[str], selected: str, log_y: bool) -> None:
    """The histogram and per-layer sparsity, from a preview or a full report (same numbers)."""
    if selected == "all layers":
        before, after, title = view.histogram_before, view.histogram_after, "All compressible weights"
    else:
        layer = view.layers[selected]
        before, after, title = layer.histogram_before, layer.histogram_after, selected
    threshold = getattr(view, "threshold", None)
    if threshold is not None and math.isfinite(threshold):
        title += f" (θ = {threshold:.4g})"
    st.plotly_chart(charts.weight_histogram(before, after, None, log_y=log_y, title=title),
                    width="stretch", key="prune_histogram")
    st.plotly_chart(
        charts.sparsity_bars(layer_names, [view.layers[n].zeros for n in layer_names],
                             [view.layers[n].parameters for n in layer_names]),
        width="stretch", key="prune_bars",
    )


@st.fragment
def live_view() -> None:
    """Controls and the charts they drive: a slider move reruns only this part.

    Magnitude pruning alone is drawn from an exact preview first (a binary search per bin);
    the real compression then fills in sizes, the metric and the sparsity map.
    """
    left, right = st.columns([1, 3], gap="large")
    with left:
        state.set_section("prune", prune_controls())
        layer_names = list(model.compressible)
        selected = st.selectbox("Layer for the histogram and map", ["all layers"] + layer_names, key="prune_layer")
        log_y = st.toggle("Log scale (counts)", value=True, key="prune_log_y",
                          help="Pruned weights pile up in the zero bin; a log scale keeps the rest visible.")
        controls.recipe_box()
    with right:
        numbers = st.container()
        preview = state.pruning_preview(choice)
        if preview is not None:
            draw_histogram_and_bars(preview, layer_names, selected, log_y)
        result = controls.compress_current(choice)
        if result is None:
            return
        if preview is None:
            draw_histogram_and_bars(controls.report_view(result.report), layer_names, selected, log_y)
        map_layer = result.report.layer(selected if selected != "all layers" else layer_names[0]) if layer_names else None
        if map_layer is not None:
            # The report's map has up to 256 × 256 tiles; 96 × 96 reads the same on screen and
            # keeps a slider move's websocket traffic small on large layers.
            display_map = sparsity_map(result.module.state_dict()[map_layer.name], max_tiles=DISPLAY_TILES)
            st.plotly_chart(charts.sparsity_heatmap(display_map, f"Sparsity map: {map_layer.name}"),
                            width="stretch", key="prune_map")
            if len(map_layer.shape) == 4:
                grid = charts.kernels_of(result.module.state_dict()[map_layer.name])
                st.plotly_chart(charts.kernel_grid(grid, f"Kernels of {map_layer.name} (blank = pruned)"),
                                width="stretch", key="prune_kernels")
        with numbers:
            controls.size_and_metric_row(result, choice)


live_view()

with st.expander("Per-layer overrides"):
    st.caption("Give a layer its own amount, or switch pruning off for it. Empty cells follow the settings above.")
    overrides = state.recipe().get("overrides", {})
    rows = pd.DataFrame(
        [
            {
                "layer": name,
                "prune": (overrides.get(name, {}).get("prune", {}) is not None) if name in overrides else True,
                "amount": (overrides.get(name, {}).get("prune") or {}).get("amount"),
            }
            for name in model.compressible
        ]
    )
    edited = st.data_editor(
        rows, hide_index=True, width="stretch", key="prune_overrides", disabled=["layer"],
        column_config={
            "prune": st.column_config.CheckboxColumn("prune this layer"),
            "amount": st.column_config.NumberColumn("own amount", min_value=0.0, max_value=1.0, step=0.05),
        },
    )
    state.set_prune_overrides(
        own_amounts={row.layer: float(row.amount) for row in edited.itertuples() if row.prune and not pd.isna(row.amount)},
        switched_off={row.layer for row in edited.itertuples() if not row.prune},
    )
