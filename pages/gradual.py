"""Gradual pruning page: Zhu & Gupta's schedule, pruning interleaved with fine-tuning."""
import pandas as pd
import streamlit as st

import compression
from compression.workflows.gradual import AgpSchedule, GradualStep, gradual_prune, training_data
from ui import charts, controls, navigation, stores
from ui.text import t

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

runs = stores.GRADUAL_RUNS  # (model, schedule) → finished run, kept across pages
run_key = (choice, schedule)
chart = st.empty()


def draw(rows: list[GradualStep], key: str) -> None:
    chart.plotly_chart(charts.gradual_chart(schedule.planned(), rows, controls.metric_label(model.evaluation.metric)),
                       width="stretch", key=key)


draw(runs[run_key]["steps"] if run_key in runs else [], "agp_chart")
st.caption(t("gradual.planned", steps=steps + 1, epochs=epochs * (steps + 1), data=training_data(model).description))

if st.button(t("gradual.run"), type="primary", key="agp_run"):
    progress = st.progress(0.0, text=t("gradual.starting"))
    done_steps: list[GradualStep] = []

    def report(done: int, total: int, step: GradualStep) -> None:
        done_steps.append(step)
        progress.progress(done / total, text=t("gradual.progress", step=step.step, last=total - 1, sparsity=step.sparsity,
                                               metric=model.evaluation.metric, value=step.value))
        draw(done_steps, f"agp_chart_step_{done}")

    result = gradual_prune(model, schedule, progress=report)
    one_shot = compression.compress(model, {"prune": {"method": "magnitude", "amount": final, "scope": "global"}})
    packed = compression.compress(result.model, {}).report
    runs.put(run_key, {
        "steps": result.steps,
        "gradual_bytes": packed.file_bytes,
        "gradual_encoded_bytes": packed.encoded_bytes,
        "one_shot_value": compression.evaluate(model, one_shot.module).value,
        "one_shot_bytes": one_shot.report.file_bytes,
    })
    progress.empty()
    st.rerun()

if run_key in runs:
    run = runs[run_key]
    last = run["steps"][-1]
    st.dataframe(pd.DataFrame([vars(step) for step in run["steps"]]), hide_index=True, width="stretch")
    st.dataframe(pd.DataFrame([
        {t("gradual.columns.method"): t("gradual.method_gradual"), t("gradual.columns.sparsity"): last.sparsity,
         controls.metric_label(model.evaluation.metric): last.value, t("gradual.columns.packed_bytes"): run["gradual_bytes"]},
        {t("gradual.columns.method"): t("gradual.method_one_shot"), t("gradual.columns.sparsity"): final,
         controls.metric_label(model.evaluation.metric): run["one_shot_value"], t("gradual.columns.packed_bytes"): run["one_shot_bytes"]},
    ]), hide_index=True, width="stretch")
else:
    st.info(t("gradual.not_run"))
