"""Views of a weight as rows × groups × group_len, the shape every per-group statistic uses.

per_tensor: 1 × 1 × n; per_channel: out × 1 × (in·k·k); per_group: out × ⌈cols/g⌉ × g, with
the last group zero-padded. Zero padding is harmless: scales come from max|w| or from a range
that always includes 0, and mean |w| divides by a count of non-zeros.
"""
from __future__ import annotations

import torch


def grouped(values: torch.Tensor, granularity: str, group_size: int) -> torch.Tensor:
    """A 3-D view (a copy only when padding is needed) of ``values`` in groups."""
    flat = values.reshape(-1)
    if granularity == "per_tensor" or values.ndim == 0:
        return flat.reshape(1, 1, -1)
    rows = values.reshape(values.shape[0], -1)
    if granularity == "per_channel":
        return rows.unsqueeze(1)
    pad = (-rows.shape[1]) % group_size
    if pad:
        rows = torch.nn.functional.pad(rows, (0, pad))
    return rows.reshape(rows.shape[0], -1, group_size)


def ungrouped(values3d: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The inverse of :func:`grouped`: drop padding and restore the original shape."""
    if len(shape) == 0:
        return values3d.reshape(shape)
    rows = values3d.reshape(values3d.shape[0], -1)
    columns = 1
    for size in shape[1:]:
        columns *= size
    if values3d.shape[0] != shape[0]:  # per_tensor: one row holds everything
        return rows.reshape(-1)[: shape.numel()].reshape(shape)
    return rows[:, :columns].reshape(shape)


def widest_group(scale_like: torch.Tensor) -> tuple[int, int]:
    """Index (row, group) of the group with the largest value, e.g. the widest range."""
    flat_index = int(scale_like.reshape(-1).argmax())
    groups = scale_like.shape[1]
    return flat_index // groups, flat_index % groups
