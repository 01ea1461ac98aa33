"""Gradual pruning page: Zhu & Gupta's schedule, pruning interleaved with fine-tuning."""
import pandas as pd
import streamlit as st

import compression
from compression.workflows.gradual import AgpSchedule, GradualStep, training_data
from compression.workflows.gradual_comparison import (
    GRADUAL,
    ONE_SHOT,
    ONE_SHOT_FINE_TUNED,
    compare_gradual,
    pruning_of,
    without_pruning,
)
from ui import charts, controls, navigation, state, stores, table_headers
from ui.text import t
from ui.text.engine_text import localized

navigation.require_navigation()
st.title(t("gradual.title"))
st.markdown(t("gradual.intro"))
st.latex(t("gradual.formula"))

choice, model = controls.load_current_model()
controls.require_training_data(choice, model, t("gradual.needs_training"))

columns = st.columns(4)
initial = columns[0].slider(t("gradual.initial"), 0.0, 0.9, 0.0, 0.05, key="agp_initial")
final = columns[1].slider(t("gradual.final"), 0.05, 0.99, 0.9, 0.01, key="agp_final")
steps = columns[2].slider(t("gradual.steps"), 1, 20, 6, key="agp_steps")
epochs = columns[3].slider(t("gradual.epochs"), 0, 5, 1, key="agp_epochs")
if initial > final:
    st.warning(t("gradual.initial_above_final", initial=initial, final=final))
    initial = final
schedule = AgpSchedule(initial, final, steps, epochs)
recipe = compression.Recipe.from_dict(state.recipe())
try:
    cut = pruning_of(recipe, final)
except compression.RecipeError as error:
    st.warning(t("gradual.cannot_compare", error=error))
    st.stop()

runs = stores.GRADUAL_RUNS  # (model, schedule, pruning, packing recipe) → finished run, kept across pages
run_key = (choice, schedule, cut, without_pruning(recipe).to_json())
chart = st.empty()


def draw(rows: list[GradualStep], key: str) -> None:
    chart.plotly_chart(charts.gradual_chart(schedule.planned(), rows, controls.metric_label(model.evaluation.metric)),
                       width="stretch", key=key)


draw(runs[run_key]["steps"] if run_key in runs else [], "agp_chart")
st.caption(t("gradual.saw_tooth"))
st.caption(t("gradual.planned", steps=steps + 1, epochs=epochs * (steps + 1), data=localized(training_data(model).description)))
st.caption(t("gradual.pruned_by", method=t(f"pruning.methods.{cut.method}"), scope=t(f"pruning.scopes.{cut.scope}")))

if st.button(t("gradual.run"), type="primary", key="agp_run"):
    progress = st.progress(0.0, text=t("gradual.starting"))
    done_steps: list[GradualStep] = []

    def report(done: int, total: int, arm: str, step: GradualStep) -> None:
        if arm != GRADUAL:
            return
        done_steps.append(step)
        text = t("gradual.progress", step=step.step, last=total - 2, sparsity=step.sparsity,
                 metric=controls.metric_label(model.evaluation.metric), value=step.value)
        if done == total - 1:  # the schedule is done: the fine-tuned one-shot control trains next
            text = t("gradual.control_progress", final=final, epochs=epochs * (steps + 1))
        progress.progress(done / total, text=text)
        draw(done_steps, f"agp_chart_step_{done}")

    comparison = compare_gradual(model, schedule, recipe, progress=report)
    runs.put(run_key, {"steps": comparison.gradual.steps, "arms": comparison.arms})
    progress.empty()
    st.rerun()

if run_key in runs:
    run = runs[run_key]
    method = t(f"pruning.methods.{cut.method}")
    labels = {GRADUAL: t("gradual.method_gradual"), ONE_SHOT: t("gradual.method_one_shot", method=method),
              ONE_SHOT_FINE_TUNED: t("gradual.method_one_shot_fine_tuned", method=method)}
    step_table = pd.DataFrame([vars(step) for step in run["steps"]])
    st.dataframe(step_table, hide_index=True, width="stretch",
                 column_config=table_headers.headers(step_table, model.evaluation.metric))
    st.dataframe(pd.DataFrame([
        {t("gradual.columns.method"): labels[arm.name], t("gradual.columns.sparsity"): arm.sparsity,
         controls.metric_label(model.evaluation.metric): arm.value, t("gradual.columns.epochs"): arm.epochs,
         t("gradual.columns.packed_bytes"): arm.file_bytes}
        for arm in run["arms"]
    ]), hide_index=True, width="stretch")
else:
    st.info(t("gradual.not_run"))
