"""Specification of k-means weight sharing: at most 2^bits shared values, fitted as well as
scikit-learn's KMeans (inertia within 1 %) on the same non-zero values."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from compression.quantization import dequantize_tensor, quantize_tensor
from compression.quantization.kmeans import fit_codebook
from compression.recipe import QuantizeSpec


@pytest.fixture(autouse=True, scope="module")
def one_openmp_thread():
    """KMeans on a few thousand points gains nothing from threads, and OpenMP threads that
    spin-wait on a busy 2-core machine make it several times slower."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def inertia(values: torch.Tensor, codebook: torch.Tensor) -> float:
    """Sum of squared distances of each value to its nearest codebook entry (float64)."""
    distances = (values.double().reshape(-1, 1) - codebook.double().reshape(1, -1)).square()
    return float(distances.min(dim=1).values.sum())


def sklearn_inertia(values: torch.Tensor, clusters: int) -> float:
    fitted = KMeans(n_clusters=clusters, random_state=0).fit(values.double().numpy().reshape(-1, 1))
    return inertia(values, torch.from_numpy(fitted.cluster_centers_.reshape(-1)))


def sample(distribution: str, size: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if distribution == "normal":
        return torch.randn(size, generator=generator)
    if distribution == "laplace":  # heavy tails, like trained weights
        uniform = torch.rand(size, generator=generator) - 0.5
        return -torch.sign(uniform) * torch.log1p(-2 * uniform.abs())
    # "pruned": a normal tensor after magnitude pruning, two lobes with a gap around zero
    values = torch.randn(size, generator=generator)
    return values[values.abs() > 0.6]


def round_trip(weight: torch.Tensor, bits: int) -> torch.Tensor:
    spec = QuantizeSpec(scheme="kmeans", bits=bits)
    quantized = quantize_tensor(weight, spec)
    return dequantize_tensor(quantized.codes, quantized.params, spec, weight.shape)


@pytest.mark.parametrize(
    ("distribution", "size", "bits", "seed"),
    [
        ("normal", 300, 1, 0),
        ("normal", 2_000, 2, 1),
        ("laplace", 1_500, 3, 2),
        ("normal", 6_000, 4, 3),  # more values than the 4096 bins of the k-means++ summary
        ("pruned", 9_000, 4, 4),
        ("laplace", 5_000, 5, 5),
        ("normal", 3_000, 6, 6),
        ("laplace", 6_000, 8, 7),
        ("pruned", 12_000, 8, 8),
    ],
)
def test_inertia_is_within_one_percent_of_sklearn_kmeans(distribution: str, size: int, bits: int, seed: int) -> None:
    values = sample(distribution, size, seed)
    ours = inertia(values, fit_codebook(values, 2**bits))
    assert ours <= 1.01 * sklearn_inertia(values, 2**bits)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_a_tensor_gets_at_most_two_to_the_bits_shared_values(bits: int) -> None:
    weight = sample("normal", 4_000, seed=bits).reshape(40, 100)
    assert len(torch.unique(round_trip(weight, bits))) <= 2**bits


def test_the_codebook_is_shared_by_every_channel_of_the_tensor() -> None:
    spec = QuantizeSpec(scheme="kmeans", bits=3, granularity="per_channel")
    quantized = quantize_tensor(sample("normal", 600, 0).reshape(6, 100), spec)
    assert quantized.params["codebook"].shape == (8,)


def test_each_weight_takes_its_nearest_shared_value() -> None:
    weight = sample("laplace", 2_000, 0).reshape(20, 100)
    spec = QuantizeSpec(scheme="kmeans", bits=3)
    quantized = quantize_tensor(weight, spec)
    codebook = quantized.params["codebook"]
    nearest = codebook[(weight.reshape(-1, 1) - codebook.reshape(1, -1)).abs().argmin(dim=1)]
    assert torch.equal(dequantize_tensor(quantized.codes, quantized.params, spec, weight.shape).reshape(-1), nearest)


def test_the_codebook_is_sorted() -> None:
    codebook = fit_codebook(sample("normal", 1_000, 0), 16)
    assert torch.equal(codebook, codebook.sort().values)


def test_fewer_distinct_values_than_clusters_are_kept_exactly() -> None:
    weight = torch.tensor([0.5, -1.25, 0.5, 3.0, -1.25, 3.0]).reshape(2, 3)
    assert torch.equal(round_trip(weight, bits=2), weight)


def test_only_the_non_zero_weights_are_clustered() -> None:
    weight = sample("normal", 2_000, 0)
    weight[::2] = 0.0  # half the tensor pruned
    quantized = quantize_tensor(weight, QuantizeSpec(scheme="kmeans", bits=3))
    assert torch.equal(quantized.params["codebook"], fit_codebook(weight[weight != 0], 8))


def test_zeros_are_left_to_the_stored_positions_of_non_zeros() -> None:
    quantized = quantize_tensor(torch.tensor([0.0, 1.0, 2.0]), QuantizeSpec(scheme="kmeans", bits=1))
    assert not quantized.represents_zero


def test_an_all_zero_tensor_gets_a_one_entry_zero_codebook() -> None:
    weight = torch.zeros(3, 4)
    quantized = quantize_tensor(weight, QuantizeSpec(scheme="kmeans", bits=4))
    assert quantized.params["codebook"].tolist() == [0.0]
    assert torch.equal(round_trip(weight, bits=4), weight)


def test_fitting_twice_gives_the_same_codebook() -> None:
    values = sample("laplace", 8_000, 3)
    assert torch.equal(fit_codebook(values, 32), fit_codebook(values, 32))


def test_codes_fit_in_the_bits() -> None:
    quantized = quantize_tensor(sample("normal", 5_000, 1), QuantizeSpec(scheme="kmeans", bits=8))
    assert int(quantized.codes.min()) >= 0 and int(quantized.codes.max()) <= 255


def test_more_bits_never_fit_worse() -> None:
    values = sample("laplace", 3_000, 9)
    inertias = [inertia(values, fit_codebook(values, 2**bits)) for bits in range(1, 7)]
    assert all(np.diff(inertias) <= 0)
