"""Large models stay live: the preview draws, the metric waits for its button, results are
bounded in bytes (issue 12). Models above the on-demand size are simulated by lowering it."""
from __future__ import annotations

import threading
import time

import pytest
import torch

from compression.preview import MagnitudeIndex
from compression.recipe import Recipe
from tests.ui.test_pages import assert_clean, metric_value, open_page, percent, set_amount
from ui import cache
from ui.result_cache import ENTRY_OVERHEAD_BYTES, ResultCache, tensor_bytes


@pytest.fixture
def large(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every model counts as large: its metric waits until asked for."""
    monkeypatch.setattr(cache, "METRIC_ON_DEMAND_ABOVE_PARAMETERS", 0)


def measure_button(app):
    return [button for button in app.button if button.key == "measure_metric"]


def test_a_large_models_slider_shows_exact_sizes_and_its_metric_waits_for_the_button(app, large) -> None:
    open_page(app, "pages/pruning.py")
    set_amount(app, 0.61)
    assert_clean(app)
    assert metric_value(app, "Accuracy") == "—" and measure_button(app)
    report = cache.compressed("simplenet", None, Recipe.from_dict(
        {"prune": {"method": "magnitude", "amount": 0.61, "scope": "global"}}).to_json()).report
    assert percent(metric_value(app, "Sparsity")) == pytest.approx(report.sparsity, abs=0.001)
    measure_button(app)[0].click().run()
    assert_clean(app)
    measured = metric_value(app, "Accuracy")
    assert measured != "—" and not measure_button(app)
    set_amount(app, 0.62)
    assert metric_value(app, "Accuracy") == "—"
    set_amount(app, 0.61)  # measured before: shown at once, kept per recipe
    assert metric_value(app, "Accuracy") == measured and not measure_button(app)


def test_small_models_are_scored_on_every_move(app) -> None:
    open_page(app, "pages/pruning.py")
    set_amount(app, 0.3)
    assert metric_value(app, "Accuracy") != "—" and not measure_button(app)


def test_the_preview_sizes_are_the_compressions(app) -> None:
    recipe = Recipe.from_dict({"prune": {"method": "magnitude", "amount": 0.97, "scope": "layer"}})
    model = cache.base_model("mlp", None)
    sizes = MagnitudeIndex.of(model).sizes(recipe)
    report = cache.compressed("mlp", None, recipe.to_json()).report
    assert (sizes.encoded_bytes, sizes.file_bytes) == (report.encoded_bytes, report.file_bytes)


def test_results_are_bounded_in_bytes_least_recently_used_first() -> None:
    tensors = {key: torch.zeros(1000) for key in "abcd"}  # 4,000 bytes each
    results = ResultCache(3 * (4000 + ENTRY_OVERHEAD_BYTES), lambda tensor: tensor_bytes([tensor]))
    for key in "abc":
        results.get(key, lambda key=key: tensors[key])
    results.get("a", lambda: pytest.fail("kept"))  # a is now the most recently used
    results.get("d", lambda: tensors["d"])
    assert results.peek("b") is None and results.peek("a") is tensors["a"]
    assert results.bytes_held <= results.max_bytes
    huge = torch.zeros(10**6)
    assert results.get("huge", lambda: huge) is huge and results.peek("huge") is None  # returned, not kept


def test_a_tied_weight_counts_once() -> None:
    shared = torch.zeros(100)
    assert tensor_bytes([shared, shared, shared[:10], torch.zeros(5)]) == 420


def test_sessions_asking_at_once_compute_a_result_once() -> None:
    results = ResultCache(10**6, lambda value: 0)
    calls = []

    def slow() -> int:
        calls.append(1)
        time.sleep(0.2)
        return 7

    answers = []
    threads = [threading.Thread(target=lambda: answers.append(results.get("k", slow))) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [7] * 5 and len(calls) == 1
