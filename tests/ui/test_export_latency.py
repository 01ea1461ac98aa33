"""The Export page's latency section: the standard variants timed at batch 1 and 64, with verdicts.

mlp under 90% global magnitude pruning. Where a test reads the verdicts' wording, the timings are
replaced by equal ones, so every technique is "no faster here" whatever the machine's load.
"""
from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

import compression.workflows.latency.timing
from compression.workflows.latency import ORT_FP32, ORT_INT8_DYNAMIC, ORT_INT8_STATIC, RECIPE_LABEL, TORCH_FP32

SPARSE = {"prune": {"method": "magnitude", "amount": 0.9, "scope": "global"}}
VARIANTS = [TORCH_FP32, RECIPE_LABEL, "torch 50% channels removed", ORT_FP32, ORT_INT8_DYNAMIC, ORT_INT8_STATIC]


def measure_latency(app: AppTest) -> AppTest:
    """Open the Export page on mlp with ``SPARSE`` and press "Measure latency"."""
    app.query_params["model"] = "mlp"
    app.query_params["recipe"] = json.dumps(SPARSE)
    app.run()
    app.switch_page("pages/export.py")
    app.run()
    app.button(key="export_latency").click().run(timeout=120)
    assert not app.exception, [e.value for e in app.exception]
    assert not app.error, [e.value for e in app.error]
    return app


def latency_table(app: AppTest):
    tables = [frame.value for frame in app.dataframe if "variant" in frame.value.columns]
    assert len(tables) == 1
    return tables[0]


@pytest.fixture
def equal_timings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every variant takes 1 ms per batch (each round still reported, so the progress bar moves)."""

    def one_millisecond_each(calls, *, repeats=15, after_round=None, **timing):
        for done in range(1, repeats + 1):
            if after_round is not None:
                after_round(done)
        return [1.0] * len(calls)

    monkeypatch.setattr(compression.workflows.latency.timing, "median_milliseconds_in_turns", one_millisecond_each)


def test_measure_latency_times_every_standard_variant_at_batch_1_and_64(app):
    table = latency_table(measure_latency(app))
    assert list(zip(table["variant"], table["batch"])) == [(v, 1) for v in VARIANTS] + [(v, 64) for v in VARIANTS]
    assert (table["ms per batch"] > 0).all()
    assert table.loc[table["variant"] == TORCH_FP32, "speed-up vs torch fp32"].tolist() == [1.0, 1.0]


def test_each_variant_shows_its_accuracy(app):
    table = latency_table(measure_latency(app))
    accuracy = dict(zip(table["variant"], table["Accuracy"]))
    assert accuracy[TORCH_FP32] == pytest.approx(0.9778, abs=1e-4)
    assert accuracy[RECIPE_LABEL] < accuracy[TORCH_FP32]  # 90% of the weights gone, no fine-tuning


def test_the_caption_names_this_machines_cpu_and_threads(app):
    measure_latency(app)
    caption = next(c.value for c in app.caption if c.value.startswith("Measured on this machine: "))
    assert compression.workflows.latency.cpu_info().name in caption
    assert ", 1 thread (torch and onnxruntime), timed by the thread's CPU time." in caption


def test_techniques_that_make_nothing_faster_say_so_and_why(app, equal_timings):
    measure_latency(app)
    assert not app.success  # nothing was faster
    verdicts = [element.value for element in app.info]
    assert verdicts[0] == ("Unstructured sparsity: 1.00x at batch 1, 1.00x at batch 64 against torch fp32 — no "
                           "faster here: the zeros go through the same dense kernels (a zero is multiplied like "
                           "any other value).")
    assert [v.split(":")[0] for v in verdicts] == ["Unstructured sparsity", "Channel removal (50%)",
                                                   "onnxruntime fp32 (uncompressed)", "Dynamic int8 (onnxruntime)",
                                                   "Static int8, QDQ (onnxruntime)"]
    int8 = verdicts[-1]
    assert "against ORT fp32 — no faster here: " in int8
    assert compression.workflows.latency.int8_slowness(compression.workflows.latency.cpu_info()) in int8


def test_the_measurement_stays_for_the_same_model_and_recipe(app, equal_timings):
    measure_latency(app)
    app.switch_page("pages/model.py")
    app.run()
    app.switch_page("pages/export.py")
    app.run()
    assert len(latency_table(app)) == 2 * len(VARIANTS)
