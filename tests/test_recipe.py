"""Specification of the recipe: validation messages, overrides, include/exclude, canonical JSON."""
from __future__ import annotations

import json

import pytest

from compression.errors import RecipeError
from compression.recipe import PruneSpec, QuantizeSpec, Recipe


def rejects(values: dict, *fragments: str) -> str:
    """Assert the recipe is refused with a RecipeError whose message holds every fragment."""
    with pytest.raises(RecipeError) as caught:
        Recipe.from_dict(values)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# --- the empty recipe ---------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, {}])
def test_a_missing_or_empty_recipe_is_empty(values: dict | None) -> None:
    recipe = Recipe.from_dict(values)
    assert recipe.is_empty
    assert recipe.to_json() == "{}"


def test_a_recipe_whose_overrides_only_switch_techniques_off_is_empty() -> None:
    recipe = Recipe.from_dict({"overrides": {"fc*": {"prune": None, "quantize": None}}})
    assert recipe.is_empty


def test_a_recipe_with_a_section_is_not_empty() -> None:
    assert not Recipe.from_dict({"quantize": {"scheme": "linear", "bits": 8}}).is_empty


# --- unknown keys ------------------------------------------------------------------------


def test_an_unknown_top_level_key_is_named_with_the_allowed_keys() -> None:
    rejects({"prunes": {}}, "'prunes'", "prune, quantize, overrides, include, exclude")


def test_an_unknown_prune_key_is_named_with_the_allowed_keys() -> None:
    rejects({"prune": {"amout": 0.5}}, "prune", "'amout'", "method, amount, threshold, scope")


def test_an_unknown_quantize_key_is_named_with_the_allowed_keys() -> None:
    rejects({"quantize": {"bit": 4}}, "quantize", "'bit'", "scheme, bits, granularity, group_size")


def test_a_section_that_is_not_an_object_is_refused() -> None:
    rejects({"prune": 0.5}, "prune must be a JSON object", "0.5")


# --- prune section -----------------------------------------------------------------------


def test_an_unknown_prune_method_lists_the_methods() -> None:
    rejects(
        {"prune": {"method": "lottery", "amount": 0.5}},
        "prune.method",
        "'lottery'",
        "'magnitude', 'random', 'structured', 'n:m'",
    )


def test_an_unknown_scope_lists_the_scopes() -> None:
    rejects({"prune": {"amount": 0.5, "scope": "model"}}, "prune.scope", "'model'", "'layer', 'global'")


def test_an_unknown_structured_norm_lists_the_norms() -> None:
    rejects(
        {"prune": {"method": "structured", "amount": 0.5, "norm": "l3"}}, "prune.norm", "'l3'", "'l1', 'l2'"
    )


@pytest.mark.parametrize("amount", [-0.1, 1.5, "half", True])
def test_an_amount_outside_zero_to_one_is_refused_with_the_range(amount: object) -> None:
    rejects({"prune": {"amount": amount}}, "prune.amount", "a number between 0 and 1", repr(amount))


@pytest.mark.parametrize("amount", [0, 0.0, 1, 1.0, 0.5])
def test_amounts_from_zero_to_one_inclusive_are_accepted(amount: float) -> None:
    assert Recipe.from_dict({"prune": {"amount": amount}}).prune.amount == amount


def test_amount_and_threshold_together_are_refused() -> None:
    rejects({"prune": {"amount": 0.5, "threshold": 0.1}}, "either amount or threshold, not both")


@pytest.mark.parametrize("threshold", [-0.1, float("inf"), float("nan"), "0.1"])
def test_a_threshold_that_is_not_a_finite_non_negative_number_is_refused(threshold: object) -> None:
    rejects({"prune": {"threshold": threshold}}, "prune.threshold", "a finite number >= 0")


def test_magnitude_pruning_without_amount_or_threshold_is_refused() -> None:
    rejects({"prune": {"method": "magnitude"}}, "'magnitude'", "needs an amount or a threshold")


def test_random_pruning_needs_an_amount() -> None:
    rejects({"prune": {"method": "random", "threshold": 0.1}}, "'random'", "needs an amount")


def test_n_m_pruning_refuses_an_amount() -> None:
    rejects({"prune": {"method": "n:m", "amount": 0.5}}, "'n:m'", "takes n and m, not amount or threshold")


