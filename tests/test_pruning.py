"""Specification of pruning: magnitude (threshold/amount, layer/global), random, structured, n:m.

Masks are cross-checked against ``torch.nn.utils.prune`` on random weights (no ties).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.utils.prune as torch_prune
from torch import nn

from compression.compress import compress
from compression.errors import RecipeError
from compression.pruning import compute_masks
from compression.recipe import PruneSpec


def random_weight(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def keep_of(weight: torch.Tensor, spec: PruneSpec) -> torch.Tensor:
    return compute_masks({"w": weight}, {"w": spec})["w"].keep


def small_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 12), nn.Linear(12, 5)
    ).eval()


# --- magnitude ---------------------------------------------------------------------------


def test_magnitude_threshold_zeroes_exactly_the_weights_below_it() -> None:
    weight = random_weight(16, 32)
    keep = keep_of(weight, PruneSpec(method="magnitude", threshold=0.5))
    assert torch.equal(keep, weight.abs() >= 0.5)


def test_magnitude_threshold_is_reported_as_the_cut() -> None:
    masks = compute_masks({"w": random_weight(4, 4)}, {"w": PruneSpec(threshold=0.3)})
    assert masks["w"].threshold == 0.3


@pytest.mark.parametrize("amount", [0.1, 0.37, 0.5, 0.9])
def test_magnitude_layer_amount_prunes_that_fraction_of_the_smallest_weights(amount: float) -> None:
    weight = random_weight(20, 50)
    keep = keep_of(weight, PruneSpec(amount=amount))
    assert int((~keep).sum()) == round(amount * weight.numel())
    assert float(weight.abs()[~keep].max()) < float(weight.abs()[keep].min())


def test_magnitude_amount_reports_the_smallest_kept_magnitude_as_the_cut() -> None:
    weight = random_weight(10, 10)
    mask = compute_masks({"w": weight}, {"w": PruneSpec(amount=0.4)})["w"]
    assert mask.threshold == float(weight.abs()[mask.keep].min())


@pytest.mark.parametrize("amount", [0.0, 0.2, 0.5, 0.73, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_magnitude_layer_scope_equals_torch_l1_unstructured(amount: float, seed: int) -> None:
    weight = random_weight(12, 30, seed=seed)
    reference = nn.Linear(30, 12)
    reference.weight.data = weight.clone()
    torch_prune.l1_unstructured(reference, "weight", amount=amount)
    assert torch.equal(keep_of(weight, PruneSpec(amount=amount)), reference.weight_mask.bool())


@pytest.mark.parametrize("amount", [0.0, 0.3, 0.5, 0.81, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_magnitude_global_scope_equals_torch_global_unstructured(amount: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    layers = [nn.Linear(30, 12), nn.Conv2d(4, 6, 3), nn.Linear(12, 7)]
    for scale, layer in zip((1.0, 0.2, 3.0), layers):  # unequal scales: global differs from per-layer
        layer.weight.data = torch.randn(layer.weight.shape, generator=generator) * scale
    weights = {f"{i}.weight": layer.weight.detach().clone() for i, layer in enumerate(layers)}
    spec = PruneSpec(amount=amount, scope="global")
    masks = compute_masks(weights, {name: spec for name in weights})
    torch_prune.global_unstructured(
        [(layer, "weight") for layer in layers], pruning_method=torch_prune.L1Unstructured, amount=amount
    )
    for i, layer in enumerate(layers):
        assert torch.equal(masks[f"{i}.weight"].keep, layer.weight_mask.bool())


def test_global_scope_shares_one_cut_across_layers() -> None:
    weights = {"small": random_weight(10, 10, seed=1) * 0.1, "large": random_weight(10, 10, seed=2)}
    spec = PruneSpec(amount=0.5, scope="global")
    masks = compute_masks(weights, {name: spec for name in weights})
    assert masks["small"].threshold == masks["large"].threshold
    assert (~masks["small"].keep).sum() > (~masks["large"].keep).sum()


def test_tensors_with_different_global_sections_are_pooled_separately() -> None:
    weights = {"a": random_weight(10, 10, seed=1) * 0.1, "b": random_weight(10, 10, seed=2)}
    specs = {"a": PruneSpec(amount=0.5, scope="global"), "b": PruneSpec(amount=0.2, scope="global")}
    masks = compute_masks(weights, specs)
    assert [int((~masks[name].keep).sum()) for name in ("a", "b")] == [50, 20]


def test_weights_tied_at_the_cut_are_kept_together() -> None:
    weight = torch.tensor([0.1, 0.2, 0.2, 0.2, 0.3])
    keep = keep_of(weight, PruneSpec(amount=0.4))  # 2 of 5, but the 2nd smallest ties with two more
    assert keep.tolist() == [False, True, True, True, True]


def test_amount_zero_keeps_every_weight() -> None:
    assert bool(keep_of(random_weight(5, 5), PruneSpec(amount=0.0)).all())


def test_amount_one_prunes_every_weight() -> None:
    assert not bool(keep_of(random_weight(5, 5), PruneSpec(amount=1.0)).any())


# --- random ------------------------------------------------------------------------------


def test_random_pruning_with_the_same_seed_gives_the_same_mask() -> None:
    weight = random_weight(16, 16)
    spec = PruneSpec(method="random", amount=0.5, seed=3)
    assert torch.equal(keep_of(weight, spec), keep_of(weight, spec))


def test_random_pruning_with_another_seed_gives_another_mask() -> None:
    weight = random_weight(16, 16)
    first = keep_of(weight, PruneSpec(method="random", amount=0.5, seed=1))
    second = keep_of(weight, PruneSpec(method="random", amount=0.5, seed=2))
    assert not torch.equal(first, second)


@pytest.mark.parametrize("amount", [0.1, 0.5, 0.75])
def test_random_pruning_removes_exactly_the_amount(amount: float) -> None:
    weight = random_weight(20, 20)
    keep = keep_of(weight, PruneSpec(method="random", amount=amount))
    assert int((~keep).sum()) == round(amount * 400)


def test_random_pruning_ignores_the_weights_values() -> None:
    spec = PruneSpec(method="random", amount=0.5, seed=0)
    assert torch.equal(keep_of(random_weight(8, 8, seed=1), spec), keep_of(random_weight(8, 8, seed=2), spec))


def test_random_pruning_has_no_threshold() -> None:
    masks = compute_masks({"w": random_weight(4, 4)}, {"w": PruneSpec(method="random", amount=0.5)})
    assert masks["w"].threshold is None


def test_random_pruning_in_compress_is_deterministic() -> None:
    recipe = {"prune": {"method": "random", "amount": 0.6, "scope": "global", "seed": 5}}
    first, second = compress(small_model(), recipe), compress(small_model(), recipe)
    for name, value in first.module.state_dict().items():
        assert torch.equal(value, second.module.state_dict()[name])


# --- structured --------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_structured_pruning_zeroes_whole_output_channels(norm: str) -> None:
    weight = random_weight(16, 4, 3, 3)
    keep = keep_of(weight, PruneSpec(method="structured", amount=0.25, norm=norm))
    rows = keep.reshape(16, -1)
    assert torch.equal(rows.all(dim=1), rows.any(dim=1))  # each channel all kept or all pruned
    assert int((~rows.any(dim=1)).sum()) == 4


@pytest.mark.parametrize("shape", [(10, 24), (12, 3, 3, 3)])
@pytest.mark.parametrize("amount", [0.2, 0.5, 0.7])
def test_structured_l2_removes_the_channels_torch_ln_structured_removes(shape: tuple[int, ...], amount: float) -> None:
    weight = random_weight(*shape)
    reference = nn.Linear(shape[1], shape[0]) if len(shape) == 2 else nn.Conv2d(shape[1], shape[0], shape[2])
    reference.weight.data = weight.clone()
    torch_prune.ln_structured(reference, "weight", amount=amount, n=2, dim=0)
    keep = keep_of(weight, PruneSpec(method="structured", amount=amount, norm="l2"))
    assert torch.equal(keep, reference.weight_mask.bool())


@pytest.mark.parametrize("amount", [0.25, 0.6])
def test_structured_l1_removes_the_channels_torch_ln_structured_with_n1_removes(amount: float) -> None:
    weight = random_weight(10, 24)
    reference = nn.Linear(24, 10)
    reference.weight.data = weight.clone()
    torch_prune.ln_structured(reference, "weight", amount=amount, n=1, dim=0)
    keep = keep_of(weight, PruneSpec(method="structured", amount=amount, norm="l1"))
    assert torch.equal(keep, reference.weight_mask.bool())


def test_structured_threshold_removes_channels_whose_mean_magnitude_is_below_it() -> None:
    weight = torch.stack([torch.full((6,), value) for value in (0.1, -0.4, 0.2, 1.0)])
    keep = keep_of(weight, PruneSpec(method="structured", threshold=0.3, norm="l1"))
    assert keep.all(dim=1).tolist() == [False, True, False, True]


def test_global_structured_scores_channels_by_rms_so_wide_and_narrow_layers_compare() -> None:
    # Both layers have the same per-weight magnitude; a norm (not RMS) would favour the wide one.
    weights = {"narrow": torch.full((4, 2), 1.0), "wide": torch.full((4, 200), 0.9)}
    spec = PruneSpec(method="structured", amount=0.5, norm="l2", scope="global")
    masks = compute_masks(weights, {name: spec for name in weights})
    assert not bool(masks["wide"].keep.any())
    assert bool(masks["narrow"].keep.all())


# --- n:m ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (4, 8), (1, 2)])
def test_n_m_keeps_at_most_n_of_every_m_consecutive_input_weights(n: int, m: int) -> None:
    weight = random_weight(6, 32)
    keep = keep_of(weight, PruneSpec(method="n:m", n=n, m=m))
    assert int(keep.reshape(6, -1, m).sum(dim=2).max()) == n
    assert int(keep.reshape(6, -1, m).sum(dim=2).min()) == n


def test_n_m_keeps_the_largest_magnitudes_in_each_group() -> None:
    weight = torch.tensor([[0.1, -0.9, 0.3, 0.2, 5.0, -6.0, 0.0, 7.0]])
    keep = keep_of(weight, PruneSpec(method="n:m", n=2, m=4))
    assert keep.tolist() == [[False, True, True, False, False, True, False, True]]


def test_n_m_on_a_width_not_divisible_by_m_treats_the_short_last_group_alike() -> None:
    weight = torch.tensor([[1.0, 2.0, 3.0, 4.0, 0.5, 0.7, 0.6]])
    keep = keep_of(weight, PruneSpec(method="n:m", n=2, m=4))
    assert keep.tolist() == [[False, False, True, True, False, True, True]]


def test_n_m_on_a_conv_weight_groups_input_channels_at_each_kernel_position() -> None:
    weight = random_weight(4, 8, 3, 3)  # out, in, kh, kw
    keep = keep_of(weight, PruneSpec(method="n:m", n=2, m=4))
    assert keep.shape == weight.shape
    by_position = keep.movedim(1, -1).reshape(4, 3, 3, 2, 4)  # groups of 4 input channels
    assert bool((by_position.sum(dim=-1) == 2).all())


def test_n_m_with_n_equal_to_m_prunes_nothing() -> None:
    assert bool(keep_of(random_weight(3, 8), PruneSpec(method="n:m", n=4, m=4)).all())


def test_n_m_with_n_zero_prunes_everything() -> None:
    assert not bool(keep_of(random_weight(3, 8), PruneSpec(method="n:m", n=0, m=4)).any())


def test_n_m_ignores_global_scope() -> None:
    weights = {"a": random_weight(2, 8, seed=1) * 0.01, "b": random_weight(2, 8, seed=2)}
    spec = PruneSpec(method="n:m", n=2, m=4, scope="global")
    masks = compute_masks(weights, {name: spec for name in weights})
    assert [int(masks[name].keep.sum()) for name in ("a", "b")] == [8, 8]


# --- which parameters are pruned ---------------------------------------------------------


def test_compress_prunes_linear_and_conv_weights_by_default() -> None:
    result = compress(small_model(), {"prune": {"amount": 0.5}})
    assert [layer.name for layer in result.report.layers] == ["0.weight", "4.weight", "5.weight"]


def test_compress_leaves_biases_and_batchnorm_untouched_by_default() -> None:
    model = small_model()
    result = compress(model, {"prune": {"amount": 0.9}})
    compressed = result.module.state_dict()
    for name in ("0.bias", "1.weight", "1.bias", "1.running_mean", "4.bias", "5.bias"):
        assert torch.equal(compressed[name], model.state_dict()[name])


def test_include_adds_matching_parameters_to_the_pruned_set() -> None:
    result = compress(small_model(), {"prune": {"amount": 0.5}, "include": ["*.bias"]})
    assert "5.bias" in [layer.name for layer in result.report.layers]
    assert result.report.layer("5.bias").zeros == round(0.5 * 5)


def test_exclude_removes_matching_parameters_from_the_pruned_set() -> None:
    model = small_model()
    result = compress(model, {"prune": {"amount": 0.5}, "exclude": ["0.*"]})
    assert "0.weight" not in [layer.name for layer in result.report.layers]
    assert torch.equal(result.module.state_dict()["0.weight"], model.state_dict()["0.weight"])


def test_an_include_pattern_that_matches_nothing_is_a_recipe_error() -> None:
    with pytest.raises(RecipeError, match="recipe.include pattern 'head.*' matches no parameter"):
        compress(small_model(), {"prune": {"amount": 0.5}, "include": ["head.*"]})


def test_a_null_prune_override_keeps_that_layer_dense() -> None:
    result = compress(small_model(), {"prune": {"amount": 0.5}, "overrides": {"4.weight": {"prune": None}}})
    assert result.report.layer("4.weight").zeros == 0
    assert result.report.layer("5.weight").zeros == 30


@pytest.mark.parametrize("amount", [0.2, 0.5, 0.8])
def test_layer_scope_in_compress_gives_each_layer_the_amount(amount: float) -> None:
    result = compress(small_model(), {"prune": {"amount": amount}})
    for layer in result.report.layers:
        assert layer.zeros == round(amount * layer.parameters)


def test_global_scope_in_compress_gives_the_model_the_amount() -> None:
    result = compress(small_model(), {"prune": {"amount": 0.6, "scope": "global"}})
    total = sum(layer.parameters for layer in result.report.layers)
    assert sum(layer.zeros for layer in result.report.layers) == round(0.6 * total)


def test_a_pool_of_over_a_million_weights_prunes_exactly_like_torch_global_unstructured() -> None:
    generator = torch.Generator().manual_seed(0)
    layers = [nn.Linear(1024, 768), nn.Linear(768, 640)]  # 1,277,952 weights: above the direct-selection size
    for layer in layers:
        layer.weight.data = torch.randn(layer.weight.shape, generator=generator)
    weights = {f"{i}.weight": layer.weight.detach().clone() for i, layer in enumerate(layers)}
    spec = PruneSpec(amount=0.37, scope="global")
    masks = compute_masks(weights, {name: spec for name in weights})
    torch_prune.global_unstructured(
        [(layer, "weight") for layer in layers], pruning_method=torch_prune.L1Unstructured, amount=0.37
    )
    for i, layer in enumerate(layers):
        assert torch.equal(masks[f"{i}.weight"].keep, layer.weight_mask.bool())
