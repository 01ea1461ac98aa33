"""Specification of the calibrated per-layer methods: Wanda, SparseGPT, GPTQ and AWQ.

Layers are random, their inputs correlated (a random mixing of the input channels) with four
outlier channels twenty times louder than the rest, as activations in transformers are. Errors
are the output error ‖(W - Ŵ)Xᵀ‖² on the calibration inputs themselves.
"""
from __future__ import annotations

import pytest
import torch

import compression
from compression.calibrated.awq import awq_quantize, output_error
from compression.calibrated.gptq import gptq_quantize
from compression.calibrated.hessian import InputStatistics, inverse_cholesky
from compression.calibrated.layer_inputs import layer_inputs
from compression.calibrated.sparsegpt import sparsegpt_prune
from compression.calibrated.wanda import wanda_scores
from compression.errors import CompressionError, DataError, RecipeError
from compression.quantization import dequantize_tensor, quantize_tensor
from compression.recipe import QuantizeSpec

OUT, COLUMNS, SAMPLES, OUTLIERS = 48, 160, 384, 4  # 160 columns: a full block of 128 and a part


def calibration(columns: int = COLUMNS, samples: int = SAMPLES, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.eye(columns) + 2.0 * torch.randn(columns, columns, generator=generator) / columns**0.5
    inputs = torch.randn(samples, columns, generator=generator) @ mixing
    inputs[:, :OUTLIERS] *= 20.0
    return inputs


@pytest.fixture(scope="module")
def layer() -> tuple[torch.Tensor, torch.Tensor]:
    weight = torch.randn(OUT, COLUMNS, generator=torch.Generator().manual_seed(1))
    return weight, calibration()


def error(weight: torch.Tensor, new_weight: torch.Tensor, inputs: torch.Tensor) -> float:
    return float(((weight - new_weight) @ inputs.T).pow(2).sum())


def round_to_nearest(weight: torch.Tensor, **spec_fields: object) -> torch.Tensor:
    spec = QuantizeSpec(scheme="linear", **spec_fields)
    quantized = quantize_tensor(weight, spec)
    return dequantize_tensor(quantized.codes, quantized.params, spec, weight.shape)


# Wanda


def test_wanda_prunes_the_lowest_weight_times_input_norm_of_every_row(layer) -> None:
    weight, inputs = layer
    metric = weight.abs() * inputs.pow(2).sum(dim=0).sqrt()  # the paper's |W_ij| · ‖X_j‖₂
    pruned = round(0.3 * COLUMNS)
    expected = torch.ones_like(weight, dtype=torch.bool)
    for row in range(OUT):
        expected[row, torch.sort(metric[row], stable=True).indices[:pruned]] = False
    assert torch.equal(compression.wanda(weight, inputs, 0.3), expected)


def test_wanda_layer_scope_prunes_the_lowest_scores_of_the_whole_layer(layer) -> None:
    weight, inputs = layer
    keep = compression.wanda(weight, inputs, 0.3, scope="layer")
    scores = wanda_scores(weight, inputs)
    assert int((~keep).sum()) == round(0.3 * weight.numel())
    assert scores[~keep].max() <= scores[keep].min()
    assert (~keep).sum(dim=1).unique().numel() > 1  # rows lose different counts: the cut is the layer's


def test_wanda_layer_scope_matches_torchao_wanda_sparsifier(layer) -> None:
    """torchao 0.18's observer stores Σ x², so its metric is |W|·‖X_j‖²: given ‖X_j‖₂, the same mask."""
    wanda_module = pytest.importorskip("torchao.sparsity.wanda")
    weight, inputs = layer
    model = torch.nn.Sequential(torch.nn.Linear(COLUMNS, OUT, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(weight)
    sparsifier = wanda_module.WandaSparsifier(sparsity_level=0.5)
    sparsifier.prepare(model, config=[{"tensor_fqn": "0.weight"}])
    model(inputs)
    observer = model[0].activation_post_process
    observer.norm = observer.norm.sqrt()  # the paper's ‖X_j‖₂
    sparsifier.step()
    torchao_keep = model[0].parametrizations.weight[0].mask.bool()
    assert torch.equal(compression.wanda(weight, inputs, 0.5, scope="layer"), torchao_keep)


@pytest.mark.parametrize(("n", "m"), [(2, 4), (3, 8), (1, 3)])
def test_wanda_n_m_keeps_the_n_best_of_every_m_inputs(layer, n: int, m: int) -> None:
    weight, inputs = layer
    keep = compression.wanda(weight, inputs, n=n, m=m)
    scores = wanda_scores(weight, inputs)
    full = COLUMNS - COLUMNS % m
    groups, group_scores = keep[:, :full].reshape(OUT, -1, m), scores[:, :full].reshape(OUT, -1, m)
    assert (groups.sum(dim=2) == n).all()
    lowest_kept = torch.where(groups, group_scores, torch.inf).amin(dim=2)
    highest_pruned = torch.where(groups, -torch.inf, group_scores).amax(dim=2)
    assert (lowest_kept >= highest_pruned).all()
    assert int(keep[:, full:].sum()) == OUT * min(n, COLUMNS % m)  # a short last group keeps up to n


def test_wanda_n_m_groups_a_convolution_across_input_channels_at_each_kernel_position() -> None:
    conv = torch.nn.Conv2d(8, 6, 3, bias=False)
    keep = compression.wanda(conv.weight, layer_inputs(conv, torch.randn(2, 8, 6, 6)), n=2, m=4)
    assert (keep.movedim(1, -1).reshape(6, -1, 4).sum(dim=2) == 2).all()


def test_wanda_scores_streamed_in_batches_equal_those_of_all_inputs(layer) -> None:
    weight, inputs = layer
    streamed = InputStatistics(COLUMNS)
    for batch in inputs.split(100):
        streamed.add(batch)
    assert torch.allclose(wanda_scores(weight, streamed), wanda_scores(weight, inputs), rtol=1e-5)


# SparseGPT


@pytest.mark.parametrize("amount", [0.5, 0.37])
def test_sparsegpt_prunes_exactly_the_amount_and_zeroes_what_it_prunes(layer, amount: float) -> None:
    weight, inputs = layer
    result = sparsegpt_prune(weight, inputs, amount)
    assert int((~result.keep).sum()) == int((result.weight == 0).sum()) == round(amount * weight.numel())
    assert (result.weight[~result.keep] == 0).all()


def test_sparsegpt_update_beats_its_own_mask_and_wanda_s_mask_without_update(layer) -> None:
    weight, inputs = layer
    result = sparsegpt_prune(weight, inputs, 0.5)
    updated = error(weight, result.weight, inputs)
    assert updated <= error(weight, weight * result.keep, inputs)
    assert updated <= error(weight, weight * compression.wanda(weight, inputs, 0.5), inputs)


def test_sparsegpt_n_m_keeps_n_of_every_m_inputs_and_beats_wanda_n_m(layer) -> None:
    weight, inputs = layer
    result = sparsegpt_prune(weight, inputs, n=2, m=4)
    assert (result.keep.reshape(OUT, -1, 4).sum(dim=2) == 2).all()
    assert (result.weight[~result.keep] == 0).all()
    wanda_keep = compression.wanda(weight, inputs, n=2, m=4)
    assert error(weight, result.weight, inputs) <= error(weight, weight * wanda_keep, inputs)


def test_sparsegpt_n_m_groups_a_convolution_across_input_channels() -> None:
    conv = torch.nn.Conv2d(8, 6, 3, bias=False)
    result = sparsegpt_prune(conv.weight, layer_inputs(conv, torch.randn(2, 8, 6, 6)), n=2, m=4)
    assert (result.keep.movedim(1, -1).reshape(6, -1, 4).sum(dim=2) == 2).all()
    assert (result.weight[~result.keep] == 0).all()


# GPTQ


def test_gptq_values_lie_on_each_row_s_symmetric_round_to_nearest_grid(layer) -> None:
    weight, inputs = layer
    quantized = compression.gptq(weight, inputs, 4)
    scale = weight.abs().amax(dim=1, keepdim=True) / 7  # ±(2^(b-1) - 1) steps
    steps = quantized / scale
    assert torch.allclose(steps, steps.round(), atol=1e-4)
    assert steps.round().abs().max() <= 7
    assert max(row.unique().numel() for row in quantized) <= 2**4


@pytest.mark.parametrize(
    ("group_size", "symmetric", "act_order"),
    [(None, True, False), (None, True, True), (32, False, False), (48, True, True)],
)
def test_gptq_error_is_at_most_nine_tenths_of_round_to_nearest(layer, group_size, symmetric, act_order) -> None:
    weight, inputs = layer
    quantized = compression.gptq(weight, inputs, 4, group_size=group_size, symmetric=symmetric, act_order=act_order)
    grouping = {"granularity": "per_group", "group_size": group_size} if group_size else {}
    nearest = round_to_nearest(weight, bits=4, symmetric=symmetric, **grouping)
    assert error(weight, quantized, inputs) <= 0.9 * error(weight, nearest, inputs)


def test_gptq_codes_decode_with_the_linear_scheme_bit_for_bit(layer) -> None:
    weight, inputs = layer
    result = gptq_quantize(weight, inputs, 3, group_size=32, symmetric=False)
    spec = QuantizeSpec(scheme="linear", bits=3, granularity="per_group", group_size=32, symmetric=False)
    params = {"scale": result.scale, "zero_point": result.zero_point}
    assert torch.equal(dequantize_tensor(result.codes, params, spec, weight.shape), result.weight)
    assert torch.equal(result.group_index, torch.arange(COLUMNS) // 32)


def test_gptq_act_order_groups_follow_the_order_of_decreasing_hessian_diagonal(layer) -> None:
    weight, inputs = layer
    result = gptq_quantize(weight, inputs, 4, group_size=32, act_order=True)
    visiting = torch.argsort(inputs.pow(2).sum(dim=0), descending=True, stable=True)
    assert torch.equal(result.group_index[visiting], torch.arange(COLUMNS) // 32)
    values = result.codes.float() * result.scale[:, result.group_index]
    assert torch.equal(values, result.weight)


def test_dead_input_columns_get_zero_weights_and_no_nan(layer) -> None:
    weight, inputs = layer
    silent = inputs.clone()
    silent[:, 7] = 0.0
    for new_weight in (compression.sparsegpt(weight, silent, 0.5), compression.gptq(weight, silent, 4)):
        assert torch.isfinite(new_weight).all() and (new_weight[:, 7] == 0).all()


# AWQ


@pytest.mark.parametrize(("bits", "group_size"), [(4, None), (3, None), (4, 32)])
def test_awq_error_is_at_most_round_to_nearest_at_the_same_bits(layer, bits: int, group_size: int | None) -> None:
    weight, inputs = layer
    scales, quantized = compression.awq(weight, inputs, bits, group_size=group_size)
    grouping = {"granularity": "per_group", "group_size": group_size} if group_size else {}
    assert scales.shape == (COLUMNS,)
    assert error(weight, quantized, inputs) <= error(weight, round_to_nearest(weight, bits=bits, **grouping), inputs)


def test_awq_weight_is_the_decoded_scaled_weight_scaled_back(layer) -> None:
    weight, inputs = layer
    result = awq_quantize(weight, inputs, 4, symmetric=False)
    decoded = dequantize_tensor(result.quantized.codes, result.quantized.params, result.spec, weight.shape)
    assert torch.equal(decoded / result.scales, result.weight)
    assert 0.0 < result.alpha < 1.0  # outlier channels: some scaling beats round-to-nearest
    assert output_error(weight - result.weight, inputs.T @ inputs / SAMPLES) == pytest.approx(
        error(weight, result.weight, inputs) / SAMPLES, rel=1e-3
    )


def test_awq_gives_a_convolution_one_scale_per_input_channel() -> None:
    conv = torch.nn.Conv2d(8, 6, 3)
    scales, quantized = compression.awq(conv.weight, layer_inputs(conv, torch.randn(2, 8, 6, 6)), 4)
    assert scales.shape == (8,) and quantized.shape == conv.weight.shape


# Shared behaviour


def test_no_method_changes_its_weight_or_inputs(layer) -> None:
    weight, inputs = layer
    weight_before, inputs_before = weight.clone(), inputs.clone()
    compression.wanda(weight, inputs, 0.5)
    compression.sparsegpt(weight, inputs, n=2, m=4)
    compression.gptq(weight, inputs, 4, group_size=32, act_order=True)
    compression.awq(weight, inputs, 4)
    assert torch.equal(weight, weight_before) and torch.equal(inputs, inputs_before)


@pytest.mark.parametrize(
    "layer_module",
    [
        torch.nn.Linear(6, 5),
        torch.nn.Conv2d(3, 4, 3, stride=2, dilation=2, padding=1),
        torch.nn.Conv2d(3, 4, (3, 2), padding="same", padding_mode="reflect"),
        torch.nn.Conv1d(3, 4, 4, stride=3, padding=2, padding_mode="circular"),
    ],
    ids=["linear", "conv2d-strided", "conv2d-same-reflect", "conv1d-circular"],
)
def test_layer_inputs_times_the_flattened_weight_is_the_layer_s_output(layer_module: torch.nn.Module) -> None:
    spatial = {torch.nn.Linear: (), torch.nn.Conv1d: (9,), torch.nn.Conv2d: (9, 8)}[type(layer_module)]
    x = torch.randn(2, layer_module.weight.shape[1], *spatial)
    with torch.no_grad():
        expected = layer_module(x)
        rows = layer_module.weight.reshape(layer_module.weight.shape[0], -1)
        product = layer_inputs(layer_module, x) @ rows.T + layer_module.bias
    if expected.ndim > 2:  # (batch, out, positions...) → (batch·positions, out)
        expected = expected.flatten(2).transpose(1, 2).reshape(-1, expected.shape[1])
    assert torch.allclose(product, expected, atol=1e-5)


def test_layer_inputs_takes_an_unbatched_convolution_input_as_the_layer_does() -> None:
    conv, x = torch.nn.Conv2d(3, 4, 3), torch.randn(1, 3, 6, 6)
    assert torch.equal(layer_inputs(conv, x[0]), layer_inputs(conv, x))


def test_layer_inputs_refuses_a_grouped_convolution() -> None:
    with pytest.raises(CompressionError, match=r"grouped convolution \(groups=2\)"):
        layer_inputs(torch.nn.Conv2d(4, 4, 3, groups=2), torch.randn(1, 4, 5, 5))


def test_inverse_cholesky_adds_damping_until_the_hessian_factors() -> None:
    indefinite = torch.tensor([[1.0, 1.05], [1.05, 1.0]], dtype=torch.float64)  # eigenvalues 2.05, -0.05
    upper = inverse_cholesky("gptq", indefinite, 0.01).double()
    assert torch.allclose(upper.T @ upper, torch.linalg.inv(indefinite + 0.1 * torch.eye(2)), rtol=1e-5)


def test_inverse_cholesky_gives_up_in_one_line() -> None:
    with pytest.raises(CompressionError, match="not positive definite") as caught:
        inverse_cholesky("gptq", -torch.eye(3), 0.01)
    assert "\n" not in str(caught.value)


WEIGHT, INPUTS = torch.randn(4, 8), torch.randn(16, 8)
BAD_CALLS = [
    (lambda: compression.wanda(WEIGHT, INPUTS, 1.5), RecipeError, r"wanda: amount must be a number between 0 and 1; got 1\.5\.$"),
    (lambda: compression.wanda(WEIGHT, INPUTS, -0.1), RecipeError, "amount must be a number between 0 and 1"),
    (lambda: compression.wanda(WEIGHT, INPUTS), RecipeError, "give amount"),
    (lambda: compression.wanda(WEIGHT, INPUTS, 0.5, n=2, m=4), RecipeError, "either amount or n and m"),
    (lambda: compression.wanda(WEIGHT, INPUTS, n=2), RecipeError, "needs both n and m"),
    (lambda: compression.wanda(WEIGHT, INPUTS, n=5, m=4), RecipeError, "n must be an integer between 0 and 4; got 5."),
    (lambda: compression.wanda(WEIGHT, INPUTS, 0.5, scope="global"), RecipeError, "scope must be one of 'row', 'layer'"),
    (lambda: compression.wanda(WEIGHT, INPUTS[:, :5], 0.5), DataError, r"inputs must be \(samples, 8\)"),
    (lambda: compression.wanda(WEIGHT.reshape(-1), INPUTS, 0.5), CompressionError, "weight must be a float tensor"),
    (lambda: compression.sparsegpt(WEIGHT, INPUTS, 2.0), RecipeError, "sparsegpt: amount must be"),
    (lambda: compression.sparsegpt(WEIGHT, INPUTS, n=3, m=2), RecipeError, "n must be an integer between 0 and 2"),
    (lambda: compression.sparsegpt(WEIGHT, INPUTS, 0.5, block_size=0), RecipeError, "block_size must be an integer >= 1"),
    (lambda: compression.sparsegpt(WEIGHT, INPUTS, 0.5, damping=0), RecipeError, "damping must be a finite number > 0"),
    (lambda: compression.sparsegpt(WEIGHT, INPUTS.T, 0.5), DataError, r"inputs must be \(samples, 8\)"),
    (lambda: compression.gptq(WEIGHT, INPUTS, 1), RecipeError, "gptq: bits must be an integer between 2 and 16; got 1."),
    (lambda: compression.gptq(WEIGHT, INPUTS, 4, group_size=0), RecipeError, "group_size must be an integer >= 1"),
    (lambda: compression.gptq(WEIGHT, INPUTS, 4, act_order="yes"), RecipeError, "act_order must be true or false"),
    (lambda: compression.gptq(WEIGHT, INPUTS * torch.nan, 4), DataError, "inputs must be finite"),
    (lambda: compression.awq(WEIGHT, INPUTS, 0), RecipeError, "awq: bits must be an integer between 1 and 16"),
    (lambda: compression.awq(WEIGHT, INPUTS, 4, grid=0), RecipeError, "grid must be an integer >= 1"),
    (lambda: compression.awq(WEIGHT, InputStatistics(5).add(INPUTS[:, :5]), 4), DataError, "input statistics must hold"),
    (lambda: InputStatistics(8).add(INPUTS[:, :5]), DataError, r"InputStatistics.add: inputs must be \(samples, 8\)"),
    (lambda: layer_inputs(torch.nn.Linear(8, 4), INPUTS[:, :5]), DataError, r"takes inputs \(\.\.\., 8\); got \(16, 5\)"),
    (lambda: layer_inputs(torch.nn.Conv2d(3, 4, 3), torch.randn(1, 2, 5, 5)), DataError, r"3 input channels takes inputs"),
]


@pytest.mark.parametrize(("call", "kind", "message"), BAD_CALLS)
def test_bad_arguments_fail_in_one_line_naming_the_argument(call, kind: type[Exception], message: str) -> None:
    with pytest.raises(kind, match=message) as caught:
        call()
    assert "\n" not in str(caught.value)


def test_the_four_methods_are_public_api() -> None:
    assert {"wanda", "sparsegpt", "gptq", "awq"} <= set(compression.__all__)
    assert compression.gptq.__module__ == "compression.calibrated.gptq"