def test_n_larger_than_m_is_refused_with_the_range() -> None:
    rejects({"prune": {"method": "n:m", "n": 5, "m": 4}}, "prune.n", "an integer between 0 and 4", "5")


def test_a_negative_seed_is_refused() -> None:
    rejects({"prune": {"method": "random", "amount": 0.5, "seed": -1}}, "prune.seed", "an integer >= 0")


# --- quantize section --------------------------------------------------------------------


def test_an_unknown_scheme_lists_the_schemes() -> None:
    rejects({"quantize": {"scheme": "ternary"}}, "quantize.scheme", "'ternary'", "'linear', 'pow2', 'kmeans', 'float'")


@pytest.mark.parametrize(
    ("scheme", "bits", "low", "high"),
    [
        ("linear", 0, 1, 16),
        ("linear", 17, 1, 16),
        ("pow2", 1, 2, 8),
        ("pow2", 9, 2, 8),
        ("kmeans", 0, 1, 8),
        ("kmeans", 9, 1, 8),
        ("linear", 4.0, 1, 16),
        ("linear", True, 1, 16),
    ],
)
def test_bits_outside_the_schemes_range_are_refused_with_that_range(scheme: str, bits: object, low: int, high: int) -> None:
    rejects(
        {"quantize": {"scheme": scheme, "bits": bits}},
        "quantize.bits",
        f"an integer between {low} and {high}",
        f"got {bits!r}",
    )


@pytest.mark.parametrize(("scheme", "bits"), [("linear", 1), ("linear", 16), ("pow2", 2), ("pow2", 8), ("kmeans", 1), ("kmeans", 8)])
def test_bits_at_the_ends_of_each_schemes_range_are_accepted(scheme: str, bits: int) -> None:
    assert Recipe.from_dict({"quantize": {"scheme": scheme, "bits": bits}}).quantize.bits == bits


def test_an_unknown_granularity_lists_the_granularities() -> None:
    rejects(
        {"quantize": {"scheme": "linear", "granularity": "per_row"}},
        "quantize.granularity",
        "'per_row'",
        "'per_tensor', 'per_channel', 'per_group'",
    )


def test_pow2_refuses_per_group_and_names_what_it_allows() -> None:
    rejects({"quantize": {"scheme": "pow2", "granularity": "per_group"}}, "quantize.granularity", "'per_tensor' or 'per_channel'")


def test_a_group_size_below_one_is_refused() -> None:
    rejects({"quantize": {"granularity": "per_group", "group_size": 0}}, "quantize.group_size", "an integer >= 1")


def test_symmetric_must_be_a_boolean() -> None:
    rejects({"quantize": {"symmetric": "yes"}}, "quantize.symmetric", "true or false")


def test_an_unknown_float_format_lists_the_formats() -> None:
    rejects(
        {"quantize": {"scheme": "float", "format": "fp4"}},
        "quantize.format",
        "'fp4'",
        "'fp16', 'bf16', 'fp8_e4m3', 'fp8_e5m2'",
    )


@pytest.mark.parametrize(("format_name", "bits"), [("fp16", 16), ("bf16", 16), ("fp8_e4m3", 8), ("fp8_e5m2", 8)])
def test_a_float_formats_bits_come_from_the_format(format_name: str, bits: int) -> None:
    assert QuantizeSpec(scheme="float", format=format_name, bits=3).bits == bits


def test_kmeans_shares_one_codebook_per_tensor_whatever_granularity_is_given() -> None:
    assert QuantizeSpec(scheme="kmeans", bits=4, granularity="per_channel").granularity == "per_tensor"


# --- overrides, include, exclude ---------------------------------------------------------


def test_overrides_that_are_not_an_object_are_refused() -> None:
    rejects({"overrides": "fc*"}, "recipe.overrides must map glob patterns to sections", "'fc*'")


def test_an_override_that_is_not_an_object_is_refused() -> None:
    rejects({"overrides": {"fc*": 8}}, "overrides['fc*'] must be a JSON object", "8")


def test_an_override_with_an_unknown_section_names_the_pattern_and_the_allowed_sections() -> None:
    rejects({"overrides": {"fc*": {"quantise": {"bits": 4}}}}, "overrides['fc*']", "'quantise'", "prune, quantize")


def test_an_override_section_that_is_neither_object_nor_null_is_refused() -> None:
    rejects({"overrides": {"fc*": {"prune": 0.5}}}, "overrides['fc*'].prune must be an object or null")


