"""What the calibrated methods read of a layer's inputs, and the damped inverse of the Hessian.

For a layer y = W x, changing the weight by ΔW changes the squared output error by the sum over
rows of ΔW H ΔWᵀ, H = XᵀX / samples: the quadratic form that OBS, SparseGPT (Frantar & Alistarh
2023) and GPTQ (Frantar et al. 2023) minimise. ``InputStatistics`` accumulates it batch by
batch, so hooks on a model never have to hold all of a layer's inputs at once.

>>> import torch
>>> stats = InputStatistics(2).add(torch.tensor([[1.0, 0.0]])).add(torch.tensor([[1.0, 2.0]]))
>>> stats.hessian().tolist(), stats.column_norms().tolist()
([[1.0, 1.0], [1.0, 2.0]], [1.4142135381698608, 2.0])
"""
from __future__ import annotations

import torch

from compression.calibrated.checks import check_inputs
from compression.errors import CompressionError, DataError

# Damping grows tenfold per retry: from the papers' 1 % of the mean diagonal to 100x that.
_DAMPING_RETRIES = 3


class InputStatistics:
    """Running XᵀX and Σ|X_j| of (samples, features) batches, in float64.

    Add the same matrices a method would be given (``layer_inputs`` for a convolution).
    """

    def __init__(self, features: int) -> None:
        self.gram = torch.zeros(features, features, dtype=torch.float64)
        self.abs_sum = torch.zeros(features, dtype=torch.float64)
        self.samples = 0

    @property
    def features(self) -> int:
        return self.gram.shape[0]

    def add(self, inputs: torch.Tensor) -> InputStatistics:
        """Accumulate one batch (only read); returns ``self`` so that calls chain."""
        check_inputs("InputStatistics.add", inputs, self.features)
        batch = inputs.detach().float()
        self.gram += (batch.T @ batch).double()
        self.abs_sum += batch.abs().sum(dim=0, dtype=torch.float64)
        self.samples += batch.shape[0]
        return self

    def hessian(self) -> torch.Tensor:
        """H = XᵀX / samples (float64): the reference code's H up to its constant factor 2."""
        return self.gram / self.samples

    def column_norms(self) -> torch.Tensor:
        """‖X_j‖₂ of every input column, float32: Wanda's activation factor."""
        return self.gram.diagonal().sqrt().float()

    def mean_abs(self) -> torch.Tensor:
        """mean |X_j| of every input column, float32: AWQ's activation magnitude."""
        return (self.abs_sum / self.samples).float()


def statistics(method: str, inputs: torch.Tensor | InputStatistics, weight: torch.Tensor) -> InputStatistics:
    """``inputs`` as statistics, checked against the weight's (out, in·k·k) columns."""
    columns = weight[0].numel()
    if isinstance(inputs, InputStatistics):
        if inputs.features != columns or inputs.samples == 0:
            raise DataError(
                f"{method}: input statistics must hold samples of {columns} features for a weight of shape "
                f"{tuple(weight.shape)}; got {inputs.samples} samples of {inputs.features}."
            )
        return inputs
    check_inputs(method, inputs, columns, weight.shape)
    return InputStatistics(columns).add(inputs)


def inverse_cholesky(method: str, hessian: torch.Tensor, damping: float) -> torch.Tensor:
    """Upper triangular U, float32, with UᵀU = (H + λI)⁻¹ and λ = damping · mean diag(H).

    Row i of U, divided by U_ii, is how the error of rounding column i spreads to the columns
    after it. A column no input reaches (H_jj = 0) counts as H_jj = 1, as in the reference code;
    callers zero its weights. When H + λI is not numerically positive definite (inputs of low
    rank), λ grows tenfold, up to three times, before giving up.

    U comes from one factorisation, not the reference's three (Cholesky, its inverse, Cholesky
    again): with P the order-reversing permutation and P(H + λI)P = LLᵀ, U = P L⁻¹ P is upper
    triangular and UᵀU = P L⁻ᵀ L⁻¹ P = (H + λI)⁻¹. A 1536-column layer here: 0.4 s, not 0.7 s (2.3 s
    on two threads of a loaded machine).
    """
    matrix = hessian.double().flip(0, 1)  # a copy, in reversed order
    diagonal = matrix.diagonal()
    diagonal[diagonal == 0] = 1.0
    base = damping * float(diagonal.mean())
    identity = torch.eye(matrix.shape[0], dtype=torch.float64)
    for retry in range(_DAMPING_RETRIES + 1):
        lower, info = torch.linalg.cholesky_ex(matrix + base * 10**retry * identity)
        if info == 0:
            inverse = torch.linalg.solve_triangular(lower, identity, upper=False)
            if bool(torch.isfinite(inverse).all()):
                return inverse.flip(0, 1).float()
    raise CompressionError(
        f"{method}: the inputs' Hessian is not positive definite even with damping {damping * 10**_DAMPING_RETRIES:g}; "
        "calibrate on more or more varied samples."
    )


def dead_columns(hessian: torch.Tensor) -> torch.Tensor:
    """Input columns that were zero in every sample: their weights never reach the output."""
    return hessian.diagonal() == 0
