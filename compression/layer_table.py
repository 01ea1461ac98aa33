"""A model's compressible layers and its totals: what ``info`` prints and the Model page shows.

>>> import torch
>>> from compression.model import LoadedModel, module_layer_types
>>> layer = torch.nn.Linear(4, 2)
>>> model = LoadedModel("tiny", "module", layer, module_layer_types(layer), (torch.zeros(1, 4),), None)
>>> table = layer_table(model)
>>> [(row.name, row.shape, row.parameters, row.bytes, row.macs) for row in table.layers]
[('weight', (2, 4), 8, 32, 8)]
>>> (table.parameters, table.bytes, table.compressible_parameters, table.macs.total)
(10, 40, 8, 8)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compression.compress import tied_names
from compression.macs import MacCount, count_macs
from compression.model import LoadedModel


@dataclass(frozen=True)
class LayerRow:
    """One compressible parameter: its layer type, shape, value count, bytes as stored, and the
    multiply-accumulates it takes part in per input row (None where the model cannot be counted)."""

    name: str
    type: str
    shape: tuple[int, ...]
    parameters: int
    bytes: int
    macs: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``info --json``: the shape as a list."""
        return {"name": self.name, "type": self.type, "shape": list(self.shape),
                "parameters": self.parameters, "bytes": self.bytes, "macs": self.macs}


@dataclass(frozen=True)
class LayerTable:
    """The compressible layers, the whole state dict's values and bytes (biases, norms and
    buffers included), and the MACs of one input row (``compression.macs``)."""

    layers: tuple[LayerRow, ...]
    parameters: int
    bytes: int
    macs: MacCount

    @property
    def compressible_parameters(self) -> int:
        return sum(row.parameters for row in self.layers)


def layer_table(model: LoadedModel) -> LayerTable:
    """The rows of ``model.compressible`` in order, and the totals of every stored tensor."""
    state = model.module.state_dict()
    macs = count_macs(model)
    rows = tuple(
        LayerRow(name, model.layer_types[name], tuple(state[name].shape), state[name].numel(),
                 state[name].numel() * state[name].element_size(),
                 None if macs.total is None else macs.layers.get(name, 0))
        for name in model.compressible
    )
    tied = tied_names(state)  # a tied weight (an LM head's) is one tensor: counted once
    stored = [tensor for name, tensor in state.items() if name not in tied]
    return LayerTable(rows, sum(t.numel() for t in stored), sum(t.numel() * t.element_size() for t in stored), macs)