def test_an_override_with_an_unknown_field_names_the_pattern_and_the_field() -> None:
    rejects(
        {"prune": {"amount": 0.5}, "overrides": {"fc*": {"prune": {"amout": 0.1}}}},
        "overrides['fc*'].prune",
        "'amout'",
    )


def test_an_override_with_a_bad_value_is_refused_when_the_recipe_is_built() -> None:
    rejects({"quantize": {"bits": 8}, "overrides": {"fc*": {"quantize": {"bits": 99}}}}, "quantize.bits", "99")


def test_include_must_be_a_list_of_patterns() -> None:
    rejects({"include": [1, 2]}, "recipe.include must be a list of glob patterns")


def test_a_single_include_pattern_is_taken_as_a_list_of_one() -> None:
    assert Recipe.from_dict({"include": "*.bias"}).include == ("*.bias",)


def test_a_parameter_without_a_matching_override_gets_the_recipe_wide_sections() -> None:
    recipe = Recipe.from_dict({"prune": {"amount": 0.5}, "overrides": {"fc1.*": {"prune": {"amount": 0.9}}}})
    assert recipe.specs_for("conv1.weight")[0] == PruneSpec(amount=0.5)


def test_the_last_matching_override_wins() -> None:
    recipe = Recipe.from_dict(
        {
            "quantize": {"bits": 8},
            "overrides": {"fc*": {"quantize": {"bits": 4}}, "fc1.*": {"quantize": {"bits": 2}}},
        }
    )
    assert recipe.specs_for("fc1.weight")[1].bits == 2
    assert recipe.specs_for("fc2.weight")[1].bits == 4


def test_a_null_prune_override_turns_pruning_off_for_matched_parameters_only() -> None:
    recipe = Recipe.from_dict({"prune": {"amount": 0.5}, "overrides": {"conv1.weight": {"prune": None}}})
    assert recipe.specs_for("conv1.weight")[0] is None
    assert recipe.specs_for("conv2.weight")[0] is not None


def test_a_null_quantize_override_keeps_pruning_on() -> None:
    recipe = Recipe.from_dict(
        {"prune": {"amount": 0.5}, "quantize": {"bits": 4}, "overrides": {"fc*": {"quantize": None}}}
    )
    prune, quantize = recipe.specs_for("fc1.weight")
    assert (prune.amount, quantize) == (0.5, None)


def test_a_partial_override_merges_over_the_recipe_wide_section() -> None:
    recipe = Recipe.from_dict(
        {
            "quantize": {"scheme": "linear", "bits": 8, "granularity": "per_group", "group_size": 32, "symmetric": False},
            "overrides": {"fc*": {"quantize": {"bits": 3}}},
        }
    )
    assert recipe.specs_for("fc1.weight")[1] == QuantizeSpec(
        scheme="linear", bits=3, granularity="per_group", group_size=32, symmetric=False
    )


def test_an_override_can_set_a_section_the_recipe_does_not_have() -> None:
    recipe = Recipe.from_dict({"overrides": {"fc*": {"prune": {"amount": 0.3}}}})
    assert recipe.specs_for("fc1.weight")[0] == PruneSpec(amount=0.3)


def test_an_override_amount_replaces_a_recipe_wide_threshold() -> None:
    recipe = Recipe.from_dict({"prune": {"threshold": 0.1}, "overrides": {"fc*": {"prune": {"amount": 0.3}}}})
    prune = recipe.specs_for("fc1.weight")[0]
    assert (prune.amount, prune.threshold) == (0.3, None)


def test_an_override_threshold_replaces_a_recipe_wide_amount() -> None:
    recipe = Recipe.from_dict({"prune": {"amount": 0.3}, "overrides": {"fc*": {"prune": {"threshold": 0.1}}}})
    prune = recipe.specs_for("fc1.weight")[0]
    assert (prune.amount, prune.threshold) == (None, 0.1)


def test_an_override_can_switch_an_amount_recipe_to_n_m() -> None:
    recipe = Recipe.from_dict({"prune": {"amount": 0.5}, "overrides": {"fc*": {"prune": {"method": "n:m"}}}})
    assert recipe.specs_for("fc1.weight")[0] == PruneSpec(method="n:m", n=2, m=4)


def test_exclude_removes_a_default_parameter() -> None:
    recipe = Recipe.from_dict({"exclude": ["conv1.*"]})
    assert not recipe.selects("conv1.weight", compressible_by_default=True)


