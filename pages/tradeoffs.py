"""Trade-offs page: a sweep of amounts × bits, metric against size, and the Pareto front."""
import streamlit as st

from compression.workflows.sweep import SWEEP_SCHEMES
from ui import (background_runs, cache, calibrated_run, charts, controls, navigation, run_views, state, stores, sweep_pool,
                sweep_runs, table_headers)
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

# Widget values vanish when the page is left; the chosen ranges live in their own store. A new
# session (a reload mid-sweep) opens on the grid running on this model and recipe, if any.
ranges = stores.SWEEP_RANGES
running = sweep_runs.latest(model, state.recipe_json()) if not ranges.keys() else None
defaults = {"sweep_amounts": list(running.amounts), "sweep_bits": list(running.bits), "sweep_schemes": list(running.schemes)} \
    if running is not None else {"sweep_amounts": [0.0, 0.5, 0.7, 0.9], "sweep_bits": [32, 8, 4, 2], "sweep_schemes": ["linear"]}
for widget, default in defaults.items():
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
grid = sweep_runs.SweepGrid(tuple(sorted(amounts)), tuple(sorted(bits)), tuple(schemes), state.recipe_json())
grid_key = (choice, grid.amounts, grid.bits, grid.schemes, grid.base)
sweeps = stores.SWEEPS
point_cache = stores.SWEEP_MEASUREMENTS
followed = stores.SWEEP_RUNS
pool = sweep_pool.shared()


def draw_progress(run: background_runs.BackgroundRun, bar, chart, shown: int) -> int:
    """The run's progress into ``bar``; its chart into ``chart`` where points came since ``shown``
    of them were drawn. Returns the points drawn."""
    progress = run_views.progress_bar(
        run, bar, lambda done, total, left: t("tradeoffs.points", done=done, total=total, left=left))
    if progress is None:
        return shown
    if progress.done != shown and (frame := sweep_runs.partial_frame(grid, progress.measured)) is not None:
        chart.plotly_chart(charts.tradeoff_chart(frame, controls.metric_label(model.evaluation.metric), None,
                                                 axis=controls.metric_axis(model.evaluation.metric)),
                           width="stretch", key=f"sweep_partial_{progress.done}")
    return progress.done


def adopt(run: background_runs.BackgroundRun) -> None:
    """The finished run's table into the session, its points into the model's cache."""
    run_views.adopt(run, lambda frame: sweeps.put(grid_key, frame), point_cache.setdefault(choice, {}),
                   lambda error: t("tradeoffs.stopped", error=error))


run = sweep_runs.live(model, grid) or followed.get(grid_key)
journaled = sweep_runs.journaled(model, grid) if run is None or run.finished else {}
resumable = grid_key not in sweeps and 0 < len(journaled) < len(grid.recipes)
sweep_pool.describe(pool, sweep_pool.stays_here(choice, pool))
if st.button(t("tradeoffs.resume") if resumable else t("tradeoffs.run"), type="primary",
             disabled=not (amounts and bits and schemes)):
    run = sweep_runs.start(model, grid, pool, sweep_pool.travelling(choice, model, pool),
                           dict(point_cache.get(choice, {})))
    followed.put(grid_key, run)
    run_views.see_through(run, draw_progress, adopt, started_here=True)  # drawing the points as they come
elif run is not None and grid_key not in sweeps:
    followed.put(grid_key, run)
    run_views.see_through(run, draw_progress, adopt, started_here=False)


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
if frame is None and resumable:  # a run stopped (an error, a server restart): its points, and Resume above
    st.caption(t("tradeoffs.journaled", done=len(journaled), total=len(grid.recipes)))
    st.plotly_chart(charts.tradeoff_chart(sweep_runs.partial_frame(grid, journaled), controls.metric_label(model.evaluation.metric),
                                          None, axis=controls.metric_axis(model.evaluation.metric)),
                    width="stretch", key="sweep_journaled")
    st.stop()
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
shown = frame.drop(columns=["recipe", "metric"])
shown["scheme"] = shown["scheme"].map(lambda name: t(f"tradeoffs.sweep_schemes.{name}"))
st.dataframe(shown, hide_index=True, width="stretch", column_config=table_headers.headers(shown, frame["metric"].iloc[0]))
st.download_button(t("tradeoffs.download"), frame.to_csv(index=False), file_name=f"{choice.label}-sweep.csv", mime="text/csv")
