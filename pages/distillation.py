"""Distillation page: a small student trained on the teacher's soft targets, against labels alone."""
import pandas as pd
import streamlit as st

import compression
from compression.workflows.distillation import (
    DistillConfig,
    EpochRecord,
    compare_distillation,
    soft_targets,
    student_for,
)
from ui import cache, charts, controls, navigation, stores
from ui.text import t

PICTURE_PIXELS = 140  # the example's picture, drawn this wide

navigation.require_navigation()
st.title(t("distillation.title"))
st.markdown(t("distillation.intro"))
st.latex(t("distillation.formula"))

choice, teacher = controls.load_current_model()
controls.require_training_data(choice, teacher, t("distillation.needs_training"))

columns = st.columns(4)
width = columns[0].select_slider(t("distillation.width"), [4, 8, 16, 32, 64, 128], value=16, key="distill_width")
temperature = columns[1].slider(t("distillation.temperature"), 1.0, 10.0, 4.0, 0.5, key="distill_temperature")
alpha = columns[2].slider(t("distillation.alpha"), 0.05, 1.0, 0.7, 0.05, key="distill_alpha")
epochs = columns[3].slider(t("distillation.epochs"), 1, 40, DistillConfig.epochs, key="distill_epochs")
config = DistillConfig(temperature=temperature, alpha=alpha, epochs=epochs, width=width)
st.caption(t("distillation.training_setup", learning_rate=config.learning_rate, batch_size=config.batch_size,
             seed=config.seed))

teacher_parameters = sum(p.numel() for p in teacher.module.parameters())
student_parameters = sum(p.numel() for p in student_for(teacher, width).parameters())
st.caption(t("distillation.student_size", student=student_parameters, share=student_parameters / teacher_parameters,
             teacher=teacher_parameters, model=choice.label))

st.subheader(t("distillation.soft_title"))
st.latex(t("distillation.softmax_formula"))
index = st.columns(4)[0].number_input(t("distillation.digit"), 0, teacher.evaluation.size - 1, 0, key="distill_digit",
                                     help=t("distillation.digit_help", size=teacher.evaluation.size))
targets = soft_targets(teacher, int(index), temperature)
picture_column, bars_column = st.columns([1, 4], vertical_alignment="center")
picture = targets.image()
if picture is not None:
    scale = max(1, PICTURE_PIXELS // picture.shape[0])  # whole pixels, not the browser's blur
    picture_column.image(picture.numpy().repeat(scale, 0).repeat(scale, 1),
                         caption=t("distillation.digit_label", label=targets.label))
bars_column.plotly_chart(charts.soft_targets_chart(targets.at_one, targets.at_temperature, temperature,
                                                   t("distillation.soft_chart_title", index=targets.index,
                                                     label=targets.label)),
                         width="stretch", key="distill_soft_targets")
top = max(range(len(targets.at_one)), key=targets.at_one.__getitem__)
st.caption(t("distillation.soft_look_for", temperature=temperature, top=top, at_one=targets.at_one[top],
             at_t=targets.at_temperature[top], rest_one=1 - targets.at_one[top], rest_t=1 - targets.at_temperature[top]))

runs = stores.DISTILLATION_RUNS  # (model, config) → both results, kept across pages
run_key = (choice, config)
chart = st.empty()
metric = controls.metric_label(teacher.evaluation.metric)


def draw(with_teacher: list[EpochRecord], without: list[EpochRecord], key: str) -> None:
    chart.plotly_chart(charts.distillation_chart(with_teacher, without, metric), width="stretch", key=key)


if run_key in runs:
    done = runs[run_key]
    draw(done["with"].epochs, done["without"].epochs, "distill_chart")

if st.button(t("distillation.train"), type="primary", key="distill_run"):
    progress = st.progress(0.0, text=t("distillation.training"))
    records: list[EpochRecord] = []

    def report(done_epochs: int, total: int, record: EpochRecord) -> None:
        records.append(record)
        progress.progress(done_epochs / total, text=t("distillation.progress", epoch=done_epochs, epochs=total,
                                                              metric=metric.lower(), value=record.value))
        draw(records[:epochs], records[epochs:], f"distill_chart_{done_epochs}")

    with_teacher, without = compare_distillation(teacher, config, progress=report)
    runs.put(run_key, {
        "with": with_teacher, "without": without,
        "encoded": {name: compression.compress(result.model, {}).report.encoded_bytes
                    for name, result in (("with", with_teacher), ("without", without))},
    })
    progress.empty()
    st.rerun()

if run_key in runs:
    done = runs[run_key]
    teacher_value = cache.evaluation(choice.model_id, choice.data_id, None)["value"]  # cached per model
    st.dataframe(pd.DataFrame([
        {"model": t("distillation.teacher", model=choice.label), "parameters": teacher_parameters, metric: teacher_value,
         "packed_bytes": cache.compressed(choice.model_id, choice.data_id,
                                          compression.Recipe().to_json()).report.file_bytes},
        {"model": t("distillation.distilled", temperature=temperature, alpha=alpha), "parameters": done["with"].parameters,
         metric: done["with"].value, "packed_bytes": done["with"].file_bytes},
        {"model": t("distillation.labels_only"), "parameters": done["without"].parameters,
         metric: done["without"].value, "packed_bytes": done["without"].file_bytes},
    ]).rename(columns={"model": t("distillation.columns.model"), "parameters": t("distillation.columns.parameters"),
                       "packed_bytes": t("distillation.columns.packed_bytes")}), hide_index=True, width="stretch")
    st.caption(t("distillation.on_tradeoffs"))
else:
    st.info(t("distillation.not_run"))
