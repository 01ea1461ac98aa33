"""Multiply-accumulates (MACs) per compressible layer, counted on a model's example inputs.

Parameters and bytes say what a model stores; MACs say how much arithmetic one input costs.
``torch.utils.flop_counter.FlopCounterMode`` counts the FLOPs of every matrix multiplication,
convolution and attention the forward pass dispatches, two per multiply-accumulate; here each
count goes to the compressible weight that is one of the operation's operands (found by
address, so a transposed view, a tied LM head or an LSTM's gate matrix is found too). What no
weight takes part in (attention's ``QKᵀ`` and ``AV``) is ``unattributed``.

Zeroed weights cost as many MACs as any others: the count follows the shapes. Only removing
channels (``compression.graph.channels``) shrinks the shapes, by about (1−p)² for a layer whose
input and output channels both lose a fraction p.

>>> import torch
>>> from compression.model import LoadedModel, module_layer_types
>>> layer = torch.nn.Linear(4, 3)
>>> model = LoadedModel("tiny", "module", layer, module_layer_types(layer), (torch.zeros(2, 4),), None)
>>> count = count_macs(model)
>>> (dict(count.layers), count.total, count.rows)
({'weight': 12}, 12, 2)
"""
from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils import flop_counter

from compression.model import ForeignRuntimeModule, LoadedModel

_CACHE_KEY = "macs"
# What a user's forward may raise on its own example inputs (the count then gives a reason).
_FORWARD_ERRORS = (RuntimeError, ValueError, TypeError, AssertionError, NotImplementedError, IndexError, KeyError)


@dataclass(frozen=True)
class MacCount:
    """MACs for one input row (one image, one sentence of the example's length).

    ``layers`` maps each compressible weight (the layer table's names) to the MACs of the
    operations it is an operand of; ``total`` is every counted operation, so ``total ==
    sum(layers.values()) + unattributed``. Where the model cannot be counted, ``total`` is None,
    ``layers`` is empty and ``reason`` says why.
    """

    layers: Mapping[str, int] = field(default_factory=dict)
    total: int | None = None
    rows: int = 0  # example rows the count ran on (and was divided by)
    row_shapes: tuple[tuple[int, ...], ...] = ()  # one row of each input
    reason: str | None = None

    @property
    def unattributed(self) -> int | None:
        """MACs of operations no compressible weight takes part in (attention scores, …)."""
        return None if self.total is None else self.total - sum(self.layers.values())

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``info --json``'s ``macs``."""
        return {"total": self.total, "unattributed": self.unattributed, "layers": dict(self.layers),
                "rows": self.rows, "row_shapes": [list(shape) for shape in self.row_shapes], "reason": self.reason}


def count_macs(model: LoadedModel) -> MacCount:
    """The MACs of ``model`` per input row, memoised on the model (its module is read-only)."""
    if _CACHE_KEY not in model.cache:
        model.cache[_CACHE_KEY] = _counted(model)
    return model.cache[_CACHE_KEY]


def _counted(model: LoadedModel) -> MacCount:
    module = model.module
    if isinstance(module, ForeignRuntimeModule):
        return MacCount(reason=f"it runs in {module.runtime}, whose operations torch cannot count")
    inputs = model.example_inputs
    if not inputs and model.evaluation is not None:
        inputs = tuple(tensor[:2] for tensor in model.evaluation.inputs)
    if not inputs or inputs[0].ndim == 0 or inputs[0].shape[0] == 0:
        return MacCount(reason="it records no example input to count on; load it with a data file or input sizes")
    weights = _Weights({name: tensor for name, tensor in module.state_dict(keep_vars=True).items()
                        if name in model.layer_types})
    counter = flop_counter.FlopCounterMode(display=False, custom_mapping=weights.formulas())
    try:
        with torch.no_grad(), counter:
            module(*inputs)
    except _FORWARD_ERRORS as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return MacCount(reason=f"its forward failed on the example inputs ({type(error).__name__}: {detail})")
    total = counter.get_total_flops()
    if total == 0 and model.layer_types:
        return MacCount(reason="torch counted no multiplication while it ran (its layers run outside torch's operators)")
    rows = int(inputs[0].shape[0])
    # Two FLOPs per multiply-accumulate; per row: every layer's work grows with the rows.
    layers = {name: weights.flops[name] // (2 * rows) for name in model.layer_types if name in weights.flops}
    return MacCount(layers, total // (2 * rows), rows, tuple(tuple(tensor.shape[1:]) for tensor in inputs))


class _Weights:
    """The compressible weights by memory range, and the FLOPs counted on each."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        spans = sorted((t.data_ptr(), t.data_ptr() + t.numel() * t.element_size(), name)
                       for name, t in tensors.items() if t.numel())
        self.starts = [start for start, _, _ in spans]
        self.spans = spans
        self.flops: Counter[str] = Counter()

    def owner(self, tensor: torch.Tensor) -> str | None:
        """The weight whose memory ``tensor`` starts in (itself or a view of it), if any."""
        if tensor.device.type == "meta" or not tensor.numel():
            return None
        index = bisect.bisect_right(self.starts, tensor.data_ptr()) - 1
        if index >= 0 and tensor.data_ptr() < self.spans[index][1]:
            return self.spans[index][2]
        return None

    def formulas(self) -> dict[Any, Callable[..., int]]:
        """FlopCounterMode's formulas, each also crediting the weight among its operands; and
        two that torch's table lacks on CPU: the fused LSTM layer and CPU attention."""
        formulas = {op: self._credited(formula) for op, formula in flop_counter.flop_registry.items()}
        formulas[torch.ops.aten.mkldnn_rnn_layer] = _raw(self._rnn_layer)
        formulas[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _raw(_cpu_attention)
        return formulas

    def _credited(self, formula: Callable[..., int]) -> Callable[..., int]:
        def count(*args: Any, out_val: Any = None, **kwargs: Any) -> int:
            flops = formula(*args, out_val=out_val, **kwargs)  # the registry's formulas take tensors
            owners = (self.owner(tensor) for tensor in _tensors((*args, *kwargs.values())))
            owner = next((name for name in owners if name is not None), None)
            if owner is not None:
                self.flops[owner] += flops
            return flops

        return _raw(count)

    def _rnn_layer(self, input: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor,
                   *args: Any, out_val: Any = None, **kwargs: Any) -> int:
        """One LSTM layer and direction: each step multiplies the input by ``weight_ih`` and
        the hidden state by ``weight_hh``."""
        steps = input.numel() // input.shape[-1]  # time × batch, in either layout
        total = 0
        for weight in (weight_ih, weight_hh):
            flops = 2 * steps * weight.numel()
            owner = self.owner(weight)
            if owner is not None:
                self.flops[owner] += flops
            total += flops
        return total


def _cpu_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args: Any,
                   out_val: Any = None, **kwargs: Any) -> int:
    return flop_counter.sdpa_flop_count(query.shape, key.shape, value.shape)


def _tensors(values: tuple[Any, ...]) -> list[torch.Tensor]:
    """The tensors among an operation's arguments, and in its lists of tensors."""
    found = []
    for value in values:
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found += [item for item in value if isinstance(item, torch.Tensor)]
    return found


def _raw(formula: Callable[..., int]) -> Callable[..., int]:
    """``formula`` marked for FlopCounterMode to call with the tensors, not their shapes."""

    def raw(*args: Any, **kwargs: Any) -> int:
        return formula(*args, **kwargs)

    raw._get_raw = True  # type: ignore[attr-defined]
    return raw
