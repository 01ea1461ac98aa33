"""The magnitude-pruning preview shows exactly what compress reports for the same recipe."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from compression.compress import compress
from compression.io.loading import load_model
from compression.preview import MagnitudeIndex, previewable
from compression.pruning import compute_masks
from compression.recipe import PruneSpec, Recipe

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
        assert_same_histogram(shown.histogram_before, layer.histogram_before)
        assert_same_histogram(shown.histogram_after, layer.histogram_after)
    assert_same_histogram(preview.histogram_before, report.histogram_before)
    assert_same_histogram(preview.histogram_after, report.histogram_after)
    assert preview.sparsity == pytest.approx(report.sparsity)


def assert_same_histogram(shown, reported) -> None:
    assert np.array_equal(shown.counts, reported.counts)
    assert np.array_equal(shown.edges, reported.edges)
    assert shown.outside == reported.outside


def with_outliers() -> nn.Module:
    """Two layers whose histograms are clipped: a few |w| ≈ 5-7 among |w| ≈ 0.05."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 10))
    with torch.no_grad():
        for layer, values in ((module[0], [7.0, -6.5]), (module[2], [-5.0])):
            layer.weight.normal_(0.0, 0.05)
            layer.weight.view(-1)[: len(values)] = torch.tensor(values)
    return module


@pytest.mark.parametrize("spec", SPECS + [{"threshold": 6.0, "scope": "global"}, {"threshold": 0.3, "scope": "layer"}])
def test_the_preview_equals_the_compression_where_outliers_fall_outside_the_histogram(spec: dict) -> None:
    module = with_outliers()
    recipe = Recipe.from_dict({"prune": {"method": "magnitude", **spec}})
    report = compress(module, recipe).report
    preview = MagnitudeIndex({layer.name: module.state_dict()[layer.name] for layer in report.layers}).preview(recipe.prune)
    assert report.histogram_before.outside == 3
    for layer in report.layers:
        assert_same_histogram(preview.layers[layer.name].histogram_before, layer.histogram_before)
        assert_same_histogram(preview.layers[layer.name].histogram_after, layer.histogram_after)
    assert_same_histogram(preview.histogram_before, report.histogram_before)
    assert_same_histogram(preview.histogram_after, report.histogram_after)


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


def assert_same_sizes(index: MagnitudeIndex, model, recipe: Recipe) -> None:
    sizes = index.sizes(recipe)
    report = compress(model, recipe).report
    assert (sizes.dense_fp32_bytes, sizes.encoded_bytes, sizes.file_bytes) == (
        report.dense_fp32_bytes, report.encoded_bytes, report.file_bytes)
    assert sizes.sparsity == pytest.approx(report.sparsity)


@pytest.mark.parametrize("spec", SPECS + [{"amount": 0.99, "scope": "global"}, {"amount": 0.999, "scope": "layer"}])
def test_the_preview_sizes_equal_the_packed_files(model, spec: dict) -> None:
    """Dense, bitmap and deltas encodings alike (0.99 and 0.999 store the gaps between weights)."""
    assert_same_sizes(MagnitudeIndex.of(model), model, Recipe.from_dict({"prune": {"method": "magnitude", **spec}}))


@pytest.mark.parametrize("spec", [{"amount": 0.5, "scope": "global"}, {"amount": 0.97, "scope": "layer"}])
def test_the_preview_sizes_follow_tied_weights_and_output_axes(spec: dict, tmp_path) -> None:
    """A GPT-2 (Conv1D weights store output channels on axis 1; the head is tied to the
    embedding) and the sample LM (tied head): the file stores tensors channels first, once."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=97, n_positions=16)).eval()
    gpt2.save_pretrained(tmp_path)
    recipe = Recipe.from_dict({"prune": {"method": "magnitude", **spec}})
    assert any(axis.axis == 1 for axis in load_model(tmp_path).output_axes.values())
    for loaded in (load_model(tmp_path), load_model("tinylm")):
        assert_same_sizes(MagnitudeIndex.of(loaded), loaded, recipe)


def test_the_pruned_tensor_is_the_compressed_one(model) -> None:
    recipe = Recipe.from_dict({"prune": {"method": "magnitude", "amount": 0.6, "scope": "layer"}})
    preview = MagnitudeIndex.of(model).preview(recipe.prune)
    result = compress(model, recipe)
    for layer in result.report.layers:
        pruned = MagnitudeIndex.of(model).pruned(layer.name, preview.layers[layer.name].threshold)
        assert torch.equal(pruned == 0, result.module.state_dict()[layer.name] == 0)


@pytest.mark.parametrize("size", [1, 2, 5, 40, 3000])
def test_every_amount_cuts_where_the_engine_cuts_on_small_tensors_and_repeated_magnitudes(size: int) -> None:
    """Cuts near the ends of the order (below the bracketing sample's margin) and ties."""
    generator = torch.Generator().manual_seed(size)
    weights = {"a": torch.randn(size, generator=generator),
               "b": torch.randint(-3, 4, (size + 1,), generator=generator).float()}
    index = MagnitudeIndex(weights)
    for amount in np.linspace(0.0, 1.0, 21):
        for scope in ("global", "layer"):
            spec = PruneSpec(method="magnitude", amount=float(amount), scope=scope)
            masks = compute_masks(weights, dict.fromkeys(weights, spec))
            preview = index.preview(spec)
            for name, mask in masks.items():
                assert preview.layers[name].threshold == mask.threshold or (
                    math.isnan(preview.layers[name].threshold) and math.isnan(mask.threshold))
                assert preview.layers[name].zeros == int((weights[name] * mask.keep == 0).sum())
