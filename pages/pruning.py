"""Pruning page: which weights become zero, and what that does to the weights and the metric."""
import math
from collections.abc import Callable

import pandas as pd
import streamlit as st
import torch

from compression.output_axes import CHANNELS_ON_AXIS_0
from compression.recipe import CALIBRATED_PRUNE_METHODS, METHOD_SCOPES
from compression.stats import sparsity_map
from ui import calibrated_run, charts, controls, navigation, state, teaching
from ui.text import t

METHODS = ["off", "magnitude", "random", "structured", "n:m", *CALIBRATED_PRUNE_METHODS]
N_M_PATTERNS = ["2:4", "1:4", "4:8", "1:2", "2:8"]
DISPLAY_TILES = 96
ALL_LAYERS = ""  # the layer selector's value for every layer at once (no layer has an empty name)
VIEWS = ["bars", "map", "kernels"]

navigation.require_navigation()
st.title(t("pruning.title"))
st.markdown(t("pruning.intro"))
st.latex(t("pruning.formula"))

choice, model = controls.load_current_model()
controls.warn_if_nothing_compressible(model)
recipe = state.recipe()
section = recipe.get("prune") or {}
with st.spinner(t("pruning.sorting_weights")):  # once per model: about 5 s at 135M weights
    weight_limit = state.pruning_index(choice).largest or 1.0  # largest |w|, from the cached sorted weights


def prune_settings() -> tuple[dict | None, str | None]:
    """Every prune widget but the cut slider, in one row.

    Returns the section without its cut (None: pruning off) and which cut the slider sets:
    "amount", "threshold" or None (N:M has no slider).
    """
    method_column, cut_column, scope_column, extra_column = st.columns(4)
    with method_column:
        # A first visit starts at magnitude pruning with nothing removed: the slider is right there.
        method = controls.choose(t("pruning.method"), METHODS, "prune_method",
                                 section.get("method", "magnitude" if not section else "off"),
                                 format_func=lambda name: t(f"pruning.methods.{name}"))
    if method == "off":
        return None, None
    if method == "n:m":
        with cut_column:
            pattern = controls.choose(
                t("pruning.pattern"), N_M_PATTERNS, "prune_pattern",
                f"{section.get('n', 2)}:{section.get('m', 4)}",
            )
        n, m = (int(part) for part in pattern.split(":"))
        return {"method": "n:m", "n": n, "m": m}, None
    if method in CALIBRATED_PRUNE_METHODS:
        return calibrated_settings(method, cut_column, scope_column)
    cut_options = ["amount", "threshold"] if method in ("magnitude", "structured") else ["amount"]
    with cut_column:
        cut = st.radio(t("pruning.cut"), cut_options, horizontal=True, format_func=lambda name: t(f"pruning.cuts.{name}"),
                       key=controls.seed("prune_cut", "threshold" if "threshold" in section and len(cut_options) > 1 else "amount"))
    # The recipe as it is now (a fragment rerun does not re-read ``section``): the scope kept while
    # θ hides its control, to come back when the cut is an amount again.
    scope = (state.recipe().get("prune") or {}).get("scope", section.get("scope", "global"))
    scope = scope if scope in ("global", "layer") else "global"  # Wanda's "row" is not one of these
    if cut == "amount":  # by θ, every layer has the same cut: the scope would change nothing
        with scope_column:
            scope = st.radio(t("pruning.scope"), ["global", "layer"], horizontal=True,
                             format_func=lambda name: t(f"pruning.scopes.{name}"), key=controls.seed("prune_scope", scope))
    settings = {"method": method, "scope": scope}
    with extra_column:
        if method == "structured":
            settings["norm"] = st.radio(t("pruning.norm"), ["l1", "l2"], horizontal=True,
                                        key=controls.seed("prune_norm", section.get("norm", "l1")))
        if method == "random":
            settings["seed"] = int(st.number_input(t("pruning.seed"), 0, 2**31 - 1, step=1, key=controls.seed("prune_seed", section.get("seed", 0))))
    return settings, cut


