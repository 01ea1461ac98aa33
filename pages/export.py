"""Export page: the packed model, its dense weights, the recipe, and the CLI that redoes it; then the
smaller model, ONNX, TFLite and latency. Each section is drawn by its module in ``ui/export/``."""
import streamlit as st

from ui import calibrated_run, controls, navigation
from ui.export import downloads, latency, onnx_file, smaller_model, tflite_file
from ui.text import t

navigation.require_navigation()
st.title(t("export.title"))
st.markdown(t("export.intro"))
st.latex(t("export.formula"))

choice, model = controls.load_current_model()
result = calibrated_run.compressed(choice, model, "export")
if result is None:
    st.stop()
controls.size_and_metric_row(result.report, controls.live_scores(choice, controls.report_recipe_json(result)))
controls.numbers_explained(model)

stem = choice.name.rsplit(".", 1)[0]
source = downloads.render(choice, result, stem)
smaller_model.render(choice, model, result, stem)
onnx_file.render(choice, model, result, stem, source)
tflite_file.render(choice, model, result, stem)
latency.render(choice, model, result)
