"""Watch a model run and hand over each watched layer's input matrix when the layer first runs.

The calibrated methods compress layer after layer, each on the outputs of the layers already
compressed before it, as the reference code of SparseGPT (``llama.py::llama_sequential``), GPTQ
(``llama.py``) and Wanda (``lib/prune.py::prune_wanda``) does. They catch inputs with module
hooks on a decoder's blocks; here a ``TorchFunctionMode`` catches every linear and convolution
call whose weight is a watched tensor, because a torch.export program (``.pt2``) calls
``aten.linear`` and ``aten.conv2d`` on parameters directly: its submodules are never called, so
module hooks on them never fire. The mode sees eager modules and programs alike, and the weight
tensor itself, so tied weights and layers called twice are recognised by identity.

The callback runs before the call goes on: whatever it writes into the weight (in place) is
what the layer then computes with, and what every later layer sees. ``watch_layers`` does it in
one pass of one batch; ``watch_in_rounds`` for a model that takes a fixed batch (a program
exported with a static one): a round per layer (or per layers fed the same input, as an
attention's query, key and value are) runs every batch up to it, adding up its statistics.

>>> layers = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
>>> seen = []
>>> reached = watch_layers(layers, (torch.ones(5, 3),), {"2.weight": layers[2].weight},
...                        lambda name, inputs: seen.append((name, tuple(inputs.shape))))
>>> reached, seen
({'2.weight'}, [('2.weight', (5, 2))])
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch.overrides import TorchFunctionMode

from compression.calibrated.hessian import InputStatistics
from compression.calibrated.layer_inputs import layer_inputs

_aten = torch.ops.aten
_LINEAR = {torch.nn.functional.linear, _aten.linear.default}
# Each convolution function with its number of spatial dimensions: torch's own (eager modules)
# and the aten operators a .pt2 program calls.
_CONVOLUTIONS = {
    torch.conv1d: 1, torch.conv2d: 2,
    _aten.conv1d.default: 1, _aten.conv2d.default: 2, _aten.conv1d.padding: 1, _aten.conv2d.padding: 2,
}
_CONV_CLASSES = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d}
_CONV_ARGUMENTS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV_DEFAULTS = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}

OnCall = Callable[[str, torch.Tensor], None]
OnGroup = Callable[[list[str], InputStatistics], None]
Batch = tuple[tuple[torch.Tensor, ...], torch.Tensor | None]  # a batch's inputs and its row mask


class _Stop(Exception):
    """Ends a forward pass early: nothing after this point is needed."""


def _conv_module(weight: torch.Tensor, spatial: int, arguments: dict) -> torch.nn.Module:
    """A weightless (meta) convolution with the call's settings, for ``layer_inputs`` to unfold by."""
    settings = {key: arguments.get(key, default) for key, default in _CONV_DEFAULTS.items()}
    for key in ("stride", "padding", "dilation"):
        if isinstance(settings[key], list):
            settings[key] = tuple(settings[key])
    return _CONV_CLASSES[spatial](
        weight.shape[1] * settings["groups"], weight.shape[0], tuple(weight.shape[2:]), bias=False, device="meta",
        **settings,
    )


def _input_matrix(func: object, arguments: Mapping, mask: torch.Tensor | None) -> torch.Tensor:
    """The (samples, in·k·k) matrix the call's weight multiplies, without the rows ``mask`` (True =
    real) leaves out: padding tokens (batch, sequence) or repeated samples (batch,)."""
    x = arguments["input"]
    if func in _LINEAR:
        if mask is not None and x.ndim > mask.ndim and tuple(x.shape[: mask.ndim]) == tuple(mask.shape):
            x = x[mask]
        return x.reshape(-1, x.shape[-1])
    matrix = layer_inputs(_conv_module(arguments["weight"], _CONVOLUTIONS[func], arguments), x)
    if mask is not None and mask.ndim == 1 and x.shape[0] == mask.shape[0]:  # rows are sample-major
        matrix = matrix.reshape(mask.shape[0], -1, matrix.shape[1])[mask].reshape(-1, matrix.shape[1])
    return matrix


