"""Export page: the packed model, its dense weights, the recipe, and the CLI that redoes it."""
import json
import shlex

import streamlit as st

from compression.packing import dense_safetensors
from ui import controls, state

state.require_navigation()
st.title("Export")
st.markdown(
    "Download what the current recipe produced. The **packed file** is the compressed model as "
    "stored: bit-packed codes, positions of non-zeros and scales in a safetensors container; its "
    "size is the one shown on every page. The **dense weights** are the same values decoded back to "
    "float32 under the original parameter names, for any PyTorch code. The **recipe** reproduces it all."
)
st.latex(r"\text{ratio} = \frac{\text{dense fp32 bytes}}{\text{packed file bytes}}")

choice, model = controls.load_current_model()
result = controls.compress_current(choice)
if result is None:
    st.stop()
controls.size_and_metric_row(result, controls.live_scores(result, choice))
controls.numbers_explained(model)

recipe_text = json.dumps(result.report.recipe, indent=2)
stem = choice.label.rsplit(".", 1)[0]
columns = st.columns(3)
columns[0].download_button("Packed model (.packed)", result.packed.to_bytes(), file_name=f"{stem}.packed",
                           mime="application/octet-stream", type="primary")
columns[1].download_button("Dense weights (.safetensors)",
                           dense_safetensors(result.module.state_dict()),
                           file_name=f"{stem}-dense.safetensors", mime="application/octet-stream")
columns[2].download_button("Recipe (.json)", recipe_text, file_name=f"{stem}-recipe.json", mime="application/json")

st.subheader("Reproduce from the command line")
source = choice.model_id if not choice.model_id.startswith(state.UPLOAD_PREFIX) else f"path/to/{choice.label}"
command = ["python", "-m", "compression", "apply", source, "--recipe", json.dumps(result.report.recipe, separators=(",", ":")),
           "--out", f"{stem}.packed", "--dense-out", f"{stem}-dense.safetensors"]
if choice.data_id:
    command += ["--data", "path/to/" + choice.data_id.rsplit("/", 1)[-1]]
st.code(shlex.join(command), language="bash")
st.caption("Or save the recipe above and pass --recipe recipe.json. The packed file's size equals the report's file_bytes.")
st.subheader("Recipe")
st.code(recipe_text, language="json")