def calibrated_settings(method: str, cut_column, scope_column) -> tuple[dict, str | None]:
    """Wanda's and SparseGPT's widgets: an amount (Wanda's within each output row, the layer or
    all layers) or an N:M pattern, as the recipe takes them."""
    with cut_column:
        cut = st.radio(t("pruning.cut"), ["amount", "pattern"], horizontal=True,
                       format_func=lambda name: t(f"pruning.cuts.{name}"),
                       key=controls.seed("prune_calibrated_cut", "pattern" if "n" in section else "amount"))
    if cut == "pattern":
        with scope_column:
            pattern = controls.choose(t("pruning.pattern"), N_M_PATTERNS, "prune_pattern",
                                      f"{section.get('n', 2)}:{section.get('m', 4)}")
        n, m = (int(part) for part in pattern.split(":"))
        return {"method": method, "n": n, "m": m}, None
    settings = {"method": method}
    scopes = METHOD_SCOPES[method]
    if len(scopes) > 1:
        with scope_column:
            settings["scope"] = st.radio(
                t("pruning.scope"), scopes, horizontal=True, format_func=lambda scope: t(f"pruning.scopes.{scope}"),
                key=controls.seed(f"prune_{method}_scope", section.get("scope") if section.get("method") == method else scopes[0]),
            )
    return settings, "amount"


def cut_slider(method: str, cut: str) -> dict:
    """The amount or θ slider: the one control a student drags."""
    if cut == "amount":
        return {"amount": st.slider(
            t("pruning.amount_weights" if method != "structured" else "pruning.amount_channels"),
            0.0, 1.0, step=0.01, key=controls.seed("prune_amount", float(section.get("amount", 0.0))),
        )}
    step = 10 ** math.floor(math.log10(weight_limit / 200)) if weight_limit > 0 else 0.001
    return {"threshold": st.slider(
        t("pruning.threshold"),
        0.0, float(weight_limit), step=step, format="%.4f",
        key=controls.seed("prune_threshold", min(float(section.get("threshold", weight_limit / 10)), weight_limit)),
    )}


def draw_histogram(view, selected: str, log_y: bool) -> None:
    """The before/after histogram, from a preview or a full report (same numbers)."""
    if selected == ALL_LAYERS:
        before, after, title = view.histogram_before, view.histogram_after, t("pruning.all_weights")
    else:
        layer = view.layers[selected]
        before, after, title = layer.histogram_before, layer.histogram_after, selected
    threshold = getattr(view, "threshold", None)
    if threshold is not None and math.isfinite(threshold):
        title = t("pruning.with_threshold", title=title, threshold=threshold)
    st.plotly_chart(charts.weight_histogram(before, after, None, log_y=log_y, title=title),
                    width="stretch", key="prune_histogram")


def draw_second_view(view, layer_names: list[str], selected: str, pruned_weight: Callable[[str], torch.Tensor]) -> None:
    """Per-layer sparsity, the sparsity map or the kernel grid, one at a time: a slider move
    redraws two charts rather than four. ``pruned_weight`` gives a layer's weight after pruning,
    output channels in rows."""
    map_name = selected if selected != ALL_LAYERS else layer_names[0]
    weight = pruned_weight(map_name)
    views = VIEWS if weight.ndim == 4 else VIEWS[:2]
    shown = st.segmented_control(t("pruning.view"), views, format_func=lambda name: t(f"pruning.views.{name}"),
                                 key=controls.seed("prune_view", views[0]), label_visibility="collapsed")
    if shown not in views:  # deselected, or the kernels of a layer that has none
        shown = views[0]
    if shown == views[0]:
        st.plotly_chart(
            charts.sparsity_bars(layer_names, [view.layers[n].zeros for n in layer_names],
                                 [view.layers[n].parameters for n in layer_names]),
            width="stretch", key="prune_bars",
        )
    if shown == views[1]:
        # The report's map has up to 256 × 256 tiles; 96 × 96 reads the same on screen and
        # keeps a slider move's websocket traffic small on large layers.
        st.plotly_chart(charts.sparsity_heatmap(sparsity_map(weight, max_tiles=DISPLAY_TILES), map_name),
                        width="stretch", key="prune_map")
    if shown == "kernels":
        st.plotly_chart(charts.kernel_grid(charts.kernels_of(weight), t("pruning.kernels_title", layer=map_name)),
                        width="stretch", key="prune_kernels")


