"""compress's ``progress``: the fraction of calibrated layers done, for a dashboard's progress bar."""
from __future__ import annotations

import pytest

import compression


@pytest.fixture(scope="module")
def mlp() -> compression.LoadedModel:
    return compression.load_model("mlp")


def test_progress_rises_to_one_once_per_calibrated_layer(mlp):
    heard: list[float] = []
    compression.compress(mlp, {"prune": {"method": "wanda", "amount": 0.5}}, progress=heard.append)
    assert len(heard) == len(mlp.compressible)
    assert heard == sorted(heard) and heard[-1] == 1.0 and heard[0] > 0


def test_progress_changes_nothing_in_the_result(mlp):
    recipe = {"quantize": {"scheme": "gptq", "bits": 4}}
    heard = compression.compress(mlp, recipe, progress=lambda fraction: None)
    quiet = compression.compress(mlp, recipe)
    assert all(a.to_dict() == b.to_dict() for a, b in zip(heard.report.layers, quiet.report.layers))
    assert heard.report.file_bytes == quiet.report.file_bytes


def test_a_recipe_without_calibrated_methods_never_calls_progress(mlp):
    heard: list[float] = []
    compression.compress(mlp, {"prune": {"method": "magnitude", "amount": 0.5}}, progress=heard.append)
    assert heard == []
