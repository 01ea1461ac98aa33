"""Specification of the view data: histograms, sparsity maps, MSE and SQNR."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from compression.compress import compress
from compression.stats import (
    HISTOGRAM_BINS,
    MAX_TILES,
    OUTLIER_MEAN_MAGNITUDES,
    display_limit,
    error_measures,
    histogram,
    pooled_mean_magnitude,
    mean_magnitude,
    sparsity_map,
)

QUANTIZE_SECTIONS = [
    {"scheme": "linear", "bits": 1},
    {"scheme": "linear", "bits": 3},
    {"scheme": "linear", "bits": 3, "symmetric": False},
    {"scheme": "pow2", "bits": 4, "granularity": "per_tensor"},
    {"scheme": "kmeans", "bits": 2},
    {"scheme": "float", "format": "fp16"},
    {"scheme": "float", "format": "bf16"},
    {"scheme": "float", "format": "fp8_e5m2"},
]


def random_weight(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def linear_with(weight: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


def tile_weighted_mean(values: torch.Tensor) -> float:
    """Mean of a sparsity map weighted by how many real weights each tile covers."""
    result = sparsity_map(values)
    rows, columns = result.matrix_shape
    tile_rows, tile_columns = result.tile
    row_sizes = [min(tile_rows, rows - start) for start in range(0, rows, tile_rows)]
    column_sizes = [min(tile_columns, columns - start) for start in range(0, columns, tile_columns)]
    weights = np.outer(row_sizes, column_sizes)
    return float((result.zero_fraction * weights).sum() / weights.sum())


# --- histograms --------------------------------------------------------------------------


def test_a_histogram_counts_every_finite_value_once() -> None:
    values = random_weight(30, 40)
    assert int(histogram(values, float(values.abs().max())).counts.sum()) == values.numel()


def test_a_histogram_has_one_more_edge_than_bins_symmetric_about_zero() -> None:
    result = histogram(random_weight(10), 2.0)
    assert (len(result.counts), len(result.edges)) == (HISTOGRAM_BINS, HISTOGRAM_BINS + 1)
    assert np.allclose(result.edges, -result.edges[::-1])


def test_zero_falls_in_the_middle_bin() -> None:
    counts = histogram(torch.zeros(7), 1.0).counts
    assert counts[HISTOGRAM_BINS // 2] == 7


def test_non_finite_values_are_left_out_of_a_histogram() -> None:
    values = torch.tensor([0.5, float("nan"), float("inf"), -0.5])
    assert int(histogram(values, 1.0).counts.sum()) == 2


def test_values_beyond_the_range_are_counted_in_the_end_bins_and_as_outside() -> None:
    values = torch.tensor([-9.0, -0.5, 0.0, 0.25, 3.0, 7.0, float("inf"), float("nan")])
    result = histogram(values, 1.0)
    assert (result.counts[0], result.counts[-1]) == (1, 2)
    assert result.outside == 3
    assert int(result.counts.sum()) == 6  # every finite value once


def test_a_histogram_over_the_whole_range_has_nothing_outside() -> None:
    values = random_weight(30, 40)
    assert histogram(values, float(values.abs().max())).outside == 0


def test_the_display_range_is_the_largest_magnitude_unless_outliers_lie_beyond_10_mean_magnitudes() -> None:
    assert display_limit(2.5, 1.0) == 2.5
    assert display_limit(7.0, 0.04) == pytest.approx(OUTLIER_MEAN_MAGNITUDES * 0.04)
    assert display_limit(0.0, 0.0) == 0.0


def test_pooled_mean_magnitude_equals_that_of_the_concatenation_in_any_order() -> None:
    parts = [random_weight(50, seed=1) * 3, random_weight(7, 9, seed=2), random_weight(1, seed=3)]
    sizes = [(mean_magnitude(part), part.numel()) for part in parts]
    whole = mean_magnitude(torch.cat([part.reshape(-1) for part in parts]))
    assert pooled_mean_magnitude(sizes) == pytest.approx(whole, rel=1e-6)
    assert pooled_mean_magnitude(sizes) == pooled_mean_magnitude(sizes[::-1])


def test_a_layer_with_outliers_is_drawn_over_10_mean_magnitudes_with_the_outliers_in_the_end_bins() -> None:
    weight = random_weight(64, 64) * 0.05
    weight[0, :3] = torch.tensor([7.0, -6.0, 5.5])  # a transformer's few large weights
    layer = compress(linear_with(weight), {}).report.layer("weight")
    limit = layer.histogram_before.edges[-1]
    assert limit == pytest.approx(OUTLIER_MEAN_MAGNITUDES * mean_magnitude(weight))
    assert limit < 1.0
    assert layer.histogram_before.outside == 3
    assert (layer.histogram_before.counts[0], layer.histogram_before.counts[-1]) == (1, 2)


@pytest.mark.parametrize("quantize", QUANTIZE_SECTIONS, ids=lambda section: "-".join(map(str, section.values())))
def test_layer_histograms_before_and_after_both_count_every_weight(quantize: dict) -> None:
    weight = random_weight(16, 48)
    weight[0, 0] = 1.45 * float(weight.abs().max())  # pow2 and float casts round this one up
    result = compress(linear_with(weight), {"prune": {"amount": 0.3}, "quantize": quantize})
    layer = result.report.layer("weight")
    assert int(layer.histogram_before.counts.sum()) == layer.parameters
    assert int(layer.histogram_after.counts.sum()) == layer.parameters


@pytest.mark.parametrize("quantize", QUANTIZE_SECTIONS, ids=lambda section: "-".join(map(str, section.values())))
def test_model_histograms_before_and_after_both_count_every_compressed_weight(quantize: dict) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30), nn.Linear(30, 10))
    with torch.no_grad():
        model[1].weight[0, 0] = 3.0
    report = compress(model, {"quantize": quantize}).report
    assert int(report.histogram_before.counts.sum()) == 900
    assert int(report.histogram_after.counts.sum()) == 900


def test_before_and_after_histograms_share_their_edges() -> None:
    result = compress(linear_with(random_weight(8, 8)), {"quantize": {"scheme": "pow2", "bits": 3}})
    layer = result.report.layer("weight")
    assert np.array_equal(layer.histogram_before.edges, layer.histogram_after.edges)


def test_the_zero_bin_grows_with_the_pruned_amount() -> None:
    layer = linear_with(random_weight(40, 60))
    middle = HISTOGRAM_BINS // 2
    zero_bins = [
        int(compress(layer, {"prune": {"amount": amount}}).report.layer("weight").histogram_after.counts[middle])
        for amount in (0.0, 0.25, 0.5, 0.75, 1.0)
    ]
    assert zero_bins == sorted(zero_bins) and zero_bins[0] < zero_bins[-1] == 2400


# --- sparsity maps -----------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(300, 1000), (64, 32, 5, 5), (600, 257), (7, 3)])
def test_a_sparsity_map_has_at_most_256_by_256_tiles(shape: tuple[int, ...]) -> None:
    result = sparsity_map(random_weight(*shape))
    assert result.zero_fraction.shape[0] <= MAX_TILES and result.zero_fraction.shape[1] <= MAX_TILES


@pytest.mark.parametrize("shape", [(300, 1000), (64, 32, 5, 5), (600, 257)])
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.9, 1.0])
def test_sparsity_map_values_are_fractions_whose_tile_weighted_mean_is_the_sparsity(
    shape: tuple[int, ...], sparsity: float
) -> None:
    weight = random_weight(*shape)
    weight[torch.rand(shape, generator=torch.Generator().manual_seed(1)) < sparsity] = 0.0
    fractions = sparsity_map(weight).zero_fraction
    assert fractions.min() >= 0.0 and fractions.max() <= 1.0
    exact = int((weight == 0).sum()) / weight.numel()
    assert math.isclose(tile_weighted_mean(weight), exact, rel_tol=1e-6, abs_tol=1e-9)  # tiles are float32


def test_a_conv_weight_is_mapped_as_out_channels_by_in_times_kernel() -> None:
    result = sparsity_map(random_weight(64, 32, 5, 5))
    assert result.matrix_shape == (64, 800)
    assert result.tile == (1, 4)


def test_a_non_divisible_width_leaves_a_narrower_last_tile() -> None:
    result = sparsity_map(random_weight(300, 1000))
    assert (result.tile, result.zero_fraction.shape) == ((2, 4), (150, 250))


def test_a_small_weight_maps_one_weight_per_tile() -> None:
    weight = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    assert sparsity_map(weight).zero_fraction.tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_a_pruned_output_channel_shows_as_a_full_row() -> None:
    weight = random_weight(10, 20)
    weight[3] = 0.0
    fractions = sparsity_map(weight).zero_fraction
    assert fractions[3].tolist() == [1.0] * 20


# --- errors ------------------------------------------------------------------------------


def test_an_unchanged_tensor_has_zero_mse_and_infinite_sqnr() -> None:
    weight = random_weight(10, 10)
    measures = error_measures(weight, weight.clone())
    assert (measures.mse, measures.sqnr_db) == (0.0, math.inf)


def test_sqnr_is_ten_log_signal_over_noise() -> None:
    weight = random_weight(50, 50)
    measures = error_measures(weight, weight * 1.1)  # noise power is 1 % of signal power: 20 dB
    assert math.isclose(measures.sqnr_db, 20.0, abs_tol=1e-4)


def test_mse_is_the_mean_squared_difference() -> None:
    measures = error_measures(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1.0, 2.0, 3.0, 6.0]))
    assert measures.mse == 1.0


def test_a_zero_reference_with_noise_has_minus_infinite_sqnr() -> None:
    assert error_measures(torch.zeros(4), torch.ones(4)).sqnr_db == -math.inf


def test_an_infinite_approximation_has_minus_infinite_sqnr() -> None:
    measures = error_measures(torch.tensor([1e5, 0.5]), torch.tensor([math.inf, 0.5]))
    assert (measures.mse, measures.sqnr_db) == (math.inf, -math.inf)


def test_sqnr_rises_with_bits_of_linear_quantization() -> None:
    layer = linear_with(random_weight(64, 128))
    sqnr = [
        compress(layer, {"quantize": {"scheme": "linear", "bits": bits}}).report.layer("weight").sqnr_db
        for bits in range(2, 9)
    ]
    assert all(later > earlier for earlier, later in zip(sqnr, sqnr[1:]))


def test_a_recipe_that_leaves_a_layer_unchanged_reports_infinite_sqnr() -> None:
    result = compress(linear_with(random_weight(8, 8)), {"prune": {"amount": 0.0}})
    layer = result.report.layer("weight")
    assert (layer.mse, layer.sqnr_db, layer.to_dict()["sqnr_db"]) == (0.0, math.inf, None)
