"""Quantization page: how many distinct values the weights keep, and what rounding costs."""
import streamlit as st

from compression.recipe import CALIBRATED_SCHEME_BITS, CALIBRATED_SCHEMES, FLOAT_FORMATS, SCHEME_BITS
from ui import calibrated_run, charts, controls, navigation, state, teaching
from ui.text import t
from ui.text.engine_text import stored_scheme

SCHEMES = ["off", "linear", "pow2", "kmeans", *CALIBRATED_SCHEMES, *FLOAT_FORMATS]
BITS = {**SCHEME_BITS, **CALIBRATED_SCHEME_BITS}
GROUP_SIZES = [16, 32, 64, 128, 256]

navigation.require_navigation()
st.title(t("quantization.title"))
st.markdown(t("quantization.intro"))
st.latex(t("quantization.formula"))

choice, model = controls.load_current_model()
controls.warn_if_nothing_compressible(model)
section = state.recipe().get("quantize") or {}
# A first visit starts at 8-bit linear, close to lossless, with the bits slider ready to move.
current_scheme = section.get("format") if section.get("scheme") == "float" else section.get("scheme", "linear")


def scheme_name(scheme: str) -> str:
    return t(f"quantization.schemes.{scheme}")


def quantize_controls() -> dict | None:
    """The widgets of the quantize section; returns the section (None: quantization off)."""
    scheme = controls.choose(t("quantization.scheme"), SCHEMES, "quantize_scheme", current_scheme,
                             format_func=scheme_name)
    if scheme == "off":
        return None
    if scheme in FLOAT_FORMATS:
        return {"scheme": "float", "format": scheme}
    bits = st.slider(t("quantization.bits"), 1, 16, key=controls.seed("quantize_bits", int(section.get("bits", 8))))
    low, high = BITS[scheme]
    if not low <= bits <= high:
        clamped = min(max(bits, low), high)
        st.warning(t("quantization.bits_out_of_range", scheme=scheme_name(scheme), low=low, high=high, clamped=clamped))
        bits = clamped
    new = {"scheme": scheme, "bits": bits}
    if scheme == "kmeans":
        return new
    granularities = {"linear": ["per_tensor", "per_channel", "per_group"], "pow2": ["per_tensor", "per_channel"]}.get(
        scheme, ["per_channel", "per_group"])  # GPTQ and AWQ: a grid per row or per group of a row
    new["granularity"] = controls.choose(
        t("quantization.granularity"), granularities, "quantize_granularity",
        section.get("granularity", "per_channel"), format_func=lambda name: t(f"quantization.granularities.{name}"),
    )
    if new["granularity"] == "per_group":
        new["group_size"] = controls.choose(t("quantization.group_size"), GROUP_SIZES,
                                            "quantize_group_size", section.get("group_size", 64))
    if (scheme == "linear" and bits > 1) or scheme in CALIBRATED_SCHEMES:
        new["symmetric"] = st.toggle(t("quantization.symmetric"), key=controls.seed("quantize_symmetric", section.get("symmetric", True)))
    elif scheme == "linear":
        st.caption(t("quantization.binarisation"))
    if scheme == "gptq":
        new["act_order"] = st.toggle(t("quantization.act_order"),
                                     key=controls.seed("quantize_act_order", section.get("act_order", False)))
    return new


def draw_result(selected: str, log_y: bool) -> None:
    """The size row, the chosen layer's histogram on its grid, and SQNR per layer."""
    scheme = (state.recipe().get("quantize") or {}).get("scheme")
    if scheme in CALIBRATED_SCHEMES:
        calibrated_run.explain(scheme)
    result = calibrated_run.compressed(choice, model, "quantize")
    if result is None or not result.report.layers:
        return
    controls.size_and_metric_row(result.report, controls.live_scores(choice, controls.report_recipe_json(result)))
    layer = result.report.layer(selected)
    levels = layer.levels.numpy() if layer.levels is not None else None
    widest = layer.scheme.startswith("linear") or layer.scheme == "pow2"  # a grid per channel: the widest is drawn
    grid_note = "" if levels is None else t("quantization.levels_widest" if widest else "quantization.levels", count=len(levels))
    st.plotly_chart(
        charts.weight_histogram(layer.histogram_before, layer.histogram_after, levels, log_y=log_y,
                                title=t("quantization.histogram_title", layer=selected, scheme=stored_scheme(layer.scheme),
                                        bits=layer.bits, levels=grid_note)),
        width="stretch", key="quantize_histogram",
    )
    if levels is None and layer.scheme not in ("fp32",):
        st.caption(t("quantization.too_fine"))
    st.plotly_chart(charts.sqnr_bars(result.report.layers), width="stretch", key="quantize_sqnr")


@st.fragment
def live_view() -> None:
    formulas = st.container()  # full width above the columns: a formula on the grid needs the room
    left, right = st.columns([1, 3], gap="large")
    with left:
        chosen = quantize_controls()
        state.set_section("quantize", chosen)
        calibrated_run.calibration_row("quantize", model)
        selected = st.selectbox(t("quantization.layer"), list(model.compressible), key="quantize_layer")
        log_y = st.toggle(t("quantization.log_scale"), value=False, key="quantize_log_y")
        controls.recipe_box("quantize")
    with formulas:
        teaching.formulas_box(teaching.quantization_topics(chosen), "quantize_formulas")
    with right:
        draw_result(selected, log_y)
    teaching.plain_pytorch_box("quantize", model, choice.model_id)


live_view()
controls.numbers_explained(model)
teaching.mistakes_box(["uniform_pow2", "fp16_divide"], "quantize_mistakes")
