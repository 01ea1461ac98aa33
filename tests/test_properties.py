"""Properties that hold for every input: checked with hypothesis on small random tensors.

On quantization error and bits: for symmetric linear quantization the grid at b bits is
{k · M / (2^(b-1) - 1)}, and the grid at c bits contains it exactly when 2^(b-1) - 1 divides
2^(c-1) - 1, i.e. when b - 1 divides c - 1. So b → b+1 (b ≥ 3) and even b → 2b do *not* nest:
a weight that sits on the 3-bit grid (M/3) is off the 4-bit grid (M/7), and its error grows.
The true monotone property is for nested grids, b → 2b - 1; and at every b each weight is
within half a step, a bound that halves (nearly) with each bit.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import hypothesis.strategies as st
import torch
from hypothesis import assume, given, settings
from torch import nn

from compression.compress import compress
from compression.packing import load_packed, save_packed
from compression.pruning import compute_masks
from compression.quantization import dequantize_tensor, quantize_tensor
from compression.recipe import PruneSpec, QuantizeSpec

FAST = settings(max_examples=50, deadline=None)

finite_floats = st.floats(min_value=-100.0, max_value=100.0, allow_nan=False, allow_subnormal=False, width=32)


@st.composite
def weights(draw: st.DrawFn, max_rows: int = 6, max_columns: int = 12) -> torch.Tensor:
    """A small 2-D float32 tensor: either drawn value by value or a seeded normal tensor."""
    rows = draw(st.integers(1, max_rows))
    columns = draw(st.integers(1, max_columns))
    if draw(st.booleans()):
        values = draw(st.lists(finite_floats, min_size=rows * columns, max_size=rows * columns))
        return torch.tensor(values, dtype=torch.float32).reshape(rows, columns)
    seed = draw(st.integers(0, 2**16))
    return torch.randn(rows, columns, generator=torch.Generator().manual_seed(seed))


def with_zeros(weight: torch.Tensor, seed: int, fraction: float) -> torch.Tensor:
    weight = weight.clone()
    weight[torch.rand(weight.shape, generator=torch.Generator().manual_seed(seed)) < fraction] = 0.0
    return weight


QUANTIZE_SECTIONS = st.one_of(
    st.builds(
        lambda bits, granularity, symmetric, group_size: {
            "scheme": "linear", "bits": bits, "granularity": granularity, "symmetric": symmetric, "group_size": group_size,
        },
        st.integers(1, 16),
        st.sampled_from(["per_tensor", "per_channel", "per_group"]),
        st.booleans(),
        st.integers(1, 9),
    ),
    st.builds(
        lambda bits, granularity: {"scheme": "pow2", "bits": bits, "granularity": granularity},
        st.integers(2, 8),
        st.sampled_from(["per_tensor", "per_channel"]),
    ),
    st.builds(lambda bits: {"scheme": "kmeans", "bits": bits}, st.integers(1, 8)),
    st.builds(lambda name: {"scheme": "float", "format": name}, st.sampled_from(["fp16", "bf16", "fp8_e4m3", "fp8_e5m2"])),
)

PRUNE_METHODS = st.one_of(
    st.builds(lambda amount, scope: {"amount": amount, "scope": scope}, st.floats(0, 1), st.sampled_from(["layer", "global"])),
    st.builds(lambda threshold: {"threshold": threshold}, st.floats(0, 2)),
    st.builds(lambda amount, seed: {"method": "random", "amount": amount, "seed": seed}, st.floats(0, 1), st.integers(0, 99)),
    st.builds(
        lambda amount, norm, scope: {"method": "structured", "amount": amount, "norm": norm, "scope": scope},
        st.floats(0, 1),
        st.sampled_from(["l1", "l2"]),
        st.sampled_from(["layer", "global"]),
    ),
    st.integers(1, 8).flatmap(
        lambda m: st.integers(0, m).map(lambda n: {"method": "n:m", "n": n, "m": m})
    ),
)
PRUNE_SECTIONS = st.one_of(st.none(), PRUNE_METHODS)


def linear_with(weight: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


# --- pruning -----------------------------------------------------------------------------


@FAST
@given(
    tensors=st.lists(weights(), min_size=1, max_size=3),
    amounts=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    scope=st.sampled_from(["layer", "global"]),
    method=st.sampled_from(["magnitude", "random", "structured"]),
)
def test_pruning_more_never_keeps_a_weight_that_pruning_less_removed(
    tensors: list[torch.Tensor], amounts: tuple[float, float], scope: str, method: str
) -> None:
    low, high = sorted(amounts)
    named = {f"t{i}": tensor for i, tensor in enumerate(tensors)}

    def keeps(amount: float) -> dict[str, torch.Tensor]:
        spec = PruneSpec(method=method, amount=amount, scope=scope)
        return {name: mask.keep for name, mask in compute_masks(named, {name: spec for name in named}).items()}

    keep_low, keep_high = keeps(low), keeps(high)
    for name in named:
        assert not bool((keep_high[name] & ~keep_low[name]).any())


@FAST
@given(
    tensors=st.lists(weights(), min_size=1, max_size=3),
    amounts=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    scope=st.sampled_from(["layer", "global"]),
)
def test_magnitude_sparsity_is_non_decreasing_in_amount(
    tensors: list[torch.Tensor], amounts: tuple[float, float], scope: str
) -> None:
    low, high = sorted(amounts)
    named = {f"t{i}": tensor for i, tensor in enumerate(tensors)}

    def pruned(amount: float) -> int:
        spec = PruneSpec(amount=amount, scope=scope)
        masks = compute_masks(named, {name: spec for name in named})
        return sum(int((~mask.keep).sum()) for mask in masks.values())

    assert pruned(low) <= pruned(high)


@FAST
@given(weight=weights(), amount=st.floats(0, 1))
def test_magnitude_amount_never_prunes_more_than_asked(weight: torch.Tensor, amount: float) -> None:
    keep = compute_masks({"w": weight}, {"w": PruneSpec(amount=amount)})["w"].keep
    assert int((~keep).sum()) <= round(amount * weight.numel())


# --- quantization error ------------------------------------------------------------------


def symmetric_mse(weight: torch.Tensor, bits: int) -> float:
    spec = QuantizeSpec(scheme="linear", bits=bits, granularity="per_tensor", symmetric=True)
    quantized = quantize_tensor(weight, spec)
    values = dequantize_tensor(quantized.codes, quantized.params, spec, weight.shape)
    return float((values.double() - weight.double()).square().mean())


def test_one_more_bit_can_raise_the_error_of_a_weight_on_the_coarser_grid() -> None:
    weight = torch.tensor([1.0, 1.0 / 3.0])  # on the 3-bit grid {k/3}, off the 4-bit grid {k/7}
    assert symmetric_mse(weight, 3) < symmetric_mse(weight, 4)


@FAST
@given(weight=weights(), bits=st.integers(2, 8))
def test_symmetric_error_does_not_grow_from_b_to_2b_minus_1_bits(weight: torch.Tensor, bits: int) -> None:
    largest = float(weight.abs().max())
    assume(largest == 0.0 or largest > 1e-6)
    coarse, fine = symmetric_mse(weight, bits), symmetric_mse(weight, 2 * bits - 1)
    # Nested grids give fine <= coarse in exact arithmetic; allow float32 rounding of w/scale
    # and of code·scale, a few ulps of the largest weight per element.
    slack = largest**2 * 2.0**-18 / (2 ** (bits - 1) - 1)
    assert fine <= coarse + slack


@FAST
@given(weight=weights(), bits=st.integers(2, 16))
def test_symmetric_error_is_within_half_a_step_at_every_bit_width(weight: torch.Tensor, bits: int) -> None:
    largest = float(weight.abs().max())
    assume(largest == 0.0 or largest > 1e-6)
    step = largest / (2 ** (bits - 1) - 1)
    spec = QuantizeSpec(scheme="linear", bits=bits, granularity="per_tensor", symmetric=True)
    quantized = quantize_tensor(weight, spec)
    error = (dequantize_tensor(quantized.codes, quantized.params, spec, weight.shape) - weight).abs()
    assert float(error.max()) <= step / 2 + largest * 2.0**-20


# --- zeros -------------------------------------------------------------------------------


@FAST
@given(weight=weights(), seed=st.integers(0, 999), fraction=st.floats(0, 1), quantize=QUANTIZE_SECTIONS)
def test_a_zero_weight_stays_exactly_zero_under_every_scheme(
    weight: torch.Tensor, seed: int, fraction: float, quantize: dict
) -> None:
    weight = with_zeros(weight, seed, fraction)
    compressed = compress(linear_with(weight), {"quantize": quantize}).module.weight.detach()
    assert bool((compressed[weight == 0].view(torch.int32) == 0).all())


@FAST
@given(weight=weights(), prune=PRUNE_METHODS, quantize=QUANTIZE_SECTIONS)
def test_a_pruned_weight_stays_exactly_zero_under_every_scheme(weight: torch.Tensor, prune: dict, quantize: dict) -> None:
    spec = PruneSpec(**prune)
    keep = compute_masks({"weight": weight}, {"weight": spec})["weight"].keep
    compressed = compress(linear_with(weight), {"prune": prune, "quantize": quantize}).module.weight.detach()
    assert bool((compressed[~keep].view(torch.int32) == 0).all())


# --- packed file -------------------------------------------------------------------------


@st.composite
def small_models(draw: st.DrawFn) -> nn.Module:
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    hidden = draw(st.integers(1, 12))
    layers: list[nn.Module] = []
    if draw(st.booleans()):
        channels, kernel = draw(st.integers(1, 4)), draw(st.integers(1, 3))
        features = channels * (5 - kernel) ** 2  # a 4 × 4 input
        layers += [nn.Conv2d(1, channels, kernel), nn.Flatten(), nn.Linear(features, hidden)]
        model = nn.Sequential(*layers, nn.Linear(hidden, draw(st.integers(1, 5))))
    else:
        model = nn.Sequential(nn.Linear(draw(st.integers(1, 12)), hidden), nn.Linear(hidden, draw(st.integers(1, 5))))
    return model.eval()


@FAST
@given(model=small_models(), prune=PRUNE_SECTIONS, quantize=st.one_of(st.none(), QUANTIZE_SECTIONS), include_biases=st.booleans())
def test_a_packed_file_loads_back_bit_for_bit(
    model: nn.Module, prune: dict | None, quantize: dict | None, include_biases: bool
) -> None:
    recipe = {key: value for key, value in (("prune", prune), ("quantize", quantize)) if value is not None}
    if include_biases:
        recipe["include"] = ["*.bias"]
    result = compress(model, recipe)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.clp"
        size = save_packed(result.packed, path)
        state, _ = load_packed(path)
    assert size == result.report.file_bytes
    expected = result.module.state_dict()
    assert set(state) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(state[name].view(torch.int32), tensor.view(torch.int32)), name
