"""Each layer's calls in a forward pass, recorded by forward hooks: what it was given, what it gave.

Passes run through ``torch.func.functional_call``, so any weights stand in for the module's own
for one pass without copying the module or writing into it. A recording keeps every call of the
hooked modules (its positional and keyword inputs, its output) so that a layer can be run again
on exactly the inputs it saw, with other weights, without running the model around it.

>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
>>> owners = layer_owners(model, {"0.weight": "Linear", "2.weight": "Linear"})
>>> recording = record(model, (torch.randn(5, 4),), 2, {}, owners)
>>> recording.order, [len(recording.calls[name]) for name in recording.order]
(('0', '2'), [3, 3])
>>> replay(owners["2.weight"], recording.calls["2"], model[2].weight).sqnr_db
inf
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from compression.metrics import output_tensor
from compression.output_error import OutputError

OnCall = Callable[[str, tuple, dict, object], None]


@dataclass(frozen=True, eq=False)
class LayerOwner:
    """The module that runs a parameter as its layer weight, and the parameter's name in it."""

    module_name: str
    attribute: str
    module: nn.Module


@dataclass(frozen=True)
class LayerCall:
    """One call of a layer: copies of its inputs and of the output it gave (float32)."""

    args: tuple
    kwargs: dict
    output: torch.Tensor


@dataclass(frozen=True, eq=False)
class Recording:
    """Every call of the hooked modules over ``inputs``, run in batches of ``batch_size`` rows.

    ``order`` lists the modules in the order of their first call (the model's depth as it
    runs); ``outputs`` holds the model's own output for each batch.
    """

    inputs: tuple[torch.Tensor, ...]
    batch_size: int
    calls: dict[str, list[LayerCall]]
    order: tuple[str, ...]
    outputs: list[torch.Tensor]

    @property
    def rows(self) -> int:
        return int(self.inputs[0].shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes of the recorded tensors, each counted once (layers reading the same input share it)."""
        seen: dict[int, int] = {}
        for calls in self.calls.values():
            for call in calls:
                for tensor in _tensors((call.args, call.kwargs, call.output)):
                    seen[id(tensor)] = tensor.numel() * tensor.element_size()
        return sum(seen.values())


def layer_owners(module: nn.Module, layer_types: Mapping[str, str]) -> dict[str, LayerOwner]:
    """The module running each parameter of ``layer_types`` (name → layer type).

    A tied weight has more than one owner (a Llama's embedding and its LM head share a matrix):
    the owner whose class is the layer type named wins, so the head, a Linear, is hooked rather
    than the embedding. Parameters no module owns directly (a flat graph's) are left out.
    """
    found: dict[int, list[LayerOwner]] = {}
    for module_name, submodule in module.named_modules():
        for attribute, parameter in submodule.named_parameters(recurse=False):
            found.setdefault(id(parameter), []).append(LayerOwner(module_name, attribute, submodule))
    parameters = dict(module.named_parameters(remove_duplicate=False))
    owners = {}
    for name, kind in layer_types.items():
        candidates = found.get(id(parameters[name]), []) if name in parameters else []
        preferred = [owner for owner in candidates if any(cls.__name__ == kind for cls in type(owner.module).__mro__)]
        if preferred or candidates:
            owners[name] = (preferred or candidates)[0]
    return owners


def forward_pass(
    module: nn.Module, inputs: tuple[torch.Tensor, ...], batch_size: int, weights: Mapping[str, torch.Tensor],
    owners: Mapping[str, LayerOwner], on_call: OnCall,
) -> list[torch.Tensor]:
    """Run ``module`` with ``weights`` standing in for its own, ``on_call(module name, args,
    kwargs, output)`` called on every call of an owner; the model's output of each batch."""
    hooked = {owner.module_name: owner.module for owner in owners.values()}
    handles = [
        layer.register_forward_hook(lambda _, args, kwargs, output, name=name: on_call(name, args, kwargs, output),
                                    with_kwargs=True)
        for name, layer in hooked.items()
    ]
    outputs = []
    try:
        # no_grad rather than inference_mode: tensors keep version counters, which tell a copy
        # already taken from an input changed in place since (an in-place ReLU).
        with torch.no_grad():
            for start in range(0, int(inputs[0].shape[0]), batch_size):
                batch = tuple(tensor[start : start + batch_size] for tensor in inputs)
                outputs.append(output_tensor(functional_call(module, dict(weights), batch)).float())
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def record(
    module: nn.Module, inputs: tuple[torch.Tensor, ...], batch_size: int, weights: Mapping[str, torch.Tensor],
    owners: Mapping[str, LayerOwner],
) -> Recording:
    """Every call of the owners over ``inputs``, with ``weights`` in place of the module's own."""
    calls: dict[str, list[LayerCall]] = {}
    copies: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}  # one copy of an input read by several layers

    def copy(value: object) -> object:
        if isinstance(value, torch.Tensor):
            key = (id(value), value._version)
            if key not in copies:
                copies[key] = (value, value.detach().clone())  # the original kept: its id stays unique
            return copies[key][1]
        if isinstance(value, (tuple, list)):
            return type(value)(copy(item) for item in value)
        if isinstance(value, dict):
            return {key: copy(item) for key, item in value.items()}
        return value

    def on_call(name: str, args: tuple, kwargs: dict, output: object) -> None:
        calls.setdefault(name, []).append(LayerCall(copy(args), copy(kwargs), output_tensor(output).detach().float().clone()))

    outputs = []
    for start in range(0, int(inputs[0].shape[0]), batch_size):
        batch = tuple(tensor[start : start + batch_size] for tensor in inputs)
        outputs += forward_pass(module, batch, batch_size, weights, owners, on_call)
        copies.clear()
    return Recording(inputs, batch_size, calls, tuple(calls), outputs)


def compare(
    module: nn.Module, recording: Recording, weights: Mapping[str, torch.Tensor], owners: Mapping[str, LayerOwner],
) -> tuple[dict[str, OutputError], OutputError]:
    """Each hooked module's output error against the recording, and the model output's, over one
    pass with ``weights``. A module called a different number of times than recorded (control
    flow that follows the values) is left unmeasured."""
    errors = {name: OutputError() for name in recording.calls}
    seen = dict.fromkeys(recording.calls, 0)

    def on_call(name: str, args: tuple, kwargs: dict, output: object) -> None:
        index = seen[name] = seen.get(name, 0) + 1
        recorded = recording.calls.get(name, [])
        if index <= len(recorded):
            errors[name].add(recorded[index - 1].output, output_tensor(output))

    outputs = forward_pass(module, recording.inputs, recording.batch_size, weights, owners, on_call)
    for name, count in seen.items():
        if count != len(recording.calls.get(name, [])):
            errors[name] = OutputError()
    model_error = OutputError()
    for reference, output in zip(recording.outputs, outputs):
        model_error.add(reference, output)
    return errors, model_error


def replay(owner: LayerOwner, calls: list[LayerCall], weight: torch.Tensor) -> OutputError:
    """The layer run again on its recorded inputs with ``weight`` as its parameter: its output
    error against what it gave in the recording."""
    error = OutputError()
    with torch.no_grad():
        for call in calls:
            output = functional_call(owner.module, {owner.attribute: weight}, call.args, call.kwargs)
            error.add(call.output, output_tensor(output))
    return error


def _tensors(value: object):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
