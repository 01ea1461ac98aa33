"""The column sweep that SparseGPT and GPTQ share: replace one column at a time and spread the
change over the columns not visited yet (Optimal Brain Surgeon's update).

With U the upper Cholesky factor of H⁻¹ (``hessian.inverse_cholesky``), replacing column j by
``new`` costs the output least when every later column k moves by -(w_j - new) / U_jj · U_jk.
Updates are lazy as in the reference code: within a block of ``block_size`` columns at once,
to the rest of the matrix once per block (one matrix product). The weight is held columns
first, (in, out), so that every update touches contiguous memory.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

import torch


class ColumnRule(Protocol):
    """Gives the new values of one column: pruned (SparseGPT) or rounded (GPTQ).

    ``block`` holds the current block's columns as updated so far (block[i] is the column to
    replace, column ``position`` of the whole weight); rules may also choose at i == 0 for the
    whole block.
    """

    def __call__(self, position: int, i: int, block: torch.Tensor, inverse_diagonal: torch.Tensor) -> torch.Tensor: ...


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one thread while the column loop runs, its own setting restored after.

    The loop is thousands of small updates (a block's rows by the layer's outputs): handing each
    to torch's two-thread pool costs more than it saves, and on a loaded machine the pool stalls
    (128 updates of 128 x 1536: 4.8 ms on one thread, 10.7 ms on two, under load).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def sweep(columns_first: torch.Tensor, upper: torch.Tensor, block_size: int, rule: ColumnRule) -> None:
    """Replace every column of the (in, out) ``columns_first`` in place, left to right."""
    with _one_thread():
        _sweep(columns_first, upper, block_size, rule)


def _sweep(columns_first: torch.Tensor, upper: torch.Tensor, block_size: int, rule: ColumnRule) -> None:
    count_all = columns_first.shape[0]
    for start in range(0, count_all, block_size):
        end = min(start + block_size, count_all)
        block = columns_first[start:end].clone()
        errors = torch.empty_like(block)
        inverse_block = upper[start:end, start:end]
        inverse_diagonal = inverse_block.diagonal()
        for i in range(end - start):
            new = rule(start + i, i, block, inverse_diagonal)
            errors[i] = (block[i] - new) / inverse_diagonal[i]
            block[i:].addr_(inverse_block[i, i:], errors[i], alpha=-1.0)
            block[i] = new  # exactly the rule's values, whatever the update's rounding
        columns_first[start:end] = block
        columns_first[end:].addmm_(upper[start:end, end:].T, errors, alpha=-1.0)
