"""k-means weight sharing (Han et al. 2016, Deep Compression): 2^b shared values per tensor.

Only the non-zero weights are clustered, so pruned weights stay exactly zero and are
recovered from the stored positions of non-zeros.

scikit-learn's KMeans (k-means++ start) runs on a summary of the tensor: the non-zero values
binned (when there are more of them than bins) into max(4096, 16k) equal-width bins, each bin a point at its mean weighted by
its count, so it costs the same whatever the tensor's size. Lloyd's algorithm then polishes the
codebook on the full data. That polish is hand-written because in one dimension every cluster
is a contiguous run of the sorted values: an iteration is a binary search of k-1 boundaries
plus prefix sums, O(k log n) instead of scikit-learn's O(n k). The tests hold the inertia
within 1 % of scikit-learn's KMeans run on the whole tensor.

>>> import torch
>>> from compression.recipe import QuantizeSpec
>>> spec = QuantizeSpec(scheme="kmeans", bits=1)
>>> q = encode(torch.tensor([0.9, 1.1, -2.0, -2.2]), spec)
>>> decode(q.codes, q.params, spec, torch.Size([4])).tolist()
[1.0, 1.0, -2.0999999046325684, -2.0999999046325684]
"""
from __future__ import annotations

import torch
from threadpoolctl import threadpool_limits

from compression.quantization.base import QuantizedTensor
from compression.recipe import QuantizeSpec

_MAX_ITERATIONS = 1000
_MIN_BINS = 4096


class _SortedValues:
    """Sorted float64 values with prefix sums: any cluster's count, sum and SSE in O(1)."""

    def __init__(self, values: torch.Tensor) -> None:
        self.ordered = values.reshape(-1).double().sort().values
        zero = torch.zeros(1, dtype=torch.float64)
        self.prefix = torch.cat([zero, self.ordered.cumsum(0)])
        self.prefix_sq = torch.cat([zero, (self.ordered * self.ordered).cumsum(0)])

    def cuts(self, boundaries: torch.Tensor) -> torch.Tensor:
        """Start index of each run between consecutive boundaries, with 0 and n at the ends."""
        inner = torch.searchsorted(self.ordered, boundaries)
        return torch.cat([inner.new_zeros(1), inner, inner.new_full((1,), self.ordered.numel())])

    def run_stats(self, cuts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        counts = (cuts[1:] - cuts[:-1]).double()
        sums = self.prefix[cuts[1:]] - self.prefix[cuts[:-1]]
        squares = self.prefix_sq[cuts[1:]] - self.prefix_sq[cuts[:-1]]
        return counts, sums, squares


def _binned_start(values: _SortedValues, clusters: int) -> torch.Tensor:
    """k-means++ by scikit-learn on the histogram summary of the values."""
    ordered = values.ordered
    bins = max(_MIN_BINS, 16 * clusters)
    if ordered.numel() <= bins:  # small tensors: the summary would be no smaller
        points, weights = ordered, torch.ones_like(ordered)
    else:
        edges = torch.linspace(float(ordered[0]), float(ordered[-1]), bins + 1, dtype=torch.float64)
        counts, sums, _ = values.run_stats(values.cuts(edges[1:-1]))
        occupied = counts > 0
        points, weights = sums[occupied] / counts[occupied], counts[occupied]
    # One OpenMP thread: a few thousand points gain nothing from more, and scikit-learn's
    # threads would fight torch's for the cores (seen: 5x slower on a busy 2-core machine).
    from sklearn.cluster import KMeans  # scikit-learn takes a second to import: only when k-means runs

    with threadpool_limits(limits=1, user_api="openmp"):
        fitted = KMeans(n_clusters=clusters, n_init=10, random_state=0).fit(
            points.float().numpy().reshape(-1, 1), sample_weight=weights.float().numpy()
        )
    return torch.from_numpy(fitted.cluster_centers_.reshape(-1)).double().sort().values


def _lloyd(values: _SortedValues, centroids: torch.Tensor) -> torch.Tensor:
    """Lloyd iterations to convergence; an emptied cluster restarts inside the worst one."""
    for _ in range(_MAX_ITERATIONS):
        cuts = values.cuts((centroids[:-1] + centroids[1:]) / 2)
        counts, sums, squares = values.run_stats(cuts)
        means = sums / counts.clamp(min=1)
        updated = torch.where(counts > 0, means, centroids)
        empty = torch.nonzero(counts == 0).flatten()
        if empty.numel():
            worst = torch.topk(squares - sums * means, empty.numel()).indices
            for cluster, donor in zip(empty.tolist(), worst.tolist()):
                low, high = int(cuts[donor]), int(cuts[donor + 1])
                updated[cluster] = values.ordered[low + (high - low) * 3 // 4]
        updated = updated.sort().values
        if torch.equal(updated, centroids):
            break
        centroids = updated
    return centroids


def fit_codebook(values: torch.Tensor, clusters: int) -> torch.Tensor:
    """Sorted float32 codebook of at most ``clusters`` values fitted to a 1-D tensor."""
    summary = _SortedValues(values)
    distinct = torch.unique_consecutive(summary.ordered)
    if distinct.numel() <= clusters:
        return distinct.float()
    return _lloyd(summary, _binned_start(summary, clusters)).float()


def encode(weight: torch.Tensor, spec: QuantizeSpec) -> QuantizedTensor:
    flat = weight.float().reshape(-1)
    nonzero = flat[flat != 0]
    codebook = fit_codebook(nonzero, 2**spec.bits) if nonzero.numel() else torch.zeros(1)
    boundaries = (codebook[:-1] + codebook[1:]) / 2
    codes = torch.bucketize(flat, boundaries).to(torch.int16).reshape(weight.shape)
    return QuantizedTensor(
        codes=codes,
        params={"codebook": codebook},
        bits=spec.bits,
        min_code=0,
        represents_zero=False,
        levels=codebook.clone(),
        label="kmeans",
    )


def decode(
    codes: torch.Tensor, params: dict[str, torch.Tensor], spec: QuantizeSpec, shape: torch.Size
) -> torch.Tensor:
    return params["codebook"][codes.long()].reshape(shape)
