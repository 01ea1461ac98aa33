"""The three digits classifiers of the zoo, untrained, and the input shape each expects.

Each network is small enough to train in seconds on a CPU and exercises a different part of
the engine: a plain convnet, a plain MLP, and a convnet with BatchNorm and a residual add.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DIGITS_MODELS = ("simplenet", "mlp", "bn_cnn")

# Per-sample input shapes: simplenet sees the 8x8 digits upsampled to MNIST's 28x28.
INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "simplenet": (1, 28, 28),
    "mlp": (64,),
    "bn_cnn": (1, 8, 8),
}


class SimpleNet(nn.Module):
    """The PyTorch tutorial's MNIST convnet, with the ``fc1`` the tutorial forgot to define.

    >>> SimpleNet()(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.fc1 = nn.Linear(320, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        return self.fc1(x.flatten(1))


class DigitsMLP(nn.Module):
    """Three Linear layers on the flattened 8x8 digit: nothing but matrices to compress.

    >>> DigitsMLP()(torch.zeros(2, 64)).shape
    torch.Size([2, 10])
    """

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class BatchNormCNN(nn.Module):
    """A convnet with BatchNorm after every conv and one residual block.

    It exists for Conv+BN fusion and structured channel pruning: ``conv4``'s output is added
    to ``conv2``'s, so their output channels can only be pruned together.

    >>> BatchNormCNN()(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(self) -> None:
        super().__init__()
        # No conv bias: the BatchNorm that follows would cancel it.
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv3 = nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(32)
        self.conv4 = nn.Conv2d(32, 32, kernel_size=3, padding=1, bias=False)
        self.bn4 = nn.BatchNorm2d(32)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        residual = F.relu(self.bn3(self.conv3(x)))
        x = F.relu(x + self.bn4(self.conv4(residual)))
        return self.fc(self.pool(x).flatten(1))


_ARCHITECTURES: dict[str, type[nn.Module]] = {
    "simplenet": SimpleNet,
    "mlp": DigitsMLP,
    "bn_cnn": BatchNormCNN,
}


def check_digits_name(name: str) -> None:
    """Raise a ValueError naming the allowed models when ``name`` is not a digits model."""
    if name not in DIGITS_MODELS:
        allowed = ", ".join(repr(n) for n in DIGITS_MODELS)
        raise ValueError(f"name must be one of {allowed}; got {name!r}.")


def build_architecture(name: str) -> nn.Module:
    """A freshly initialised (untrained) digits model; seed torch first for repeatable weights.

    >>> build_architecture("mlp").fc1.in_features
    64
    """
    check_digits_name(name)
    return _ARCHITECTURES[name]()


def input_shape(name: str) -> tuple[int, ...]:
    """The shape of one input sample of the digits model ``name`` (no batch dimension).

    >>> input_shape("simplenet")
    (1, 28, 28)
    """
    check_digits_name(name)
    return INPUT_SHAPES[name]
