"""Trade-offs page: a sweep of amounts × bits, metric against size, and the Pareto front."""
import streamlit as st

import compression
from compression.workflows.sweep import SWEEP_SCHEMES
from ui import cache, calibrated_run, charts, controls, navigation, state, stores
from ui.model_ids import ModelChoice
from ui.text import t

AMOUNT_CHOICES = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
BIT_CHOICES = [1, 2, 3, 4, 5, 6, 8, 12, 16, 32]

navigation.require_navigation()
st.title(t("tradeoffs.title"))
st.markdown(t("tradeoffs.intro"))
st.latex(t("tradeoffs.formula"))

choice, model = controls.load_current_model()
controls.require_evaluation(model, t("tradeoffs.needs_evaluation"))

# Widget values vanish when the page is left; the chosen ranges live in their own store.
ranges = stores.SWEEP_RANGES
for widget, default in {"sweep_amounts": [0.0, 0.5, 0.7, 0.9], "sweep_bits": [32, 8, 4, 2], "sweep_schemes": ["linear"]}.items():
    ranges.setdefault(widget, default)


def keep_range(key: str) -> None:
    ranges.put(key, st.session_state[key])


columns = st.columns(3)
amounts = columns[0].multiselect(t("tradeoffs.amounts"), AMOUNT_CHOICES, key=controls.seed("sweep_amounts", ranges["sweep_amounts"]),
                                 on_change=keep_range, args=("sweep_amounts",))
bits = columns[1].multiselect(t("tradeoffs.bits"), BIT_CHOICES, key=controls.seed("sweep_bits", ranges["sweep_bits"]),
                              on_change=keep_range, args=("sweep_bits",))
schemes = columns[2].multiselect(t("tradeoffs.schemes"), list(SWEEP_SCHEMES), key=controls.seed("sweep_schemes", ranges["sweep_schemes"]),
                                 format_func=lambda name: t(f"tradeoffs.sweep_schemes.{name}"), on_change=keep_range, args=("sweep_schemes",))
grid_key = (choice, tuple(sorted(amounts)), tuple(sorted(bits)), tuple(schemes), state.recipe_json())
sweeps = stores.SWEEPS
point_cache = stores.SWEEP_MEASUREMENTS

if st.button(t("tradeoffs.run"), type="primary", disabled=not (amounts and bits and schemes)):
    progress = st.progress(0.0, text=t("tradeoffs.starting"))

    def report_progress(done: int, total: int, _: str) -> None:
        progress.progress(done / max(total, 1), text=t("tradeoffs.configurations", done=done, total=total))

    try:
        sweeps.put(grid_key, compression.sweep(
            model, sorted(amounts), sorted(bits), schemes, state.recipe(),
            cache=point_cache.setdefault(choice, {}), progress=report_progress,
        ))
    except compression.CompressionError as error:
        st.error(t("tradeoffs.stopped", error=error))
    progress.empty()

def other_methods(choice: ModelChoice) -> list[dict]:
    """This session's gradual-pruning runs and tolerance searches on the model, as chart points
    beside the one-shot sweep (same axes: encoded bytes and the held-out metric)."""
    points = []
    for (model_choice, schedule, *_), run in stores.GRADUAL_RUNS.items():
        if model_choice == choice:
            gradual = run["arms"][0]  # compare_gradual's first arm, packed like the others
            points.append({"label": t("gradual.method_gradual"), "encoded_bytes": gradual.encoded_bytes,
                           "value": gradual.value,
                           "detail": t("tradeoffs.gradual_detail", final=schedule.final, steps=schedule.steps)})
    for (model_choice, tolerance, per_layer), found in stores.SEARCHES.items():
        if model_choice == choice:
            accepted = found.steps[found.steps["accepted"] & (found.steps["amount"] == found.amount)].iloc[-1]
            points.append({"label": t("tradeoffs.searched"), "encoded_bytes": int(accepted["encoded_bytes"]),
                           "value": found.value,
                           "detail": t("tradeoffs.search_detail_per_layer" if per_layer else "tradeoffs.search_detail",
                                       tolerance=tolerance, amount=found.amount)})
    for (model_choice, config), run in stores.DISTILLATION_RUNS.items():
        if model_choice == choice:
            for name, label in (("with", t("tradeoffs.distilled")), ("without", t("tradeoffs.labels_only"))):
                points.append({"label": label, "encoded_bytes": run["encoded"][name], "value": run[name].value,
                               "detail": t("tradeoffs.student_detail", width=config.width, temperature=config.temperature,
                                           alpha=config.alpha if name == "with" else 0)})
    return points


frame = sweeps.get(grid_key)
if frame is None:
    st.info(t("tradeoffs.not_run"))
    st.stop()

current = None
result = calibrated_run.compressed(choice, model, "tradeoffs")
if result is not None:
    scores = cache.evaluation(choice.model_id, choice.data_id, controls.report_recipe_json(result))
    current = (result.report.encoded_bytes, scores["value"])
metric = controls.metric_label(frame["metric"].iloc[0])
st.plotly_chart(charts.tradeoff_chart(frame, metric, current, other_methods(choice), axis=controls.metric_axis(frame["metric"].iloc[0])),
                width="stretch", key="sweep_chart")
shown = frame.drop(columns=["recipe", "metric"]).rename(columns={"value": metric})
st.dataframe(shown, hide_index=True, width="stretch")
st.download_button(t("tradeoffs.download"), frame.to_csv(index=False), file_name=f"{choice.label}-sweep.csv", mime="text/csv")
