"""Specification of the quantizers: linear (incl. 1 bit), pow2 and low-precision floats.

Linear quantization is cross-checked against torch.fake_quantize_per_{channel,tensor}_affine.
torch computes nearbyint(w · (1/scale)) in float32 and we compute round(w / scale): both round
half to even, and on the seeds below (and on constructed exact ties, where scale is a power of
two so both products are exact) the results agree bit for bit.
"""
from __future__ import annotations

import pytest
import torch

from compression.quantization import dequantize_tensor, quantize_tensor
from compression.recipe import QuantizeSpec


def random_weight(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def round_trip(weight: torch.Tensor, **spec_fields: object) -> torch.Tensor:
    spec = QuantizeSpec(**spec_fields)
    quantized = quantize_tensor(weight, spec)
    return dequantize_tensor(quantized.codes, quantized.params, spec, weight.shape)


def torch_fake_quantize_per_channel(weight: torch.Tensor, bits: int, symmetric: bool) -> torch.Tensor:
    spec = QuantizeSpec(scheme="linear", bits=bits, granularity="per_channel", symmetric=symmetric)
    params = quantize_tensor(weight, spec).params
    scale = params["scale"].reshape(-1)
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        zero_point, low, high = torch.zeros_like(scale, dtype=torch.int32), -qmax, qmax
    else:
        zero_point, low, high = params["zero_point"].reshape(-1).to(torch.int32), 0, 2**bits - 1
    return torch.fake_quantize_per_channel_affine(weight, scale, zero_point, 0, low, high)


# --- linear, symmetric -------------------------------------------------------------------


def test_symmetric_scale_is_max_magnitude_over_the_largest_code() -> None:
    weight = random_weight(6, 20)
    params = quantize_tensor(weight, QuantizeSpec(bits=4, granularity="per_channel")).params
    assert torch.equal(params["scale"].reshape(-1), weight.abs().amax(dim=1) / 7)


def test_symmetric_has_no_zero_point() -> None:
    params = quantize_tensor(random_weight(4, 4), QuantizeSpec(bits=8)).params
    assert "zero_point" not in params


@pytest.mark.parametrize("bits", [2, 3, 8, 16])
def test_symmetric_codes_lie_in_plus_minus_the_largest_code(bits: int) -> None:
    codes = quantize_tensor(random_weight(8, 64), QuantizeSpec(bits=bits)).codes
    qmax = 2 ** (bits - 1) - 1
    assert int(codes.min()) == -qmax and int(codes.max()) == qmax


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_symmetric_per_channel_equals_torch_fake_quantize_per_channel(bits: int, seed: int) -> None:
    weight = random_weight(32, 100, seed=seed)
    ours = round_trip(weight, bits=bits, granularity="per_channel", symmetric=True)
    assert torch.equal(ours, torch_fake_quantize_per_channel(weight, bits, symmetric=True))


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_symmetric_per_tensor_equals_torch_fake_quantize_per_tensor(bits: int, seed: int) -> None:
    weight = random_weight(16, 50, seed=seed)
    spec = QuantizeSpec(bits=bits, granularity="per_tensor", symmetric=True)
    scale = float(quantize_tensor(weight, spec).params["scale"])
    qmax = 2 ** (bits - 1) - 1
    expected = torch.fake_quantize_per_tensor_affine(weight, scale, 0, -qmax, qmax)
    assert torch.equal(round_trip(weight, bits=bits, granularity="per_tensor", symmetric=True), expected)


def test_exact_ties_round_half_to_even_like_torch() -> None:
    # max|w| = 127/64 makes the 8-bit scale 1/64 exactly, so w/scale is exactly k + 0.5.
    halves = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5]) / 64
    weight = torch.cat([torch.tensor([127 / 64]), halves]).reshape(1, -1)
    ours = round_trip(weight, bits=8, granularity="per_channel", symmetric=True)
    assert torch.equal(ours, torch_fake_quantize_per_channel(weight, 8, symmetric=True))
    assert (ours[0, 1:] * 64).tolist() == [0.0, 2.0, 2.0, -0.0, -2.0, -2.0, 126.0]


