"""Quantization page: how many distinct values the weights keep, and what rounding costs."""
import streamlit as st

from compression.recipe import FLOAT_FORMATS, SCHEME_BITS
from ui import charts, controls, state

SCHEMES = ["off", "linear", "pow2", "kmeans", *FLOAT_FORMATS]
SCHEME_NAMES = {
    "off": "off (float32)", "linear": "linear (uniform grid)", "pow2": "power of two (log)",
    "kmeans": "k-means (weight sharing)", "fp16": "fp16", "bf16": "bf16",
    "fp8_e4m3": "fp8 e4m3", "fp8_e5m2": "fp8 e5m2",
}
GROUP_SIZES = [16, 32, 64, 128, 256]

state.require_navigation()
st.title("Quantization")
st.markdown(
    "Quantization stores each weight as a small integer code. **Linear**: codes on an evenly spaced grid "
    "with step *s* (the scale) and offset *z* (the zero point), per tensor, per output channel or per "
    "group of weights; **symmetric** grids are centred on zero. **Power of two**: every weight becomes "
    "±2ᵏ or 0, so a multiply is a shift. **k-means**: 2ᵇ shared values fitted to the weights. "
    "**Low-precision floats** are plain casts. Settings here combine with the pruning page into one recipe: "
    "pruned weights stay exactly zero."
)
st.latex(r"q = \mathrm{clamp}\!\left(\mathrm{round}\!\left(\tfrac{w}{s}\right) + z,\ q_{\min},\ q_{\max}\right)"
         r"\qquad w' = (q - z)\, s \qquad s_{\text{sym}} = \frac{\max|w|}{2^{b-1}-1}")

choice, model = controls.load_current_model()
controls.warn_if_nothing_compressible(model)
section = state.recipe().get("quantize") or {}
# A first visit starts at 8-bit linear, close to lossless, with the bits slider ready to move.
current_scheme = section.get("format") if section.get("scheme") == "float" else section.get("scheme", "linear")


def quantize_controls() -> dict | None:
    """The widgets of the quantize section; returns the section (None: quantization off)."""
    scheme = controls.choose("Scheme", SCHEMES, "quantize_scheme", current_scheme, format_func=SCHEME_NAMES.get)
    if scheme == "off":
        return None
    if scheme in FLOAT_FORMATS:
        return {"scheme": "float", "format": scheme}
    bits = st.slider("Bits per weight", 1, 16, key=controls.seed("quantize_bits", int(section.get("bits", 8))))
    low, high = SCHEME_BITS[scheme]
    if not low <= bits <= high:
        clamped = min(max(bits, low), high)
        st.warning(f"{SCHEME_NAMES[scheme]} takes {low} to {high} bits; using {clamped}.")
        bits = clamped
    new = {"scheme": scheme, "bits": bits}
    if scheme == "kmeans":
        return new
    granularities = ["per_tensor", "per_channel"] + (["per_group"] if scheme == "linear" else [])
    new["granularity"] = controls.choose(
        "Granularity (one scale per …)", granularities, "quantize_granularity",
        section.get("granularity", "per_channel"), format_func=lambda g: g.replace("per_", "per "),
    )
    if new["granularity"] == "per_group":
        new["group_size"] = controls.choose("Group size (weights along the input)", GROUP_SIZES,
                                            "quantize_group_size", section.get("group_size", 64))
    if scheme == "linear" and bits > 1:
        new["symmetric"] = st.toggle("Symmetric (zero point 0)", key=controls.seed("quantize_symmetric", section.get("symmetric", True)))
    elif scheme == "linear":
        st.caption("1 bit is binarisation: w' = sign(w) · mean|w| per group.")
    return new


@st.fragment
def live_view() -> None:
    left, right = st.columns([1, 3], gap="large")
    with left:
        state.set_section("quantize", quantize_controls())
        selected = st.selectbox("Layer for the histogram", list(model.compressible), key="quantize_layer")
        log_y = st.toggle("Log scale (counts)", value=False, key="quantize_log_y")
        controls.recipe_box("quantize")
    with right:
        result = controls.compress_current(choice)
        if result is None or not result.report.layers:
            return
        controls.size_and_metric_row(result, controls.live_scores(result, choice))
        layer = result.report.layer(selected)
        levels = layer.levels.numpy() if layer.levels is not None else None
        grid_note = "" if levels is None else f", {len(levels)} levels" + (" (grid of the widest channel)" if layer.scheme.startswith("linear") or layer.scheme == "pow2" else "")
        st.plotly_chart(
            charts.weight_histogram(layer.histogram_before, layer.histogram_after, levels, log_y=log_y,
                                    title=f"{selected}: {layer.scheme}, {layer.bits} bits{grid_note}"),
            width="stretch", key="quantize_histogram",
        )
        if levels is None and layer.scheme not in ("fp32",):
            st.caption("The grid of fp16/bf16 is too fine to draw: thousands of levels in this range.")
        st.plotly_chart(charts.sqnr_bars(result.report.layers), width="stretch", key="quantize_sqnr")


live_view()
controls.numbers_explained(model)
