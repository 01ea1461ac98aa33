"""Distillation page: a small student trained on the teacher's soft targets, against labels alone."""
import pandas as pd
import streamlit as st

import compression
from compression.distillation import DistillConfig, EpochRecord, compare_distillation, student_for
from ui import charts, controls, state

state.require_navigation()
st.title("Distillation")
st.markdown(
    "A network much smaller than the teacher is trained to match the teacher's **soft targets**: its "
    "output probabilities softened by a temperature T, which say not just which digit but how much each "
    "other digit looks like it. The loss mixes them with the true labels by α (Hinton, Vinyals & Dean, 2015). "
    "The same student is also trained on the labels alone (α = 0), same seed, so the difference is the teacher's."
)
st.latex(r"\mathcal{L} = \alpha\, T^2\, \mathrm{KL}\!\left(\mathrm{softmax}(z_t/T) \,\|\, \mathrm{softmax}(z_s/T)\right)"
         r" + (1-\alpha)\, \mathrm{CE}(z_s, y)")

choice, teacher = controls.load_current_model()
controls.require_training_data(choice, teacher, "Distillation trains on labelled training data")

columns = st.columns(4)
width = columns[0].select_slider("Student width (hidden units)", [4, 8, 16, 32, 64, 128], value=16, key="distill_width")
temperature = columns[1].slider("Temperature T", 1.0, 10.0, 4.0, 0.5, key="distill_temperature")
alpha = columns[2].slider("α (weight of the soft targets)", 0.05, 1.0, 0.7, 0.05, key="distill_alpha")
epochs = columns[3].slider("Epochs", 1, 40, DistillConfig.epochs, key="distill_epochs")
config = DistillConfig(temperature=temperature, alpha=alpha, epochs=epochs, width=width)
st.caption(f"Adam, learning rate {config.learning_rate}, batch {config.batch_size}, seed {config.seed}. Students need "
           "enough epochs to converge before the soft targets pay off: with few, the labels alone often win.")

teacher_parameters = sum(p.numel() for p in teacher.module.parameters())
student_parameters = sum(p.numel() for p in student_for(teacher, width).parameters())
st.caption(f"Student: {student_parameters:,} parameters, {student_parameters / teacher_parameters:.1%} of the "
           f"teacher's {teacher_parameters:,} ({choice.label}).")

runs = st.session_state.setdefault("distill_runs", {})  # (model, config) → both results, kept across pages
run_key = (choice, config)
chart = st.empty()
metric = controls.metric_label(teacher.evaluation.metric)


def draw(with_teacher: list[EpochRecord], without: list[EpochRecord], key: str) -> None:
    chart.plotly_chart(charts.distillation_chart(with_teacher, without, metric), width="stretch", key=key)


if run_key in runs:
    done = runs[run_key]
    draw(done["with"].epochs, done["without"].epochs, "distill_chart")

if st.button("Train both students", type="primary", key="distill_run"):
    progress = st.progress(0.0, text="Training…")
    records: list[EpochRecord] = []

    def report(done_epochs: int, total: int, record: EpochRecord) -> None:
        records.append(record)
        progress.progress(done_epochs / total, text=f"epoch {done_epochs} of {total}: {metric.lower()} {record.value:.4f}")
        draw(records[:epochs], records[epochs:], f"distill_chart_{done_epochs}")

    with_teacher, without = compare_distillation(teacher, config, progress=report)
    runs[run_key] = {
        "with": with_teacher, "without": without,
        "encoded": {name: compression.compress(result.model, {}).report.encoded_bytes
                    for name, result in (("with", with_teacher), ("without", without))},
    }
    progress.empty()
    st.rerun()

if run_key in runs:
    done = runs[run_key]
    teacher_value = state.evaluation(choice.model_id, choice.data_id, None)["value"]  # cached per model
    st.dataframe(pd.DataFrame([
        {"model": f"teacher ({choice.label})", "parameters": teacher_parameters, metric: teacher_value,
         "packed file (bytes)": state.compressed(choice.model_id, choice.data_id,
                                                 compression.Recipe().to_json()).report.file_bytes},
        {"model": f"student, distilled (T={temperature}, α={alpha})", "parameters": done["with"].parameters,
         metric: done["with"].value, "packed file (bytes)": done["with"].file_bytes},
        {"model": "student, labels only (α = 0)", "parameters": done["without"].parameters,
         metric: done["without"].value, "packed file (bytes)": done["without"].file_bytes},
    ]), hide_index=True, width="stretch")
    st.caption("Both students also appear on the Trade-offs page beside the one-shot sweep.")
else:
    st.info("Set the student and the loss, then press **Train both students**. Finished runs stay here when you switch pages.")
