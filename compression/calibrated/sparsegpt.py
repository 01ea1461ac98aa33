"""SparseGPT: prune a layer one column block at a time and update the weights left (OBS).

Frantar & Alistarh 2023, "SparseGPT: Massive Language Models Can Be Accurately Pruned in
One-Shot"; the steps follow the reference ``sparsegpt.py::fasterprune`` (IST-DASLab). Columns are
visited left to right; for each block of ``block_size`` columns the mask is chosen by the OBS
saliency w² / [H⁻¹]²_jj (``amount`` of the block, compared across the block's rows and columns;
or every group of m columns for n:m), and each pruned weight's error is spread over the columns
not visited yet (``obs.sweep``), so the layer's output moves as little as possible. The
per-block counts add up to exactly round(amount · size).

>>> import torch
>>> weight, inputs = torch.randn(8, 16), torch.randn(64, 16)
>>> int((sparsegpt(weight, inputs, amount=0.5) == 0).sum())
64
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from compression.calibrated.checks import check_int, check_positive, check_sparsity, check_weight
from compression.calibrated.hessian import InputStatistics, dead_columns, inverse_cholesky, statistics
from compression.calibrated.n_m import channels_last_columns, pruned_in_group, unpermuted
from compression.calibrated.obs import sweep


@dataclass(frozen=True)
class SparseGptResult:
    """The pruned, updated weight (float32, the weight's shape) and its keep-mask (True = kept)."""

    weight: torch.Tensor
    keep: torch.Tensor


class _Pruning:
    """The column rule: choose the block's mask (or each n:m group's), zero what it prunes."""

    def __init__(self, shape: torch.Size, amount: float | None, n: int | None, m: int | None) -> None:
        self.pruned = torch.zeros(shape, dtype=torch.bool)  # columns first, like the sweep
        self.amount, self.n, self.m = amount, n, m

    def __call__(self, position: int, i: int, block: torch.Tensor, inverse_diagonal: torch.Tensor) -> torch.Tensor:
        mask = self.pruned[position - i : position - i + block.shape[0]]
        if self.amount is not None and i == 0:
            # Cumulative rounding: the blocks' counts add up to round(amount · size).
            outputs, start = block.shape[1], position
            count = round(self.amount * outputs * (start + block.shape[0])) - round(self.amount * outputs * start)
            if count:
                saliency = (block / inverse_diagonal[:, None]) ** 2
                mask.view(-1)[saliency.reshape(-1).topk(count, largest=False).indices] = True
        if self.n is not None and self.m is not None and i % self.m == 0:
            size = min(self.m, block.shape[0] - i)
            drop = pruned_in_group(size, self.n)
            if drop:  # the group's saliency as updated so far, as the reference does
                saliency = (block[i : i + size] / inverse_diagonal[i : i + size, None]) ** 2
                mask[i : i + size].scatter_(0, saliency.topk(drop, dim=0, largest=False).indices, True)
        return torch.where(mask[i], torch.zeros_like(block[i]), block[i])


def sparsegpt_prune(
    weight: torch.Tensor,
    inputs: torch.Tensor | InputStatistics,
    amount: float | None = None,
    n: int | None = None,
    m: int | None = None,
    block_size: int = 128,
    damping: float = 0.01,
) -> SparseGptResult:
    """SparseGPT on one layer: ``inputs`` is (samples, in·k·k); neither argument is changed.

    ``damping`` is λ / mean diag(H) (the papers' 1 %); for n:m, ``block_size`` is rounded down
    to a multiple of m so that no group straddles two blocks.
    """
    check_sparsity("sparsegpt", amount, n, m)
    check_weight("sparsegpt", weight)
    check_int("sparsegpt", "block_size", block_size, 1)
    check_positive("sparsegpt", "damping", damping)
    hessian = statistics("sparsegpt", inputs, weight).hessian()
    rows = weight.detach().reshape(weight.shape[0], -1).float()
    order = channels_last_columns(weight.shape) if m is not None else None
    if order is not None:
        rows, hessian = rows[:, order], hessian[order][:, order]
    if m is not None:
        block_size = max(m, block_size - block_size % m)
    columns_first = rows.T.clone(memory_format=torch.contiguous_format)  # never a view of weight
    columns_first[dead_columns(hessian)] = 0.0
    rule = _Pruning(columns_first.shape, amount, n, m)
    sweep(columns_first, inverse_cholesky("sparsegpt", hessian, damping), block_size, rule)
    rows, keep = columns_first.T, ~rule.pruned.T
    if order is not None:
        rows, keep = unpermuted(rows, order), unpermuted(keep, order)
    return SparseGptResult(rows.contiguous().reshape(weight.shape), keep.contiguous().reshape(weight.shape))


def sparsegpt(
    weight: torch.Tensor,
    inputs: torch.Tensor | InputStatistics,
    amount: float | None = None,
    n: int | None = None,
    m: int | None = None,
    block_size: int = 128,
    damping: float = 0.01,
) -> torch.Tensor:
    """The pruned and updated weight (float32, the weight's shape); see ``sparsegpt_prune``."""
    return sparsegpt_prune(weight, inputs, amount, n, m, block_size, damping).weight