@pytest.mark.parametrize("bits", [2, 4, 8, 16])
def test_symmetric_error_is_at_most_half_a_step(bits: int) -> None:
    weight = random_weight(8, 64)
    scale = weight.abs().amax(dim=1, keepdim=True) / (2 ** (bits - 1) - 1)
    error = (round_trip(weight, bits=bits) - weight).abs()
    assert bool((error <= scale / 2 * (1 + 1e-5)).all())


@pytest.mark.parametrize("bits", [2, 3, 5])
def test_symmetric_gives_at_most_two_to_the_bits_minus_one_values_per_channel(bits: int) -> None:
    values = round_trip(random_weight(4, 500), bits=bits)
    assert max(len(torch.unique(row)) for row in values) <= 2**bits - 1


def test_symmetric_largest_weight_is_reproduced_up_to_rounding_of_the_scale() -> None:
    weight = random_weight(4, 30)
    values = round_trip(weight, bits=8)
    assert torch.allclose(values.abs().amax(dim=1), weight.abs().amax(dim=1), rtol=1e-6, atol=0)


# --- linear, asymmetric ------------------------------------------------------------------


def test_asymmetric_scale_spans_min_to_max_over_the_code_range() -> None:
    weight = random_weight(5, 40)
    params = quantize_tensor(weight, QuantizeSpec(bits=4, symmetric=False)).params
    expected = (weight.amax(dim=1) - weight.amin(dim=1)) / 15
    assert torch.equal(params["scale"].reshape(-1), expected)


def test_asymmetric_zero_point_is_the_rounded_code_of_zero() -> None:
    weight = random_weight(5, 40)
    params = quantize_tensor(weight, QuantizeSpec(bits=4, symmetric=False)).params
    expected = torch.round(-weight.amin(dim=1) / params["scale"].reshape(-1))
    assert torch.equal(params["zero_point"].reshape(-1).float(), expected)


def test_asymmetric_range_is_widened_to_include_zero() -> None:
    weight = torch.tensor([[1.0, 2.0, 3.0]])  # all positive: the range becomes [0, 3]
    params = quantize_tensor(weight, QuantizeSpec(bits=2, symmetric=False, granularity="per_channel")).params
    assert (float(params["scale"]), int(params["zero_point"])) == (1.0, 0)


@pytest.mark.parametrize("bits", [2, 4, 8, 16])
def test_asymmetric_codes_lie_in_zero_to_two_to_the_bits_minus_one(bits: int) -> None:
    codes = quantize_tensor(random_weight(8, 64), QuantizeSpec(bits=bits, symmetric=False)).codes
    assert int(codes.min()) >= 0 and int(codes.max()) <= 2**bits - 1


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_asymmetric_per_channel_equals_torch_fake_quantize_per_channel(bits: int, seed: int) -> None:
    weight = random_weight(32, 100, seed=seed) + 0.3  # skewed, so zero points differ from the middle
    ours = round_trip(weight, bits=bits, granularity="per_channel", symmetric=False)
    assert torch.equal(ours, torch_fake_quantize_per_channel(weight, bits, symmetric=False))


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_asymmetric_per_tensor_equals_torch_fake_quantize_per_tensor(bits: int, seed: int) -> None:
    weight = random_weight(16, 50, seed=seed) - 0.2
    spec = QuantizeSpec(bits=bits, granularity="per_tensor", symmetric=False)
    params = quantize_tensor(weight, spec).params
    expected = torch.fake_quantize_per_tensor_affine(
        weight, float(params["scale"]), int(params["zero_point"]), 0, 2**bits - 1
    )
    assert torch.equal(round_trip(weight, bits=bits, granularity="per_tensor", symmetric=False), expected)


def test_asymmetric_represents_zero_exactly() -> None:
    weight = random_weight(4, 30) + 0.7
    weight[:, 3] = 0.0
    assert bool((round_trip(weight, bits=3, symmetric=False)[:, 3] == 0).all())


