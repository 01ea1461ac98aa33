"""Compression Lab's dashboard: ``streamlit run app.py``.

Sets up the pages (stable URL paths), the shared sidebar (language, model choice, current recipe)
and the session's state; each page in ``pages/`` draws one view over the engine.
"""
import importlib.machinery

# Streamlit runs this file as the module __main__; the sweep pool's spawned workers (ui/sweep_pool.py)
# would run it again before their first point, unless __main__'s spec says it is no file to re-run.
__spec__ = importlib.machinery.ModuleSpec("__main__", None)

import streamlit as st

from ui import language, model_ids, state
from ui.lessons import card as lesson_card
from ui.text import t

language.choose()  # before any text is looked up
st.set_page_config(page_title=t("app.page_title"), page_icon=":material/compress:", layout="wide")

PAGES = [
    # Streamlit serves the default page at "/" whatever its url_path: the overview takes "/" so that
    # every working page has its own stable path.
    st.Page("pages/overview.py", title=t("app.pages.overview"), icon=":material/home:", default=True),
    st.Page("pages/model.py", title=t("app.pages.model"), icon=":material/inventory_2:", url_path="model"),
    st.Page("pages/pruning.py", title=t("app.pages.pruning"), icon=":material/content_cut:", url_path="pruning"),
    st.Page("pages/quantization.py", title=t("app.pages.quantization"), icon=":material/tune:", url_path="quantization"),
    st.Page("pages/gradual.py", title=t("app.pages.gradual"), icon=":material/trending_up:", url_path="gradual"),
    st.Page("pages/sensitivity.py", title=t("app.pages.sensitivity"), icon=":material/troubleshoot:", url_path="sensitivity"),
    st.Page("pages/xray.py", title=t("app.pages.xray"), icon=":material/radiology:", url_path="xray"),
    st.Page("pages/distillation.py", title=t("app.pages.distillation"), icon=":material/school:", url_path="distillation"),
    st.Page("pages/tradeoffs.py", title=t("app.pages.tradeoffs"), icon=":material/show_chart:", url_path="tradeoffs"),
    st.Page("pages/export.py", title=t("app.pages.export"), icon=":material/download:", url_path="export"),
]

navigation = st.navigation(PAGES)
state.init_session()
lesson_card.follow(navigation)  # a lesson step the link opens sets the model and recipe: before they go into the URL
state.sync_url()  # a page switch clears the query parameters: put the model and recipe back
warning = state.url_warning()
if warning:
    st.warning(warning)

with st.sidebar:
    language.switch()
    options = state.model_options()
    current = state.choice().model_id
    picked = st.selectbox(
        t("app.model"), options, index=options.index(current) if current in options else 0,
        format_func=lambda model_id: model_ids.ModelChoice(model_id, None).label,
    )
    if picked != current:
        state.choose_model(picked)
        st.rerun()
    # Captions rather than tooltips: a tooltip re-measures itself on every redraw of the page.
    st.caption(t("app.sidebar_note"))
    if st.button(t("app.reset_recipe")):
        state.reset_recipe()
        st.rerun()

lesson_card.render(navigation)  # on top of the page
navigation.run()

