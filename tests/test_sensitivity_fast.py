"""The fast sensitivity scan gives the plain scan's table: one layer compressed alone, swapped
into a shared copy, scored in length buckets from its block's captured inputs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from compression.compress import compress
from compression.io.loading import load_model
from compression.model import LoadedModel, weights_fingerprint
from compression.recipe import Recipe
from compression.workflows.layer_scoring import LayerScorer
from compression.workflows.sensitivity import sensitivity, single_layer_recipe

GRID = {"amounts": [0.0, 0.5, 0.9], "bits": [32, 4]}
# Float rounding of other batch shapes (length buckets): MiniLM's values differ by < 1e-9.
VALUE_TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def minilm() -> LoadedModel:
    return load_model("minilm")


@pytest.fixture(scope="module")
def tinylm() -> LoadedModel:
    return load_model("tinylm")


def assert_same_table(fast: pd.DataFrame, plain: pd.DataFrame) -> None:
    assert list(fast.columns) == list(plain.columns)
    close = ["value", "drop"]
    pd.testing.assert_frame_equal(fast.drop(columns=close), plain.drop(columns=close))
    assert np.abs(fast[close].to_numpy() - plain[close].to_numpy()).max() <= VALUE_TOLERANCE


def test_simplenet_gives_the_plain_table_bit_for_bit() -> None:
    simplenet = load_model("simplenet")
    pd.testing.assert_frame_equal(sensitivity(simplenet, **GRID), sensitivity(simplenet, fast=False, **GRID))


def test_minilm_gives_the_plain_table_from_its_first_and_last_blocks(minilm: LoadedModel) -> None:
    layers = [minilm.compressible[0], minilm.compressible[-1]]
    arguments = {"amounts": [0.0, 0.9], "bits": [4], "layers": layers, "samples": 24}
    assert_same_table(sensitivity(minilm, **arguments), sensitivity(minilm, fast=False, **arguments))


def test_tinylm_gives_the_plain_table_for_blocks_tied_embeddings_and_their_alias(tinylm: LoadedModel) -> None:
    layers = ["model.layers.3.mlp.down_proj.weight", "model.embed_tokens.weight", "lm_head.weight"]
    arguments = {"amounts": [0.0, 0.5], "bits": [4], "layers": layers, "samples": 16}
    assert_same_table(sensitivity(tinylm, **arguments), sensitivity(tinylm, fast=False, **arguments))


def test_minilm_runs_in_length_buckets_and_replays_its_six_blocks(minilm: LoadedModel) -> None:
    scorer = LayerScorer(minilm, samples=64)
    assert scorer.bucketed
    assert [scorer.first_block(name) for name in minilm.compressible[::6]] == [0, 1, 2, 3, 4, 5]
    assert 0 < scorer.replay_bytes <= 6 * 64 * 38 * 384 * 4  # a hidden state per block, never padded longer


def test_a_point_runs_only_its_layers_block_and_those_after(tinylm: LoadedModel, monkeypatch) -> None:
    scorer = LayerScorer(tinylm, samples=16)
    block = type(tinylm.module.model.layers[0])
    calls = []
    forward = block.forward

    def counted(self, *args, **kwargs):
        calls.append(self)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(block, "forward", counted)
    name = "model.layers.3.mlp.down_proj.weight"
    scorer.measure(name, Recipe.from_dict(single_layer_recipe(tinylm, name, prune={"amount": 0.5})))
    assert len(calls) == 1  # 16 windows in one batch, block 3 alone


def test_a_weight_compression_leaves_unchanged_scores_as_the_baseline_without_running(
    tinylm: LoadedModel, monkeypatch
) -> None:
    scorer = LayerScorer(tinylm, samples=16)
    monkeypatch.setattr(type(tinylm.module), "forward", lambda *args, **kwargs: pytest.fail("the model ran"))
    name = "model.layers.1.mlp.up_proj.weight"
    point = scorer.measure(name, Recipe.from_dict(single_layer_recipe(tinylm, name)))
    assert point.evaluation.value == point.evaluation.baseline_value == scorer.baseline_value


def test_the_base_model_is_never_written(tinylm: LoadedModel) -> None:
    before = weights_fingerprint(tinylm.module)
    sensitivity(tinylm, amounts=[0.9], bits=[2], layers=["model.layers.2.self_attn.v_proj.weight"], samples=16)
    assert weights_fingerprint(tinylm.module) == before
    assert all(type(layer).__name__ == "LlamaDecoderLayer" for layer in tinylm.module.model.layers)


def test_recipes_that_calibrate_and_tied_aliases_are_left_to_compress_and_evaluate(tinylm: LoadedModel) -> None:
    scorer = LayerScorer(tinylm, samples=16)
    name = "model.layers.0.mlp.gate_proj.weight"
    plain = Recipe.from_dict(single_layer_recipe(tinylm, name, prune={"amount": 0.5}))
    calibrated = Recipe.from_dict({**plain.to_dict(), "calibration": {"samples": 8}})
    assert scorer.handles(name, plain)
    assert not scorer.handles(name, calibrated)
    assert not scorer.handles("lm_head.weight", plain)  # the embedding's other name


def test_the_packed_sizes_are_those_of_the_whole_models_file(tinylm: LoadedModel) -> None:
    scorer = LayerScorer(tinylm, samples=16)
    name = "model.layers.2.mlp.gate_proj.weight"
    recipe = Recipe.from_dict(single_layer_recipe(tinylm, name, quantize={"bits": 3}))
    point, report = scorer.measure(name, recipe), compress(tinylm, recipe).report
    assert (point.packed.encoded_bytes, point.packed.file_bytes) == (report.encoded_bytes, report.file_bytes)
