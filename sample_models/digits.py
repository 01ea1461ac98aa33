"""The fixed train/test split of scikit-learn's bundled digits, shaped for each model.

The 1797 8x8 images ship with scikit-learn, so nothing is downloaded. Every model uses the
same stratified split (1347 train, 450 test); only the tensor shape differs per model.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from sample_models.architectures import input_shape

TEST_SIZE = 0.25
SPLIT_SEED = 0
MAX_PIXEL = 16.0  # load_digits pixels are counts 0..16


@dataclass(frozen=True)
class DigitsSplit:
    """Held-out split: ``x_*`` float32 shaped ``(n, *input_shape(name))``, ``y_*`` int64 labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@functools.lru_cache(maxsize=1)
def _raw_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    return train_test_split(
        digits.images, digits.target,
        test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=digits.target,
    )


def _as_model_input(images: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    """Scale 8x8 images to [0, 1] and flatten or bilinearly resize them to ``shape``."""
    x = torch.from_numpy(images).to(torch.float32).div(MAX_PIXEL).unsqueeze(1)
    if len(shape) == 1:
        return x.flatten(1)
    if tuple(x.shape[1:]) != shape:
        x = F.interpolate(x, size=shape[1:], mode="bilinear", align_corners=False)
    return x.contiguous()


def digits_split(name: str) -> DigitsSplit:
    """The split shaped for the digits model ``name``; fresh tensors on every call.

    >>> digits_split("bn_cnn").x_test.shape
    torch.Size([450, 1, 8, 8])
    """
    shape = input_shape(name)
    x_train, x_test, y_train, y_test = _raw_split()
    return DigitsSplit(
        x_train=_as_model_input(x_train, shape),
        y_train=torch.from_numpy(y_train).to(torch.int64),
        x_test=_as_model_input(x_test, shape),
        y_test=torch.from_numpy(y_test).to(torch.int64),
    )
