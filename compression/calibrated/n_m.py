"""N:M sparsity along the input axis: keep the ``n`` best of every ``m`` consecutive weights.

The convention of ``compression.pruning``: ``n`` counts the weights kept; a short last group keeps
up to ``n`` of its weights; a convolution is grouped across input channels at each kernel
position (out × kh × kw × in), as sparse tensor cores see it. In the (out, in·kh·kw) layout of
unfolded inputs, that grouping is a permutation of the columns: ``channels_last_columns``.
"""
from __future__ import annotations

import torch


def channels_last_columns(shape: torch.Size) -> torch.Tensor | None:
    """Column order that puts a convolution's input channels innermost (None for a Linear)."""
    if len(shape) <= 2:
        return None
    channels, positions = shape[1], shape[2:].numel()
    return torch.arange(channels * positions).reshape(channels, positions).T.reshape(-1)


def unpermuted(columns: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Undo ``columns = original[:, order]``."""
    original = torch.empty_like(columns)
    original[:, order] = columns
    return original


def pruned_in_group(size: int, n: int) -> int:
    """How many weights a group of ``size`` columns loses (a short last group may lose none)."""
    return max(0, size - n)


def n_m_keep(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep-mask of the ``n`` highest scores in every ``m`` consecutive columns of 2-D ``scores``."""
    rows, columns = scores.shape
    pad = (-columns) % m
    # Padding scores sit below every real score, so a short last group keeps its real weights.
    padded = torch.nn.functional.pad(scores.float(), (0, pad), value=-torch.inf).reshape(rows, -1, m)
    keep = torch.zeros_like(padded, dtype=torch.bool)
    if n:
        keep.scatter_(2, padded.topk(n, dim=2).indices, True)
    return keep.reshape(rows, -1)[:, :columns]
