"""Overview page: what the lab does, the way through its pages, and where the session stands."""
import json

import streamlit as st

import sample_models

from ui import calibrated_run, controls, navigation, state
from ui.lessons import card as lesson_card
from ui.lessons import lessons
from ui.model_ids import SERVER_PREFIX, UPLOAD_PREFIX, ModelChoice, load_options
from ui.text import language, t
from ui.text.engine_text import localized, sample_model

navigation.require_navigation()
st.title(t("overview.title"))
st.markdown(t("overview.intro"))

st.subheader(t("overview.way_through"))
steps = [
    ("pages/model.py", t("overview.steps.model"), t("overview.step_notes.model")),
    ("pages/model.py", t("overview.steps.fusion"), t("overview.step_notes.fusion")),  # its BatchNorm folding section
    ("pages/pruning.py", t("overview.steps.pruning"), t("overview.step_notes.pruning")),
    ("pages/quantization.py", t("overview.steps.quantization"), t("overview.step_notes.quantization")),
    ("pages/gradual.py", t("overview.steps.gradual"), t("overview.step_notes.gradual")),
    ("pages/sensitivity.py", t("overview.steps.sensitivity"), t("overview.step_notes.sensitivity")),
    ("pages/distillation.py", t("overview.steps.distillation"), t("overview.step_notes.distillation")),
    ("pages/tradeoffs.py", t("overview.steps.tradeoffs"), t("overview.step_notes.tradeoffs")),
    ("pages/export.py", t("overview.steps.export"), t("overview.step_notes.export")),
]
for page, label, what in steps:
    link, text = st.columns([1, 4], vertical_alignment="center")
    link.page_link(page, label=label, query_params=state.link_parameters())
    text.markdown(what)

st.subheader(t("overview.lessons"))
st.markdown(t("overview.lessons_intro"))
for lesson in lessons():  # a title on a line of its own: a page link is cut at one line
    st.page_link(lesson.steps[0].script, label=lesson.title[language()], icon=":material/school:",
                 query_params=lesson_card.link_parameters(lesson, 1))
    st.markdown(f"{lesson.summary[language()]} · {t('overview.lesson_steps', steps=len(lesson.steps))}")

choice, model = controls.load_current_model()
st.subheader(t("overview.now", model=choice.label))
st.caption(sample_model(choice.model_id) if choice.model_id in sample_models.ZOO_NAMES else localized(model.description))
result = calibrated_run.compressed(choice, model, "overview")
if result is not None:
    controls.size_and_metric_row(result.report, controls.live_scores(choice, controls.report_recipe_json(result)))
    controls.numbers_explained(model)
recipe = state.recipe()
st.markdown(t("overview.recipe" if recipe else "overview.recipe_none"))
if recipe:
    st.code(json.dumps(recipe, indent=2), language="json")

st.subheader(t("overview.from_python"))
example = {"prune": {"method": "magnitude", "amount": 0.5}}
loaded = load_options(choice.model_id)
source = loaded.source_id if not loaded.source_id.startswith((UPLOAD_PREFIX, SERVER_PREFIX)) else f"path/to/{ModelChoice(loaded.source_id, None).name}"
options = "".join(f", {name}={value!r}" for name, value in (("family", loaded.family), ("input_shapes", loaded.input_shapes)) if value)
st.code(
    "import compression\n\n"
    f"model = compression.load_model({source!r}{options})\n"
    + ("" if recipe else t("overview.example_comment") + "\n")
    + f"result = compression.compress(model, {json.dumps(recipe or example)!r})\n"
    "print(result.report.file_bytes, compression.evaluate(model, result.module).value)",
    language="python",
)