def test_include_adds_a_parameter_outside_the_default_set() -> None:
    recipe = Recipe.from_dict({"include": ["*.bias"]})
    assert recipe.selects("fc1.bias", compressible_by_default=False)


def test_exclude_wins_over_include() -> None:
    recipe = Recipe.from_dict({"include": ["*.bias"], "exclude": ["fc1.*"]})
    assert not recipe.selects("fc1.bias", compressible_by_default=False)


# --- JSON --------------------------------------------------------------------------------


def test_invalid_json_is_a_recipe_error() -> None:
    with pytest.raises(RecipeError, match="recipe is not valid JSON"):
        Recipe.from_json('{"prune": {"amount": 0.5,}}')


def test_json_that_is_not_an_object_is_a_recipe_error() -> None:
    with pytest.raises(RecipeError, match="recipe must be a JSON object"):
        Recipe.from_json("[1, 2]")


def test_to_json_round_trips_through_from_json() -> None:
    recipe = Recipe.from_dict(
        {
            "prune": {"method": "structured", "amount": 0.25, "norm": "l2", "scope": "global"},
            "quantize": {"scheme": "linear", "bits": 4, "granularity": "per_group", "group_size": 16},
            "overrides": {"fc*": {"prune": None, "quantize": {"bits": 8}}},
            "include": ["*.bias"],
            "exclude": ["conv1.bias"],
        }
    )
    assert Recipe.from_json(recipe.to_json()).to_json() == recipe.to_json()


def test_key_order_does_not_change_the_canonical_json() -> None:
    first = Recipe.from_dict({"quantize": {"bits": 4, "scheme": "linear"}, "prune": {"scope": "global", "amount": 0.5}})
    second = Recipe.from_dict({"prune": {"amount": 0.5, "scope": "global"}, "quantize": {"scheme": "linear", "bits": 4}})
    assert first.to_json() == second.to_json()


def test_spelling_out_defaults_does_not_change_the_canonical_json() -> None:
    short = Recipe.from_dict({"prune": {"amount": 0.5}, "quantize": {}})
    spelled = Recipe.from_dict(
        {
            "prune": {"method": "magnitude", "amount": 0.5, "scope": "layer"},
            "quantize": {"scheme": "linear", "bits": 8, "granularity": "per_channel", "symmetric": True},
        }
    )
    assert short.to_json() == spelled.to_json()


def test_fields_that_do_not_affect_the_method_are_left_out_of_the_canonical_json() -> None:
    with_extras = Recipe.from_dict({"prune": {"amount": 0.5, "seed": 7, "norm": "l2"}, "quantize": {"scheme": "kmeans", "bits": 4, "group_size": 8}})
    without = Recipe.from_dict({"prune": {"amount": 0.5}, "quantize": {"scheme": "kmeans", "bits": 4}})
    assert with_extras.to_json() == without.to_json()


@pytest.mark.parametrize(
    ("integer", "real"),
    [
        ({"prune": {"amount": 1}}, {"prune": {"amount": 1.0}}),
        ({"prune": {"threshold": 0}}, {"prune": {"threshold": 0.0}}),
        (
            {"prune": {"amount": 0.5}, "overrides": {"fc*": {"prune": {"amount": 1}}}},
            {"prune": {"amount": 0.5}, "overrides": {"fc*": {"prune": {"amount": 1.0}}}},
        ),
    ],
)
def test_equal_recipes_give_equal_json_whether_a_number_is_written_as_int_or_float(integer: dict, real: dict) -> None:
    first, second = Recipe.from_dict(integer), Recipe.from_dict(real)
    assert first == second
    assert first.to_json() == second.to_json()


def test_to_json_with_indent_is_the_same_recipe() -> None:
    recipe = Recipe.from_dict({"prune": {"amount": 0.5}})
    assert json.loads(recipe.to_json(indent=2)) == json.loads(recipe.to_json())


def test_an_invalid_override_names_its_pattern_and_the_field() -> None:
    with pytest.raises(RecipeError, match=r"overrides\['fc1\.\*'\]: quantize\.bits must be an integer between 1 and 16; got 99"):
        Recipe.from_dict({"quantize": {"scheme": "linear", "bits": 4}, "overrides": {"fc1.*": {"quantize": {"bits": 99}}}})
