"""Trade-offs page: a sweep of amounts × bits, metric against size, and the Pareto front."""
import streamlit as st

import compression
from compression.workflows.sweep import SWEEP_SCHEMES
from ui import cache, charts, controls, navigation, state, stores
from ui.model_ids import ModelChoice

AMOUNT_CHOICES = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
BIT_CHOICES = [1, 2, 3, 4, 5, 6, 8, 12, 16, 32]

navigation.require_navigation()
st.title("Trade-offs")
st.markdown(
    "Compress the model at every combination of pruning amount and bit-width, evaluate each, and plot "
    "the metric against the packed size. A point is on the **Pareto front** when no other point is both "
    "smaller and at least as good: those are the only recipes worth choosing. Pruning here is magnitude "
    "pruning with the scope of your current recipe (global by default); 32 bits means no quantization. "
    "The star is your current recipe from the Pruning and Quantization pages; diamonds and squares are "
    "this session's gradual-pruning runs, tolerance searches and distilled students of the same model."
)
st.latex(r"\text{Pareto}(p) \iff \nexists\, q:\ \text{size}(q) \le \text{size}(p) \wedge "
         r"\text{metric}(q) \ge \text{metric}(p),\ \text{one strictly}")

choice, model = controls.load_current_model()
controls.require_evaluation(model, "sweep it")

# Widget values vanish when the page is left; the chosen ranges live in their own store.
ranges = stores.SWEEP_RANGES
for widget, default in {"sweep_amounts": [0.0, 0.5, 0.7, 0.9], "sweep_bits": [32, 8, 4, 2], "sweep_schemes": ["linear"]}.items():
    ranges.setdefault(widget, default)


def keep_range(key: str) -> None:
    ranges.put(key, st.session_state[key])


columns = st.columns(3)
amounts = columns[0].multiselect("Amounts (fraction pruned)", AMOUNT_CHOICES, key=controls.seed("sweep_amounts", ranges["sweep_amounts"]),
                                 on_change=keep_range, args=("sweep_amounts",))
bits = columns[1].multiselect("Bits (32 = no quantization)", BIT_CHOICES, key=controls.seed("sweep_bits", ranges["sweep_bits"]),
                              on_change=keep_range, args=("sweep_bits",))
schemes = columns[2].multiselect("Schemes", list(SWEEP_SCHEMES), key=controls.seed("sweep_schemes", ranges["sweep_schemes"]),
                                 on_change=keep_range, args=("sweep_schemes",))
grid_key = (choice, tuple(sorted(amounts)), tuple(sorted(bits)), tuple(schemes), state.recipe_json())
sweeps = stores.SWEEPS
point_cache = stores.SWEEP_MEASUREMENTS

if st.button("Run sweep", type="primary", disabled=not (amounts and bits and schemes)):
    progress = st.progress(0.0, text="Starting…")

    def report_progress(done: int, total: int, _: str) -> None:
        progress.progress(done / max(total, 1), text=f"{done} of {total} configurations")

    try:
        sweeps.put(grid_key, compression.sweep(
            model, sorted(amounts), sorted(bits), schemes, state.recipe(),
            cache=point_cache.setdefault(choice, {}), progress=report_progress,
        ))
    except compression.CompressionError as error:
        st.error(f"The sweep stopped: {error}")
    progress.empty()

def other_methods(choice: ModelChoice) -> list[dict]:
    """This session's gradual-pruning runs and tolerance searches on the model, as chart points
    beside the one-shot sweep (same axes: encoded bytes and the held-out metric)."""
    points = []
    for (model_choice, schedule), run in stores.GRADUAL_RUNS.items():
        if model_choice == choice and "gradual_encoded_bytes" in run:
            points.append({"label": "gradual (AGP + fine-tuning)", "encoded_bytes": run["gradual_encoded_bytes"],
                           "value": run["steps"][-1].value, "detail": f"final sparsity {schedule.final:.2f}, {schedule.steps} steps"})
    for (model_choice, tolerance, per_layer), found in stores.SEARCHES.items():
        if model_choice == choice:
            accepted = found.steps[found.steps["accepted"] & (found.steps["amount"] == found.amount)].iloc[-1]
            points.append({"label": "searched within a tolerance", "encoded_bytes": int(accepted["encoded_bytes"]),
                           "value": found.value, "detail": f"tolerance {tolerance:.3f}, amount {found.amount:.2f}"
                           + (" per layer" if per_layer else "")})
    for (model_choice, config), run in stores.DISTILLATION_RUNS.items():
        if model_choice == choice:
            for name, label in (("with", "student, distilled"), ("without", "student, labels only")):
                points.append({"label": label, "encoded_bytes": run["encoded"][name], "value": run[name].value,
                               "detail": f"width {config.width}, T {config.temperature}, α {config.alpha if name == 'with' else 0}"})
    return points


frame = sweeps.get(grid_key)
if frame is None:
    st.info("Choose the ranges and press **Run sweep**. Results stay here when you switch pages.")
    st.stop()

current = None
result = controls.compress_current(choice)
if result is not None:
    scores = cache.evaluation(choice.model_id, choice.data_id, controls.report_recipe_json(result))
    current = (result.report.encoded_bytes, scores["value"])
metric = controls.metric_label(frame["metric"].iloc[0])
st.plotly_chart(charts.tradeoff_chart(frame, metric, current, other_methods(choice)), width="stretch", key="sweep_chart")
shown = frame.drop(columns=["recipe", "metric"]).rename(columns={"value": metric})
st.dataframe(shown, hide_index=True, width="stretch")
st.download_button("Download CSV", frame.to_csv(index=False), file_name=f"{choice.label}-sweep.csv", mime="text/csv")