# --- granularity -------------------------------------------------------------------------


def test_per_tensor_has_one_scale() -> None:
    params = quantize_tensor(random_weight(6, 10), QuantizeSpec(granularity="per_tensor")).params
    assert params["scale"].numel() == 1


def test_per_channel_has_one_scale_per_output_channel_of_a_conv() -> None:
    params = quantize_tensor(random_weight(6, 3, 3, 3), QuantizeSpec(granularity="per_channel")).params
    assert params["scale"].shape == (6, 1)


def test_per_group_has_one_scale_per_group_of_the_input_dimension_rounding_up() -> None:
    params = quantize_tensor(random_weight(6, 50), QuantizeSpec(granularity="per_group", group_size=16)).params
    assert params["scale"].shape == (6, 4)


@pytest.mark.parametrize("symmetric", [True, False])
def test_per_group_quantizes_each_group_like_a_channel_of_its_own(symmetric: bool) -> None:
    weight = random_weight(3, 50)  # 16 + 16 + 16 + 2: the last group is short
    grouped = round_trip(weight, bits=4, granularity="per_group", group_size=16, symmetric=symmetric)
    for start in range(0, 50, 16):
        piece = weight[:, start : start + 16]
        alone = round_trip(piece, bits=4, granularity="per_channel", symmetric=symmetric)
        assert torch.equal(grouped[:, start : start + 16], alone)


def test_per_group_with_a_group_larger_than_the_row_is_per_channel() -> None:
    weight = random_weight(4, 10)
    assert torch.equal(
        round_trip(weight, bits=4, granularity="per_group", group_size=64), round_trip(weight, bits=4, granularity="per_channel")
    )


def test_an_all_zero_channel_stays_zero() -> None:
    weight = random_weight(3, 8)
    weight[1] = 0.0
    for symmetric in (True, False):
        assert bool((round_trip(weight, bits=4, symmetric=symmetric)[1] == 0).all())


# --- one bit -----------------------------------------------------------------------------


def test_one_bit_is_sign_times_mean_magnitude_per_channel() -> None:
    weight = random_weight(5, 40)
    expected = torch.sign(weight) * weight.abs().mean(dim=1, keepdim=True)
    assert torch.allclose(round_trip(weight, bits=1), expected, rtol=1e-6, atol=0)


def test_one_bit_per_tensor_uses_one_mean_magnitude() -> None:
    weight = random_weight(5, 40)
    expected = torch.sign(weight) * weight.abs().mean()
    assert torch.allclose(round_trip(weight, bits=1, granularity="per_tensor"), expected, rtol=1e-5, atol=0)


def test_one_bit_averages_only_the_non_zero_weights() -> None:
    weight = torch.tensor([[2.0, 0.0, -4.0, 0.0]])
    assert round_trip(weight, bits=1)[0, [0, 2]].tolist() == [3.0, -3.0]


def test_one_bit_codes_are_zero_or_one_and_do_not_represent_zero() -> None:
    quantized = quantize_tensor(random_weight(3, 9), QuantizeSpec(bits=1))
    assert set(quantized.codes.unique().tolist()) == {0, 1}
    assert not quantized.represents_zero


# --- pow2 --------------------------------------------------------------------------------


def is_zero_or_power_of_two(values: torch.Tensor) -> bool:
    magnitude = values.abs()
    nonzero = magnitude[magnitude > 0]
    return bool((torch.exp2(torch.log2(nonzero).round()) == nonzero).all())


@pytest.mark.parametrize("bits", [2, 3, 5, 8])
@pytest.mark.parametrize("granularity", ["per_tensor", "per_channel"])
def test_pow2_values_are_zero_or_signed_powers_of_two(bits: int, granularity: str) -> None:
    assert is_zero_or_power_of_two(round_trip(random_weight(6, 80), scheme="pow2", bits=bits, granularity=granularity))


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_pow2_gives_at_most_two_to_the_bits_minus_one_distinct_values(bits: int) -> None:
    values = round_trip(random_weight(30, 200) * 10, scheme="pow2", bits=bits, granularity="per_tensor")
    assert len(torch.unique(values)) <= 2**bits - 1


