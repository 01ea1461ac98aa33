"""Compression Lab's dashboard: ``streamlit run app.py``.

Sets up the pages (stable URL paths), the shared sidebar (model choice, current recipe) and
the session's state; each page in ``pages/`` draws one view over the engine.
"""
import streamlit as st

from ui import state

st.set_page_config(page_title="Compression Lab", page_icon=":material/compress:", layout="wide")

PAGES = [
    # Streamlit serves the default page at "/" whatever its url_path: the overview takes "/" so that
    # every working page has its own stable path.
    st.Page("pages/overview.py", title="Overview", icon=":material/home:", default=True),
    st.Page("pages/model.py", title="Model", icon=":material/inventory_2:", url_path="model"),
    st.Page("pages/pruning.py", title="Pruning", icon=":material/content_cut:", url_path="pruning"),
    st.Page("pages/quantization.py", title="Quantization", icon=":material/tune:", url_path="quantization"),
    st.Page("pages/gradual.py", title="Gradual pruning", icon=":material/trending_up:", url_path="gradual"),
    st.Page("pages/sensitivity.py", title="Sensitivity", icon=":material/troubleshoot:", url_path="sensitivity"),
    st.Page("pages/distillation.py", title="Distillation", icon=":material/school:", url_path="distillation"),
    st.Page("pages/tradeoffs.py", title="Trade-offs", icon=":material/show_chart:", url_path="tradeoffs"),
    st.Page("pages/export.py", title="Export", icon=":material/download:", url_path="export"),
]

navigation = st.navigation(PAGES)
state.init_session()
state.sync_url()  # a page switch clears the query parameters: put the model and recipe back
warning = state.url_warning()
if warning:
    st.warning(warning)

with st.sidebar:
    options = state.model_options()
    current = state.choice().model_id
    picked = st.selectbox(
        "Model", options, index=options.index(current) if current in options else 0,
        format_func=lambda model_id: state.ModelChoice(model_id, None).label,
    )
    if picked != current:
        state.choose_model(picked)
        st.rerun()
    # Captions rather than tooltips: a tooltip re-measures itself on every redraw of the page.
    st.caption("Sample models ship with the app; uploads are added on the Model page. The recipe "
               "(pruning and quantization settings) is shared by every page and kept in the URL; "
               "**Reset recipe** goes back to the uncompressed model.")
    if st.button("Reset recipe"):
        state.reset_recipe()
        st.rerun()

navigation.run()

