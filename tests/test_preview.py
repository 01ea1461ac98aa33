"""The magnitude-pruning preview shows exactly what compress reports for the same recipe."""
from __future__ import annotations

import numpy as np
import pytest

from compression.compress import compress
from compression.loading import load_model
from compression.preview import MagnitudeIndex, previewable
from compression.recipe import Recipe

SPECS = [
    {"amount": 0.0, "scope": "global"},
    {"amount": 0.5, "scope": "global"},
    {"amount": 0.93, "scope": "global"},
    {"amount": 1.0, "scope": "global"},
    {"amount": 0.37, "scope": "layer"},
    {"threshold": 0.05, "scope": "layer"},
    {"threshold": 0.0, "scope": "global"},
]


@pytest.fixture(scope="module", params=["simplenet", "mlp", "bn_cnn"])
def model(request: pytest.FixtureRequest):
    return load_model(request.param)


@pytest.mark.parametrize("spec", SPECS)
def test_the_preview_equals_the_compressions_zeros_and_histograms(model, spec: dict) -> None:
    recipe = Recipe.from_dict({"prune": {"method": "magnitude", **spec}})
    preview = MagnitudeIndex.of(model).preview(recipe.prune)
    report = compress(model, recipe).report
    for layer in report.layers:
        shown = preview.layers[layer.name]
        assert shown.zeros == layer.zeros
        assert np.array_equal(shown.histogram_before.counts, layer.histogram_before.counts)
        assert np.array_equal(shown.histogram_after.counts, layer.histogram_after.counts)
    assert np.array_equal(preview.histogram_after.counts, report.histogram_after.counts)
    assert preview.sparsity == pytest.approx(report.sparsity)


def test_the_preview_reports_the_global_cut_the_engine_used(model) -> None:
    recipe = Recipe.from_dict({"prune": {"method": "magnitude", "amount": 0.5, "scope": "global"}})
    preview = MagnitudeIndex.of(model).preview(recipe.prune)
    assert {layer.threshold for layer in compress(model, recipe).report.layers} == {preview.threshold}


@pytest.mark.parametrize(
    "recipe, expected",
    [
        ({"prune": {"method": "magnitude", "amount": 0.5}}, True),
        ({"prune": {"method": "random", "amount": 0.5}}, False),
        ({"prune": {"method": "magnitude", "amount": 0.5}, "quantize": {"scheme": "linear", "bits": 4}}, False),
        ({"prune": {"method": "magnitude", "amount": 0.5}, "overrides": {"fc1.weight": {"prune": None}}}, False),
        ({}, False),
    ],
)
def test_only_magnitude_pruning_alone_is_previewed(recipe: dict, expected: bool) -> None:
    assert previewable(Recipe.from_dict(recipe)) is expected


def test_the_index_is_built_once_per_model(model) -> None:
    assert MagnitudeIndex.of(model) is MagnitudeIndex.of(model)
