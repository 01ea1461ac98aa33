"""Wanda: prune the weights of smallest |W_ij| · ‖X_j‖₂, with no weight update.

Sun et al. 2023, "A Simple and Effective Pruning Approach for Large Language Models": a weight
matters as much as the inputs it multiplies, so a large weight on a quiet input goes before a
small one on an outlier channel. Scope ``row`` compares within each output row (the paper's
default, better than ``layer`` on LLaMA); ``layer`` compares across the whole layer, as
torchao's WandaSparsifier does. A cut across layers pools their ``wanda_scores``.

>>> import torch
>>> weight = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
>>> inputs = torch.tensor([[1.0, 3.0], [1.0, 4.0]])   # column norms √2 and 5
>>> wanda(weight, inputs, amount=0.5).tolist()
[[False, True], [False, True]]
"""
from __future__ import annotations

import torch

from compression.calibrated.checks import SCOPES, check_choice, check_inputs, check_sparsity, check_weight
from compression.calibrated.hessian import InputStatistics, statistics
from compression.calibrated.n_m import channels_last_columns, n_m_keep, unpermuted


def wanda_scores(weight: torch.Tensor, inputs: torch.Tensor | InputStatistics) -> torch.Tensor:
    """|W_ij| · ‖X_j‖₂ in the weight's shape (float32); ``inputs`` is (samples, in·k·k)."""
    check_weight("wanda", weight)
    if isinstance(inputs, InputStatistics):
        norms = statistics("wanda", inputs, weight).column_norms()
    else:  # a plain norm: far cheaper than the XᵀX that statistics would build
        check_inputs("wanda", inputs, weight[0].numel(), weight.shape)
        norms = torch.linalg.vector_norm(inputs.detach().float(), dim=0)
    rows = weight.detach().reshape(weight.shape[0], -1).float()
    return (rows.abs() * norms).reshape(weight.shape)


def _lowest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` lowest scores along the last axis, ties to the earlier index."""
    return scores.argsort(dim=-1, stable=True)[..., :count]


def wanda(
    weight: torch.Tensor,
    inputs: torch.Tensor | InputStatistics,
    amount: float | None = None,
    n: int | None = None,
    m: int | None = None,
    scope: str = "row",
) -> torch.Tensor:
    """Keep-mask (True = kept) in the weight's shape, pruning ``amount`` or to ``n``:``m``.

    ``amount`` removes round(amount · in·k·k) weights of every row (scope ``row``) or
    round(amount · size) of the layer (scope ``layer``); ``n``:``m`` keeps the n best of every m
    consecutive inputs, whatever the scope. Neither argument is changed.
    """
    check_sparsity("wanda", amount, n, m)
    check_choice("wanda", "scope", scope, SCOPES)
    scores = wanda_scores(weight, inputs)
    rows = scores.reshape(weight.shape[0], -1)
    if n is not None and m is not None:
        order = channels_last_columns(weight.shape)
        if order is None:
            return n_m_keep(rows, n, m).reshape(weight.shape)
        return unpermuted(n_m_keep(rows[:, order], n, m), order).reshape(weight.shape)
    keep = torch.ones_like(rows, dtype=torch.bool)
    if scope == "row":
        keep.scatter_(1, _lowest(rows, round(amount * rows.shape[1])), False)
    else:
        keep.view(-1)[_lowest(rows.reshape(-1), round(amount * rows.numel()))] = False
    return keep.reshape(weight.shape)
