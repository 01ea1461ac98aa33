"""Fuzzing the engine: random small models × random recipes, every invariant checked per case.

The strategies and the per-case check live in ``fuzz_cases`` (``bench/fuzz.py`` runs the same
cases 10,000 at a time). Per case: ``compress`` succeeds or raises a ``CompressionError`` with
a one-line message, exactly when the recipe is invalid; the input model is unchanged; zeros
stay +0.0 and pruned weights are +0.0; the reported sizes add up to the packed file's bytes;
the file loads back bit for bit; the canonical JSON of the recipe is the same recipe.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, seed, settings
from torch import nn

import fuzz_cases
from compression import load_packed, save_packed
from compression.compress import compress
from compression.errors import RecipeError
from compression.pruning import compute_masks
from compression.recipe import FLOAT_FORMATS, GRANULARITIES, PRUNE_METHODS, PRUNE_SCOPES, QUANT_SCHEMES, SCHEME_BITS, PruneSpec, Recipe
from fuzz_cases import LayerSpec, ModelSpec, case_labels, cases, check_case, recipes

# Expected on these inputs, not failures: scikit-learn's k-means++ finds fewer distinct clusters
# than asked on a few distinct values, and its float32 squares overflow on weights of 1e30.
pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
]

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# One layer of each odd kind: a single weight, 1×1 kernels, all zeros, grouped conv with ties,
# -0.0 among the weights, huge and tiny magnitudes, output channels on axis 1 (a grouped
# ConvTranspose2d, GPT-2's Conv1D); a BatchNorm (int64 buffer) and a tied weight.
ODD_MODEL = ModelSpec(
    layers=(
        LayerSpec("Linear", 1, 1, (), True, "normal", 1.0, 1),
        LayerSpec("Conv2d", 3, 2, (1, 1), False, "sparse", 1e30, 2),
        LayerSpec("Conv1d", 2, 3, (3,), True, "zero", 1.0, 3),
        LayerSpec("Conv2d", 4, 4, (3, 2), True, "ties", 1e-30, 4, groups=2),
        LayerSpec("Linear", 9, 7, (), False, "sparse", 1e-3, 5),
        LayerSpec("ConvTranspose2d", 4, 6, (2, 3), True, "sparse", 1.0, 6, groups=2),
        LayerSpec("Conv1D", 5, 3, (), True, "ties", 1e3, 7),
    ),
    norm=3,
    tied=True,
)


# --- random cases ------------------------------------------------------------------------


@FUZZ
@given(case=cases())
def test_a_random_recipe_on_a_random_model_compresses_or_is_refused_and_keeps_every_invariant(
    case: tuple[ModelSpec, dict | str],
) -> None:
    model, recipe = case
    check_case(model, recipe)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=cases())
def test_compressing_again_with_the_canonical_json_gives_the_same_weights(case: tuple[ModelSpec, dict | str]) -> None:
    model, recipe = case
    check_case(model, recipe, recompress=True)


# --- extremes, every option --------------------------------------------------------------


def _linear(bits: int, granularity: str, symmetric: bool) -> dict[str, Any]:
    return {"scheme": "linear", "bits": bits, "granularity": granularity, "symmetric": symmetric, "group_size": 2}


QUANTIZE_EXTREMES: list[dict[str, Any] | None] = [
    None,
    *(_linear(bits, g, s) for bits in SCHEME_BITS["linear"] for g in GRANULARITIES for s in (True, False)),
    *({"scheme": "pow2", "bits": bits, "granularity": g} for bits in SCHEME_BITS["pow2"] for g in ("per_tensor", "per_channel")),
    *({"scheme": "kmeans", "bits": bits} for bits in SCHEME_BITS["kmeans"]),
    *({"scheme": "float", "format": name} for name in FLOAT_FORMATS),
]
PRUNE_EXTREMES: list[dict[str, Any] | None] = [
    None,
    {"method": "magnitude", "amount": 0.0},
    {"method": "magnitude", "amount": 1.0, "scope": "layer"},
    {"method": "magnitude", "amount": 1.0, "scope": "global"},
    {"method": "magnitude", "threshold": 0.0},
    {"method": "magnitude", "threshold": 1e30, "scope": "global"},
    {"method": "random", "amount": 1.0, "seed": 0},
    {"method": "random", "amount": 0.0, "scope": "global", "seed": 2**31},
    {"method": "structured", "amount": 1.0, "norm": "l2", "scope": "global"},
    {"method": "structured", "amount": 0.0, "norm": "l1"},
    {"method": "structured", "threshold": 1e30, "norm": "l2"},
    {"method": "n:m", "n": 0, "m": 4},
    {"method": "n:m", "n": 4, "m": 4},
    {"method": "n:m", "n": 1, "m": 1},
    {"method": "n:m", "n": 1, "m": 64},
]


def _section_id(section: dict[str, Any] | None) -> str:
    return "none" if section is None else "-".join(str(value) for value in section.values())


@pytest.mark.parametrize("quantize", QUANTIZE_EXTREMES, ids=_section_id)
@pytest.mark.parametrize("prune", PRUNE_EXTREMES, ids=_section_id)
def test_every_extreme_prune_and_quantize_section_keeps_every_invariant(prune: dict | None, quantize: dict | None) -> None:
    recipe = {key: value for key, value in (("prune", prune), ("quantize", quantize)) if value is not None}
    assert check_case(ODD_MODEL, {**recipe, "include": ["*.bias"]}).outcome == "compressed"


def test_the_extremes_cover_every_method_scheme_granularity_format_and_bit_limit() -> None:
    prune_sections = [section for section in PRUNE_EXTREMES if section]
    quantize_sections = [section for section in QUANTIZE_EXTREMES if section]
    assert {section["method"] for section in prune_sections} == set(PRUNE_METHODS)
    assert {section.get("scope", "layer") for section in prune_sections} == set(PRUNE_SCOPES)
    assert {0.0, 1.0} <= {section.get("amount") for section in prune_sections}
    assert {section["scheme"] for section in quantize_sections} == set(QUANT_SCHEMES)
    assert {section["format"] for section in quantize_sections if section["scheme"] == "float"} == set(FLOAT_FORMATS)
    linear = [section for section in quantize_sections if section["scheme"] == "linear"]
    assert {(s["granularity"], s["symmetric"]) for s in linear} == set(itertools.product(GRANULARITIES, (True, False)))
    for scheme, limits in SCHEME_BITS.items():
        assert {s["bits"] for s in quantize_sections if s["scheme"] == scheme} == set(limits)


OPTION_LABELS = (
    [f"method:{m}" for m in PRUNE_METHODS] + [f"scope:{s}" for s in PRUNE_SCOPES] + [f"scheme:{s}" for s in QUANT_SCHEMES]
    + [f"granularity:{g}" for g in GRANULARITIES] + [f"format:{f}" for f in FLOAT_FORMATS]
    + ["amount:0", "amount:1", "threshold", "bits:1", "bits:2", "bits:8", "bits:16", "symmetric:True", "symmetric:False",
       "overrides", "overrides:empty", "method:none", "scheme:none"]
)


def test_the_random_recipes_reach_every_option() -> None:
    seen: set[str] = set()

    @seed(0)
    @settings(max_examples=400, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(recipe=recipes())
    def collect(recipe: dict) -> None:
        seen.update(case_labels(recipe))

    collect()
    assert not set(OPTION_LABELS) - seen, f"never drawn: {sorted(set(OPTION_LABELS) - seen)}"


@pytest.mark.parametrize(
    ("recipe", "outcome"),
    [
        ({"overrides": {}}, "compressed"),
        ({"prune": {"amount": 0.5}, "quantize": {"bits": 4}, "overrides": {}}, "compressed"),
        ({"prune": {"amount": 0.5}, "overrides": {"*": {}}}, "compressed"),
        ({"prune": {"amount": 0.5}, "quantize": {"bits": 4}, "overrides": {"*": {"prune": None, "quantize": None}}}, "compressed"),
        ({"prune": {"amount": 0.5}, "quantize": {"bits": 4}, "overrides": {"*": {"prune": {}, "quantize": {}}}}, "compressed"),
        ({"overrides": {"*": {"quantize": {}}}}, "compressed"),  # the default section: linear, 8 bits
        ({"overrides": {"*": {"prune": {}}}}, "refused"),  # magnitude without an amount or a threshold
        ({"prune": {"threshold": 0.1}, "overrides": {"1.weight": {"prune": {"amount": 1}}, "nothing.*": {"quantize": None}}}, "compressed"),
        ({}, "compressed"),
    ],
    ids=["empty overrides", "empty overrides with sections", "an empty override", "null sections", "empty sections",
         "empty quantize section alone", "empty prune section alone", "partial overrides", "empty recipe"],
)
def test_empty_and_null_overrides_keep_every_invariant(recipe: dict, outcome: str) -> None:
    assert check_case(ODD_MODEL, recipe).outcome == outcome


def test_an_empty_recipe_changes_nothing_but_the_sign_of_zero() -> None:
    assert check_case(ODD_MODEL, {}).outcome == "compressed"
    loaded = ODD_MODEL.loaded()
    state = compress(loaded, {}).module.state_dict()
    for name, tensor in loaded.module.state_dict().items():
        assert torch.equal(state[name], tensor), name  # -0.0 == 0.0: only the sign bit of a zero may differ


# --- the check itself bites ----------------------------------------------------------------

SMALL = ModelSpec((LayerSpec("Linear", 4, 3, (), True, "normal", 1.0, 0),))


def test_a_valid_case_passes_the_check() -> None:
    assert check_case(SMALL, {"prune": {"amount": 0.5}, "quantize": {"bits": 4}}) == fuzz_cases.CaseOutcome("compressed")


def test_an_invalid_recipe_is_refused_with_its_message() -> None:
    outcome = check_case(SMALL, {"quantize": {"bits": 17}})
    assert outcome.outcome == "refused"
    assert "quantize.bits must be an integer between 1 and 16; got 17" in outcome.message


def test_the_check_catches_a_compress_that_changes_its_input(monkeypatch: pytest.MonkeyPatch) -> None:
    def changing(model: Any, recipe: Any) -> Any:
        result = compress(model, recipe)
        with torch.no_grad():
            next(model.module.parameters()).add_(1.0)
        return result

    monkeypatch.setattr(fuzz_cases, "compress", changing)
    with pytest.raises(AssertionError, match="compress changed the input model"):
        check_case(SMALL, {"quantize": {"bits": 4}})


def test_the_check_catches_a_pruned_weight_that_is_not_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    def leaky(model: Any, recipe: Any) -> Any:
        result = compress(model, recipe)
        with torch.no_grad():
            result.module[0].weight[0, 0] = 1.0
        return result

    monkeypatch.setattr(fuzz_cases, "compress", leaky)
    with pytest.raises(AssertionError, match="pruned weight is not exactly"):
        check_case(SMALL, {"prune": {"amount": 1.0}})


def test_the_check_catches_a_wrong_file_size_in_the_report(monkeypatch: pytest.MonkeyPatch) -> None:
    def misreporting(model: Any, recipe: Any) -> Any:
        result = compress(model, recipe)
        return dataclasses.replace(result, report=dataclasses.replace(result.report, file_bytes=result.report.file_bytes + 1))

    monkeypatch.setattr(fuzz_cases, "compress", misreporting)
    with pytest.raises(AssertionError, match="file bytes"):
        check_case(SMALL, {"quantize": {"bits": 4}})


def test_the_check_catches_a_packed_file_that_does_not_load_back_bit_for_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    def flipping(path: Path) -> tuple[dict, dict]:
        state, index = load_packed(path)
        state["0.weight"] = (state["0.weight"].view(torch.int32) ^ 1).view(torch.float32)
        return state, index

    monkeypatch.setattr(fuzz_cases, "load_packed", flipping)
    with pytest.raises(AssertionError, match="does not load back bit for bit"):
        check_case(SMALL, {"quantize": {"bits": 4}})


def test_the_check_catches_the_refusal_of_a_valid_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    def refusing(model: Any, recipe: Any) -> Any:
        raise RecipeError("prune.amount must be a number between 0 and 1; got 0.5.")

    monkeypatch.setattr(fuzz_cases, "compress", refusing)
    with pytest.raises(AssertionError, match="a valid recipe was refused"):
        check_case(SMALL, {"prune": {"amount": 0.5}})


def test_an_exception_other_than_a_compression_error_goes_through_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    def crashing(model: Any, recipe: Any) -> Any:
        raise ValueError("boom")  # CompressionError is a ValueError; a bare one is a bug

    monkeypatch.setattr(fuzz_cases, "compress", crashing)
    with pytest.raises(ValueError, match="boom"):
        check_case(SMALL, {"prune": {"amount": 0.5}})


# --- regressions: bugs the fuzzer found ----------------------------------------------------


def tied_linears() -> nn.Sequential:
    torch.manual_seed(0)
    first, second = nn.Linear(4, 4), nn.Linear(4, 4)
    second.weight = first.weight
    return nn.Sequential(first, second).eval()


def test_a_tied_weight_loads_back_from_the_packed_file_as_the_compressed_module_holds_it(tmp_path: Path) -> None:
    result = compress(tied_linears(), {"quantize": {"bits": 2}})
    save_packed(result, tmp_path / "tied.packed")
    state, _ = load_packed(tmp_path / "tied.packed")
    compressed = result.module.state_dict()
    assert torch.equal(compressed["1.weight"], compressed["0.weight"])
    assert torch.equal(state["1.weight"].view(torch.int32), compressed["1.weight"].view(torch.int32))


def test_a_tied_weight_is_compressed_once_even_when_both_names_are_selected() -> None:
    result = compress(tied_linears(), {"quantize": {"bits": 2}, "include": ["*.weight"], "overrides": {"1.*": {"quantize": {"bits": 8}}}})
    assert [layer.name for layer in result.report.layers] == ["0.weight"]
    assert check_case(ModelSpec((LayerSpec("Linear", 4, 4, (), True, "normal", 1.0, 0),), tied=True), {"include": ["*.weight"], "quantize": {"bits": 2}}).outcome == "compressed"


@pytest.mark.parametrize(
    ("recipe", "name"),
    [
        ({"prune": {"amount": 0.5, "norm": "l2"}, "overrides": {"0.*": {"prune": {"method": "structured"}}}}, "0.weight"),
        ({"prune": {"method": "magnitude", "amount": 0.5, "seed": 7}, "overrides": {"0.*": {"prune": {"method": "random"}}}}, "0.weight"),
        ({"quantize": {"scheme": "pow2", "bits": 4, "symmetric": False}, "overrides": {"0.*": {"quantize": {"scheme": "linear"}}}}, "0.weight"),
        ({"quantize": {"scheme": "linear", "group_size": 3}, "overrides": {"0.*": {"quantize": {"granularity": "per_group"}}}}, "0.weight"),
    ],
    ids=["norm", "seed", "symmetric", "group_size"],
)
def test_an_override_does_not_inherit_a_field_the_canonical_json_leaves_out(recipe: dict, name: str) -> None:
    original = Recipe.from_dict(recipe)
    saved = Recipe.from_json(original.to_json())
    assert original.specs_for(name) == saved.specs_for(name)


def test_the_canonical_json_keeps_the_order_of_the_override_patterns(tmp_path: Path) -> None:
    recipe = {"quantize": {"bits": 8}, "overrides": {"*.bias": {"quantize": {"bits": 2}}, "*": {"quantize": None}}, "include": ["*.bias"]}
    original = Recipe.from_dict(recipe)
    assert list(json.loads(original.to_json())["overrides"]) == ["*.bias", "*"]
    assert Recipe.from_json(original.to_json()).specs_for("0.bias") == original.specs_for("0.bias") == (None, None)
    result = compress(nn.Sequential(nn.Linear(3, 2)), recipe)
    save_packed(result, tmp_path / "ordered.packed")
    _, index = load_packed(tmp_path / "ordered.packed")
    assert list(index["recipe"]["overrides"]) == list(result.report.recipe["overrides"]) == ["*.bias", "*"]


@pytest.mark.parametrize(
    ("norm", "weight", "amount", "keep"),
    [
        # float32 squares of |w| > 1.8e19 overflow: every RMS was inf and nothing was cut
        ("l2", [[1e20, 1e20], [3e20, 1.0], [2e20, 0.0]], 1 / 3, [False, True, True]),
        ("l2", [[1e20, 1e20], [3e20, 1.0], [2e20, 0.0]], 1.0, [False, False, False]),
        # float32 sums of |w| near the largest float overflow: two channels tied at inf
        ("l1", [[3e38, 3e38], [2e38, 2e38], [3e38, 0.0]], 2 / 3, [True, False, False]),
        ("l1", [[3e38, 3e38], [2e38, 2e38], [3e38, 0.0]], 1.0, [False, False, False]),
    ],
)
def test_structured_pruning_ranks_channels_of_huge_weights(norm: str, weight: list, amount: float, keep: list[bool]) -> None:
    spec = PruneSpec(method="structured", amount=amount, norm=norm)
    mask = compute_masks({"w": torch.tensor(weight)}, {"w": spec})["w"]
    assert mask.keep[:, 0].tolist() == keep
