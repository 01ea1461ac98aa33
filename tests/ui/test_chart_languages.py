"""Chart and table text on measured pages in Chinese: titles, axis titles, legends and column
headers come from the catalog, so a Chinese page shows no English there but names (units,
methods, layers) that read the same in both languages.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from streamlit.runtime.scriptrunner import get_script_run_ctx
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1 import app_test as app_test_module

import ui.text
from tests.ui.conftest import _PagesFlagOwnedByTheTest
from tests.ui.test_languages import ZH, new_app

# Names that read the same in both languages: units, file formats, methods and their papers' names.
TECHNICAL_WORDS = {"SQNR", "MSE", "KiB", "MiB", "dB", "fp", "bf", "int", "max", "AGP", "ORT", "GPTQ", "AWQ",
                   "Wanda", "SparseGPT", "means", "CPU", "torch", "onnxruntime", "QDQ", "MACs", "in"}
# A word on its own: not part of a layer name (fc1.weight), a number with a unit (8-bit) or a plotly field.
LOOSE_WORD = re.compile(r"(?<![\w.\-])[A-Za-z]{2,}(?![\w.])")
MEASURED_PAGES = {  # page → the buttons that draw its measured charts and tables (mlp: each takes seconds)
    "pages/pruning.py": (), "pages/quantization.py": (),
    "pages/sensitivity.py": ("sensitivity_run", "sensitivity_search"), "pages/tradeoffs.py": ("tradeoffs.run",),
}


def english_in(text: str) -> list[str]:
    """The English words a chart or table text shows, plotly's %{fields} and markup taken out."""
    text = re.sub(r"%\{[^}]*\}|<[^>]*>", " ", text)
    return [word for word in LOOSE_WORD.findall(text) if word not in TECHNICAL_WORDS]


def chart_texts(app: AppTest) -> Iterator[tuple[str, str]]:
    """(chart key and where, text) for every title, axis title, colour-bar title and legend name."""
    for chart in app.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        layout = spec.get("layout", {})
        for name, part in layout.items():
            if name == "title" or name.startswith(("xaxis", "yaxis", "coloraxis")):
                title = part if name == "title" else part.get("title") or part.get("colorbar", {}).get("title")
                text = title.get("text") if isinstance(title, dict) else title
                if text:
                    yield f"{chart.key} {name}", text
        for trace in spec.get("data", []):
            if trace.get("name") and trace.get("showlegend", True):
                yield f"{chart.key} legend", trace["name"]
            bar = (trace.get("colorbar") or (trace.get("marker") or {}).get("colorbar") or {}).get("title")
            if bar:
                yield f"{chart.key} colorbar", bar.get("text") if isinstance(bar, dict) else bar


def column_labels(app: AppTest) -> Iterator[str]:
    """The header of every column of every table on the page, as the browser shows it."""
    for frame in app.dataframe:
        configured = json.loads(frame.proto.columns) if frame.proto.columns else {}
        for column in frame.value.columns:
            label = (configured.get(str(column)) or {}).get("label")
            yield label or str(column)


@pytest.fixture(scope="module")
def measured_in_chinese(tmp_path_factory) -> Iterator[dict[str, AppTest]]:
    """mlp's Pruning, Quantization, Sensitivity and Trade-offs pages in Chinese, their measurements
    run (points measured in the server's process, journals in a folder of the test's own)."""
    from ui import background_runs, sweep_pool

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app_test_module, "PagesManager", _PagesFlagOwnedByTheTest)
        patch.setenv(sweep_pool.EXECUTOR_VARIABLE, "inline")
        patch.setenv(background_runs.SWEEP_DIR_VARIABLE, str(tmp_path_factory.mktemp("sweeps")))
        inside_runs = ui.text.language  # widget values are formatted outside runs too (see formats_in)
        patch.setattr(ui.text, "language", lambda: inside_runs() if get_script_run_ctx(suppress_warning=True) else "zh")
        app = new_app()
        app.query_params["lang"], app.query_params["model"] = "zh", "mlp"
        app.run()
        shown = {}
        for page, buttons in MEASURED_PAGES.items():
            app.switch_page(page).run()
            for button in buttons:
                [pressed] = [b for b in app.button if b.key == button or b.label == ZH.get(button)]
                pressed.click().run(timeout=300)
            assert not app.exception, (page, [e.value for e in app.exception])
            shown[page] = (list(chart_texts(app)), list(column_labels(app)), len(app.get("plotly_chart")))
        yield shown


@pytest.mark.parametrize("page", MEASURED_PAGES)
def test_chart_titles_axes_and_legends_are_in_chinese(measured_in_chinese, page):
    texts, _, charts = measured_in_chinese[page]
    assert charts >= 1, f"{page} drew no chart"
    english = {where: text for where, text in texts if english_in(text)}
    assert not english, english


@pytest.mark.parametrize("page", ["pages/sensitivity.py", "pages/tradeoffs.py"])
def test_table_headers_are_in_chinese(measured_in_chinese, page):
    _, labels, _ = measured_in_chinese[page]
    assert len(labels) >= 5, labels
    assert [label for label in labels if english_in(label)] == []
