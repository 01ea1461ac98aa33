"""Gradual pruning page: Zhu & Gupta's schedule, pruning interleaved with fine-tuning."""
import pandas as pd
import streamlit as st

import compression
from compression.gradual import AgpSchedule, GradualStep, gradual_prune, training_data
from ui import charts, controls, state

state.require_navigation()
st.title("Gradual pruning")
st.markdown(
    "One-shot pruning removes weights and stops there. **Gradual** pruning removes a few, lets the "
    "network recover by training on its training split (the pruned weights held at zero), and repeats "
    "until the final sparsity. The sparsity follows the cubic schedule of Zhu & Gupta (2017): large steps "
    "while there is redundancy to remove, small ones near the end. Each step is scored on the held-out "
    "split; the last row compares with one-shot pruning to the same sparsity."
)
st.latex(r"s_k = s_f + (s_i - s_f)\left(1 - \frac{k}{n}\right)^3, \qquad k = 0, 1, \dots, n")

choice, model = controls.load_current_model()
controls.require_training_data(choice, model, "Gradual pruning fine-tunes on training data")

columns = st.columns(4)
initial = columns[0].slider("Initial sparsity (s_i)", 0.0, 0.9, 0.0, 0.05, key="agp_initial")
final = columns[1].slider("Final sparsity (s_f)", 0.05, 0.99, 0.9, 0.01, key="agp_final")
steps = columns[2].slider("Pruning steps (n)", 1, 20, 6, key="agp_steps")
epochs = columns[3].slider("Fine-tuning epochs per step", 0, 5, 1, key="agp_epochs")
if initial > final:
    st.warning(f"The initial sparsity ({initial:.2f}) is above the final one ({final:.2f}): using {final:.2f} for both.")
    initial = final
schedule = AgpSchedule(initial, final, steps, epochs)

runs = st.session_state.setdefault("agp_runs", {})  # (model, schedule) → finished run, kept across pages
run_key = (choice, schedule)
chart = st.empty()


def draw(rows: list[GradualStep], key: str) -> None:
    chart.plotly_chart(charts.gradual_chart(schedule.planned(), rows, controls.metric_label(model.evaluation.metric)),
                       width="stretch", key=key)


draw(runs[run_key]["steps"] if run_key in runs else [], "agp_chart")
st.caption(f"Planned: {steps + 1} pruning steps, {epochs * (steps + 1)} epochs of fine-tuning on "
           f"{training_data(model).description}.")

if st.button("Run gradual pruning", type="primary", key="agp_run"):
    progress = st.progress(0.0, text="Pruning step 0…")
    done_steps: list[GradualStep] = []

    def report(done: int, total: int, step: GradualStep) -> None:
        done_steps.append(step)
        progress.progress(done / total, text=f"step {step.step} of {total - 1}: sparsity {step.sparsity:.1%}, "
                                             f"{model.evaluation.metric} {step.value:.4f}")
        draw(done_steps, f"agp_chart_step_{done}")

    result = gradual_prune(model, schedule, progress=report)
    one_shot = compression.compress(model, {"prune": {"method": "magnitude", "amount": final, "scope": "global"}})
    packed = compression.compress(result.model, {}).report
    runs[run_key] = {
        "steps": result.steps,
        "gradual_bytes": packed.file_bytes,
        "gradual_encoded_bytes": packed.encoded_bytes,
        "one_shot_value": compression.evaluate(model, one_shot.module).value,
        "one_shot_bytes": one_shot.report.file_bytes,
    }
    progress.empty()
    st.rerun()

if run_key in runs:
    run = runs[run_key]
    last = run["steps"][-1]
    st.dataframe(pd.DataFrame([vars(step) for step in run["steps"]]), hide_index=True, width="stretch")
    st.dataframe(pd.DataFrame([
        {"method": "gradual (AGP + fine-tuning)", "sparsity": last.sparsity, controls.metric_label(model.evaluation.metric): last.value,
         "packed file (bytes)": run["gradual_bytes"]},
        {"method": "one-shot magnitude", "sparsity": final, controls.metric_label(model.evaluation.metric): run["one_shot_value"],
         "packed file (bytes)": run["one_shot_bytes"]},
    ]), hide_index=True, width="stretch")
else:
    st.info("Move the sliders to plan the schedule (the dashed line), then press **Run gradual pruning**. "
            "A finished run stays here when you switch pages.")