def test_pow2_largest_level_is_two_to_the_rounded_log_of_the_largest_magnitude() -> None:
    weight = torch.tensor([3.1, -0.2, 0.05])  # log2 3.1 = 1.63 → 2^2
    assert round_trip(weight, scheme="pow2", bits=3, granularity="per_tensor")[0] == 4.0


def test_pow2_rounds_each_weight_in_the_log_domain() -> None:
    weight = torch.tensor([1.0, 0.7, -0.3, 0.2])  # log2: 0, -0.51, -1.74, -2.32
    assert round_trip(weight, scheme="pow2", bits=4, granularity="per_tensor").tolist() == [1.0, 0.5, -0.25, 0.25]


def test_pow2_flushes_weights_below_the_smallest_level_to_zero() -> None:
    weight = torch.tensor([1.0, 0.25, 0.125, 0.01])  # 2 bits: one exponent, only ±1 and 0
    assert round_trip(weight, scheme="pow2", bits=2, granularity="per_tensor").tolist() == [1.0, 0.0, 0.0, 0.0]


def test_pow2_keeps_signs() -> None:
    weight = random_weight(4, 20)
    values = round_trip(weight, scheme="pow2", bits=6)
    nonzero = values != 0
    assert torch.equal(torch.sign(values[nonzero]), torch.sign(weight[nonzero]))


def test_pow2_keeps_zero() -> None:
    weight = torch.tensor([[0.5, 0.0, -0.25]])
    assert round_trip(weight, scheme="pow2", bits=4)[0, 1] == 0.0


# --- float -------------------------------------------------------------------------------

FLOAT_DTYPES = {
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "fp8_e4m3": torch.float8_e4m3fn,
    "fp8_e5m2": torch.float8_e5m2,
}


def same_bits(first: torch.Tensor, second: torch.Tensor) -> bool:
    return torch.equal(first.view(torch.int32), second.view(torch.int32))


@pytest.mark.parametrize("format_name", list(FLOAT_DTYPES))
def test_float_formats_equal_torchs_own_cast_bit_for_bit(format_name: str) -> None:
    weight = random_weight(16, 64) * 0.1
    expected = weight.to(FLOAT_DTYPES[format_name]).float()
    assert same_bits(round_trip(weight, scheme="float", format=format_name), expected)


@pytest.mark.parametrize("format_name", list(FLOAT_DTYPES))
def test_float_formats_equal_torchs_cast_at_the_edges_of_their_range(format_name: str) -> None:
    weight = torch.tensor([0.0, -0.0, 1e-9, -3e-6, 2.0**-10, 447.0, 464.0, -1000.0, 70000.0, 1e30, float("nan")])
    expected = weight.to(FLOAT_DTYPES[format_name]).float()
    assert same_bits(round_trip(weight, scheme="float", format=format_name), expected)


@pytest.mark.parametrize(("format_name", "bits"), [("fp16", 16), ("bf16", 16), ("fp8_e4m3", 8), ("fp8_e5m2", 8)])
def test_float_codes_fit_in_the_formats_bits(format_name: str, bits: int) -> None:
    quantized = quantize_tensor(random_weight(8, 8), QuantizeSpec(scheme="float", format=format_name))
    assert quantized.bits == bits
    assert int(quantized.codes.min()) >= 0 and int(quantized.codes.max()) < 2**bits


def test_quantizing_does_not_change_the_input() -> None:
    weight = random_weight(6, 12)
    before = weight.clone()
    for spec in (QuantizeSpec(bits=3), QuantizeSpec(scheme="pow2", bits=4), QuantizeSpec(scheme="kmeans", bits=2)):
        quantize_tensor(weight, spec)
    assert torch.equal(weight, before)
