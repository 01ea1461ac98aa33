"""GPTQ's codes (Frantar et al. 2023): the linear grid, each input column in the group act-order put it in.

Without act-order the groups are the linear scheme's (column j in group j // group_size, or one
per row), so the codes, scales and zero points decode with ``linear.decode`` itself. With
act-order, GPTQ visits columns by decreasing H_jj and opens a group every ``group_size``
columns of that order: each column's group is stored (``group_index``, the reference's g_idx).
The codes are made by ``compression.calibrated.gptq``, which needs the layer's inputs: here is
only the way back.

>>> import torch
>>> spec = QuantizeSpec(scheme="gptq", bits=4, granularity="per_group", group_size=2, act_order=True)
>>> params = {"scale": torch.tensor([[0.5, 2.0]]), "group_index": torch.tensor([1, 0, 0, 1])}
>>> decode(torch.tensor([[1, 1, 1, 1]]), params, spec, torch.Size([1, 4])).tolist()
[[2.0, 0.5, 0.5, 2.0]]
"""
from __future__ import annotations

from dataclasses import replace

import torch

from compression.quantization import linear
from compression.recipe import QuantizeSpec


def decode(codes: torch.Tensor, params: dict[str, torch.Tensor], spec: QuantizeSpec, shape: torch.Size) -> torch.Tensor:
    """(codes - zero_point[:, g]) · scale[:, g], g = group_index[column] where act-order stored it."""
    if "group_index" not in params:
        return linear.decode(codes, params, replace(spec, scheme="linear"), shape)
    group = params["group_index"].long()
    values = codes.reshape(shape[0], -1).float()
    if "zero_point" in params:
        values = values - params["zero_point"][:, group].float()
    return (values * params["scale"][:, group]).reshape(shape)