class _Watch(TorchFunctionMode):
    """Finds the linear and convolution calls on watched weights; ``watched`` says what to do."""

    def __init__(self, names: Mapping[int, str], mask: torch.Tensor | None) -> None:
        super().__init__()
        self.names, self.mask = dict(names), mask
        self.last_linear: tuple[torch.Tensor, torch.Tensor] | None = None  # (input, its matrix)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.names and (func in _LINEAR or func in _CONVOLUTIONS):
            arguments = dict(zip(_CONV_ARGUMENTS, args), **kwargs)  # linear's first two are input, weight too
            name = self.names.get(id(arguments.get("weight")))
            if name is not None:
                self.watched(name, func, arguments)
        return func(*args, **kwargs)

    def watched(self, name: str, func: object, arguments: Mapping) -> None:
        raise NotImplementedError

    def matrix(self, func: object, arguments: Mapping) -> torch.Tensor:
        """The call's input matrix; the very same tensor for linear layers fed the same input (an
        attention's query, key and value), so that what is read of it can be shared."""
        x = arguments["input"]
        if func in _LINEAR and self.last_linear is not None and self.last_linear[0] is x:
            return self.last_linear[1]
        matrix = _input_matrix(func, arguments, self.mask)
        if func in _LINEAR:
            self.last_linear = (x, matrix)
        return matrix


class _FirstCalls(_Watch):
    """Hands each watched layer's inputs over the first time it runs; stops when all have run."""

    def __init__(self, names: Mapping[int, str], mask: torch.Tensor | None, on_call: OnCall) -> None:
        super().__init__(names, mask)
        self.on_call = on_call
        self.reached: set[str] = set()

    def watched(self, name: str, func: object, arguments: Mapping) -> None:
        del self.names[id(arguments["weight"])]
        self.reached.add(name)
        self.on_call(name, self.matrix(func, arguments))
        if not self.names:
            raise _Stop


class _NextGroup(_Watch):
    """Reads the first watched layer that runs and those fed the same input; stops at any other."""

    def __init__(self, names: Mapping[int, str], mask: torch.Tensor | None) -> None:
        super().__init__(names, mask)
        self.group: list[str] = []
        self.input: torch.Tensor | None = None
        self.inputs: torch.Tensor | None = None

    def watched(self, name: str, func: object, arguments: Mapping) -> None:
        if self.group and arguments["input"] is not self.input:
            raise _Stop
        if not self.group:
            self.input, self.inputs = arguments["input"], self.matrix(func, arguments)
        self.group.append(name)
        del self.names[id(arguments["weight"])]


def _run(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], watch: _Watch) -> None:
    try:
        with torch.no_grad(), watch:
            module(*inputs)
    except _Stop:
        pass


def watch_layers(
    module: torch.nn.Module,
    inputs: tuple[torch.Tensor, ...],
    weights: Mapping[str, torch.Tensor],
    on_call: OnCall,
    mask: torch.Tensor | None = None,
) -> set[str]:
    """Run ``module(*inputs)`` once and call ``on_call(name, X)`` when a layer whose weight is
    ``weights[name]`` first runs, X its (samples, in·k·k) inputs; returns the names reached.

    ``mask`` (bool, True = real) drops rows from the layers' inputs: (batch, sequence) the
    padding tokens, (batch,) repeated samples. The pass stops once every watched layer has run.
    """
    watch = _FirstCalls({id(weight): name for name, weight in weights.items()}, mask, on_call)
    _run(module, inputs, watch)
    return watch.reached


def watch_in_rounds(
    module: torch.nn.Module, batches: Sequence[Batch], weights: Mapping[str, torch.Tensor], on_group: OnGroup
) -> set[str]:
    """``watch_layers`` over several batches: a round per group of layers (the next one to run,
    and any fed the same input) runs every batch up to it, then ``on_group(names, statistics)``
    sees the statistics of all the batches' inputs. Returns the names reached."""
    pending = {id(weight): name for name, weight in weights.items()}
    reached: set[str] = set()
    while pending:
        group: list[str] = []
        statistics: InputStatistics | None = None
        for inputs, mask in batches:
            watch = _NextGroup(pending, mask)
            _run(module, inputs, watch)
            if not watch.group:
                break
            group = watch.group
            statistics = statistics or InputStatistics(watch.inputs.shape[1])
            statistics.add(watch.inputs)
        if not group:
            return reached  # the layers left never run
        on_group(group, statistics)
        for name in group:
            del pending[id(weights[name])]
        reached.update(group)
    return reached