@st.fragment
def live_view() -> None:
    """The settings row: changing one reruns this part (and the charts below it)."""
    settings, cut = prune_settings()
    if settings is not None and settings["method"] in CALIBRATED_PRUNE_METHODS:
        calibrated_run.explain(settings["method"])
    teaching.formulas_box(teaching.pruning_topics(settings, cut), "prune_formulas")
    layer_column, log_column = st.columns([3, 1], vertical_alignment="bottom")
    layer_names = list(model.compressible)
    selected = layer_column.selectbox(t("pruning.layer"), [ALL_LAYERS] + layer_names, key="prune_layer",
                                      format_func=lambda name: t("pruning.all_layers") if name == ALL_LAYERS else name)
    log_y = log_column.toggle(t("pruning.log_scale"), value=True, key="prune_log_y")
    live_charts(settings, cut, layer_names, selected, log_y)


@st.fragment
def live_charts(settings: dict | None, cut: str | None, layer_names: list[str], selected: str, log_y: bool) -> None:
    """The cut slider and what it drives: a move reruns only this part, the smallest a move needs.

    Magnitude pruning alone is drawn from the exact preview (binary searches in the sorted
    weights): histogram, sizes and sparsity map alike, even at 135M weights. Everything else
    waits for the compression. The metric comes last, so that it reaches the browser after the
    histogram rather than competing with it: on simplenet that order alone takes a move from
    1.7x to about 1.3x the floor app's time.
    """
    if settings is not None and cut is not None:
        settings = {**settings, **cut_slider(settings["method"], cut)}
    state.set_section("prune", settings)
    calibrated_run.calibration_row("prune", model)
    numbers = st.container()
    histogram_column, view_column = st.columns([3, 2], gap="medium")
    preview = state.pruning_preview(choice)
    if preview is not None:
        with histogram_column:
            draw_histogram(preview, selected, log_y)
        recipe_json = state.recipe_json()
        sizes, scores = state.pruning_sizes(choice), controls.live_scores(choice, recipe_json)
        view = preview

        def pruned_weight(name: str) -> torch.Tensor:
            return state.pruning_index(choice).pruned(name, preview.layers[name].threshold)
    else:
        result = calibrated_run.compressed(choice, model, "prune")
        if result is None:  # not run yet (its button is shown) or refused
            controls.recipe_box("prune")
            teaching.plain_pytorch_box("prune", model, choice.model_id)
            return
        sizes, scores = result.report, controls.live_scores(choice, controls.report_recipe_json(result))
        view = controls.report_view(result.report)
        with histogram_column:
            draw_histogram(view, selected, log_y)

        def pruned_weight(name: str) -> torch.Tensor:
            # Output channels in rows, as the report's own maps: a ConvTranspose or Conv1D keeps them on axis 1.
            return model.output_axes.get(name, CHANNELS_ON_AXIS_0).channels_first(result.module.state_dict()[name])
    if layer_names:
        with view_column:
            draw_second_view(view, layer_names, selected, pruned_weight)
    with numbers:
        controls.size_and_metric_row(sizes, scores)
    controls.recipe_box("prune")
    teaching.plain_pytorch_box("prune", model, choice.model_id)


live_view()
controls.numbers_explained(model)
st.caption(t("pruning.zero_bin_note"))
teaching.mistakes_box(["absolute_value", "prune_module"], "prune_mistakes")


def overrides_table() -> None:
    """Per-layer amounts and switches, written into the recipe's overrides."""
    st.caption(t("pruning.overrides_note"))
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
            "layer": st.column_config.TextColumn(t("pruning.overrides_layer")),
            "prune": st.column_config.CheckboxColumn(t("pruning.overrides_prune")),
            "amount": st.column_config.NumberColumn(t("pruning.overrides_amount"), min_value=0.0, max_value=1.0, step=0.05),
        },
    )
    state.set_prune_overrides(
        own_amounts={row.layer: float(row.amount) for row in edited.itertuples() if row.prune and not pd.isna(row.amount)},
        switched_off={row.layer for row in edited.itertuples() if not row.prune},
    )


# Drawn only while open: a data editor is heavy for the browser to keep on the page.
overrides_box = st.expander(t("pruning.overrides"), key="prune_overrides_box", on_change="rerun")
if overrides_box.open:
    with overrides_box:
        overrides_table()
