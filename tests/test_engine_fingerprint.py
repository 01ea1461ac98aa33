"""Specification of ``weights_fingerprint``: equal weights hash equal, any change shows, and
compressing a (shared) base model leaves its fingerprint as it was."""
from __future__ import annotations

import copy
import re

import pytest
import torch

import compression
from compression.model import weights_fingerprint


@pytest.fixture(scope="module")
def mlp() -> compression.LoadedModel:
    return compression.load_model("mlp")


def test_fingerprint_is_sixteen_hex_digits(mlp):
    assert re.fullmatch(r"[0-9a-f]{16}", weights_fingerprint(mlp.module))


def test_same_weights_give_the_same_fingerprint(mlp):
    assert weights_fingerprint(compression.load_model("mlp").module) == weights_fingerprint(mlp.module)
    assert weights_fingerprint(copy.deepcopy(mlp.module)) == weights_fingerprint(mlp.module)


def test_one_changed_weight_changes_the_fingerprint(mlp):
    changed = copy.deepcopy(mlp.module)
    with torch.no_grad():
        weight = changed.state_dict()["fc2.weight"]
        weight[3, 7] = torch.nextafter(weight[3, 7], torch.tensor(float("inf")))  # one ulp
    assert weights_fingerprint(changed) != weights_fingerprint(mlp.module)


def test_dtype_and_names_are_part_of_the_fingerprint():
    layer = torch.nn.Linear(3, 2)
    as_double = copy.deepcopy(layer).double()
    renamed = torch.nn.Sequential(copy.deepcopy(layer))  # same values under "0.weight", "0.bias"
    assert len({weights_fingerprint(layer), weights_fingerprint(as_double), weights_fingerprint(renamed)}) == 3


@pytest.mark.parametrize(
    "recipe",
    [
        {"prune": {"method": "magnitude", "amount": 0.9, "scope": "global"}},
        {"prune": {"method": "structured", "amount": 0.5}, "quantize": {"scheme": "linear", "bits": 2}},
        {"prune": {"method": "n:m", "n": 2, "m": 4}, "quantize": {"scheme": "kmeans", "bits": 3}},
        {"quantize": {"scheme": "float", "format": "fp8_e4m3"}},
    ],
    ids=["magnitude", "structured+linear", "n:m+kmeans", "fp8"],
)
def test_compress_leaves_the_base_models_fingerprint_unchanged(mlp, recipe):
    before = weights_fingerprint(mlp.module)
    result = compression.compress(mlp, recipe)
    assert weights_fingerprint(mlp.module) == before
    assert weights_fingerprint(result.module) != before  # the compressed copy is what changed
