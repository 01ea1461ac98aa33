"""Where a weight keeps its output channels, and the channels-first view the kernel works in.

Per-channel and per-group scales, structured pruning (whole output channels), N:M pruning
(n of every m consecutive weights along the input dimension) and sparsity maps all read a
weight as rows of output channels. Most layers store their weight that way (``Linear`` and
``Conv*d`` as (out, in, k…), recurrent weights as (gates·hidden, in)); some store it on axis 1:

- ``ConvTranspose*d``: (in, out/groups, k…); input-channel group ``g`` feeds output channels
  g·out/groups … (g+1)·out/groups - 1, so axis 0 holds ``groups`` blocks of their own.
- transformers' ``Conv1D`` (GPT-2), and any graph weight multiplied as ``x @ W``: (in, out).
- ONNX ``LSTM``/``GRU``/``RNN`` ``W`` and ``R``: (directions, gates·hidden, in); each direction
  is a block of its own, so the rows are direction × gate unit, as torch's ``weight_ih_l0`` and
  ``weight_ih_l0_reverse`` are two tensors of gates·hidden rows each.

``compress`` moves the output channels to the front (a copy, only for axis 1), works on that
view, and moves them back; the packed file stores the codes in that view and records the axis.

>>> import torch
>>> transposed = torch.nn.ConvTranspose1d(4, 6, 3, groups=2)  # weight (4, 3, 3): in, out/groups, k
>>> axis = OutputAxis(1, groups=2)
>>> axis.channels_first(transposed.weight).shape  # as Conv1d(4, 6, 3, groups=2) stores it
torch.Size([6, 2, 3])
>>> torch.equal(axis.restored(axis.channels_first(transposed.weight)), transposed.weight)
True
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

# The output axis of each layer type's weights (the default compressible set, and Embedding,
# compressed only through ``include``: one row per token). A grouped transposed convolution
# adds its groups, and a graph format may say otherwise for a weight it reads transposed.
LAYER_OUTPUT_AXES: dict[str, int] = {
    "Linear": 0,
    "Conv1d": 0,
    "Conv2d": 0,
    "Conv3d": 0,
    "ConvTranspose1d": 1,
    "ConvTranspose2d": 1,
    "ConvTranspose3d": 1,
    "Conv1D": 1,
    "LSTM": 0,
    "GRU": 0,
    "RNN": 0,
    "LSTMCell": 0,
    "GRUCell": 0,
    "RNNCell": 0,
    "MultiheadAttention": 0,
    "Embedding": 0,
}


@dataclass(frozen=True)
class OutputAxis:
    """The axis holding a weight's output channels: 0, or 1 with ``groups`` blocks along axis 0.

    A weight of shape (a, b, …) with axis 1 has groups·b output channels of a/groups input
    rows each; its channels-first view is (groups·b, a/groups, …).
    """

    axis: int = 0
    groups: int = 1

    def __post_init__(self) -> None:
        if self.axis not in (0, 1):
            raise ValueError(f"an output axis is 0 or 1; got {self.axis!r}.")
        if not (isinstance(self.groups, int) and self.groups >= 1) or (self.axis == 0 and self.groups != 1):
            raise ValueError(f"groups must be a positive integer, and 1 on axis 0; got {self.groups!r}.")

    @classmethod
    def of_layer(cls, layer_type: str, groups: int = 1) -> OutputAxis:
        """The output axis of a layer type's weights (0 for types not in the table)."""
        axis = LAYER_OUTPUT_AXES.get(layer_type, 0)
        return cls(axis, groups if axis == 1 else 1)

    def channels_first_shape(self, shape: torch.Size | tuple[int, ...]) -> torch.Size:
        """The shape of the channels-first view of a weight of ``shape``."""
        shape = torch.Size(shape)
        if self.axis == 0:
            return shape
        if len(shape) < 2 or shape[0] % self.groups:
            raise ValueError(f"a weight of shape {tuple(shape)} has no output axis 1 in {self.groups} groups.")
        return torch.Size((self.groups * shape[1], shape[0] // self.groups, *shape[2:]))

    def stored_shape(self, channels_first_shape: torch.Size | tuple[int, ...]) -> torch.Size:
        """The inverse of :meth:`channels_first_shape`."""
        shape = torch.Size(channels_first_shape)
        if self.axis == 0:
            return shape
        if len(shape) < 2 or shape[0] % self.groups:
            raise ValueError(f"a channels-first shape {tuple(shape)} has no {self.groups} groups of output rows.")
        return torch.Size((self.groups * shape[1], shape[0] // self.groups, *shape[2:]))

    def channels_first(self, weight: torch.Tensor) -> torch.Tensor:
        """The weight with its output channels on axis 0: itself on axis 0, else rearranged
        (a contiguous copy wherever the order of its values changes)."""
        if self.axis == 0:
            return weight
        view_shape = self.channels_first_shape(weight.shape)
        a, b, *rest = weight.shape
        blocks = weight.reshape(self.groups, a // self.groups, b, *rest).transpose(1, 2)
        return blocks.reshape(view_shape).contiguous()

    def restored(self, values: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`channels_first`: values in the weight's own layout."""
        if self.axis == 0:
            return values
        a, b, *rest = self.stored_shape(values.shape)
        blocks = values.reshape(self.groups, b, a // self.groups, *rest).transpose(1, 2)
        return blocks.reshape(a, b, *rest).contiguous()

    def to_entry(self) -> dict[str, int]:
        return {"axis": self.axis, "groups": self.groups}

    @classmethod
    def from_entry(cls, entry: Any) -> OutputAxis:
        """An axis as :meth:`to_entry` wrote it; ValueError for anything else."""
        if not isinstance(entry, dict) or set(entry) != {"axis", "groups"}:
            raise ValueError(f"an output axis entry is {{'axis': …, 'groups': …}}; got {entry!r}.")
        return cls(entry["axis"], entry["groups"])


CHANNELS_ON_AXIS_0 = OutputAxis()
