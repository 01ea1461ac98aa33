"""Channel removal's entry point: check the arguments, trace a copy, follow, choose and cut."""
from __future__ import annotations

import copy
import numbers
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from compression.display_text import DisplayText
from compression.errors import CompressionError
from compression.graph.channels.following import Reach, follow_layer
from compression.graph.channels.keeps import channel_keeps, masked_recipe
from compression.graph.channels.links import Traced
from compression.graph.channels.surgery import shrink
from compression.graph.layers import module_references
from compression.graph.tracing import traced as fx_traced
from compression.model import LoadedModel, module_layer_types, named_module
from compression.recipe import PRUNE_SCOPES, STRUCTURED_NORMS


@dataclass(frozen=True, eq=False)
class ChannelResult:
    """The smaller copy: ``module`` to run, ``removed`` output-channel indices of each layer
    that could lose channels (empty where the mask keeps all), ``skipped`` layers with the
    reason, and ``masked_recipe``, the recipe whose masked model it equals.

    ``parameters_after`` counts parameters; the border kernels added for zero-padded consumers
    are buffers (out × 1 × k × k values each) and not among them.
    """

    module: nn.Module
    removed: dict[str, list[int]]
    skipped: dict[str, str]
    parameters_before: int
    parameters_after: int
    masked_recipe: dict[str, Any]

    def as_loaded(self, original: LoadedModel) -> LoadedModel:
        """``original`` with the smaller module: same evaluation data and example inputs,
        compressible layers listed anew, and an empty cache."""
        channels = sum(len(indices) for indices in self.removed.values())
        layers = sum(map(bool, self.removed.values()))
        return original.with_module(self.module, DisplayText(
            "channels_removed", f"{channels} channels removed from {layers} layers", channels=channels, layers=layers))


def remove_channels(
    model: LoadedModel | nn.Module,
    amount: float,
    *,
    norm: str = "l1",
    scope: str = "layer",
    example_inputs: tuple[torch.Tensor, ...] | torch.Tensor | None = None,
) -> ChannelResult:
    """Remove the output channels that structured pruning at ``amount`` would mask.

    The channels are those of ``compute_masks`` with ``PruneSpec(method="structured",
    amount=amount, norm=norm, scope=scope)`` over the layers that can be pruned (``global``
    pools those layers only). ``model`` is not changed; the copy is traced in eval mode.
    ``example_inputs`` (by default the LoadedModel's) let the channels be followed through a
    flatten into a Linear: without them, such layers are skipped. A layer the mask would empty
    is skipped too: every layer keeps at least one channel. Only exact Linear and Conv1d/2d/3d
    layers are followed: the other compressible ones (ConvTranspose, recurrent, attention,
    GPT-2's Conv1D) are skipped with the reason, and all their weights left unmasked.
    """
    _check_arguments(amount, norm, scope)
    name, source, inputs = _source(model, example_inputs)
    module = copy.deepcopy(source).eval()  # the traced module shares its submodules with this copy
    traced = fx_traced(module, name, "channel removal")
    if inputs:
        _propagate_shapes(traced, inputs, name)

    holders = Counter(id(tensor) for _, tensor in traced.named_parameters(remove_duplicate=False))
    graph = Traced(traced, module_references(traced.graph), holders, bool(inputs))
    reaches: dict[str, Reach] = {}
    skipped: dict[str, str] = {}
    weights: dict[str, list[str]] = {}  # each layer's compressible weights (an LSTM has several)
    for key in module_layer_types(module):
        weights.setdefault(key.rpartition(".")[0], []).append(key)
    layers = list(weights)
    if not layers:
        # A torch.export program keeps its layers as graph operations: no module to shrink, while
        # the masked recipe would still mask every weight its graph multiplies.
        raise CompressionError(
            f"{name} has no Linear or Conv1d/2d/3d modules for channel removal to follow (a torch.export "
            "program keeps its layers as graph operations); load a zoo name, a state dict or a "
            "Hugging Face folder, or use the structured masks of compress."
        )
    for layer in layers:
        reach = follow_layer(graph, module.get_submodule(layer), layer)
        if isinstance(reach, str):
            skipped[layer] = reach
        else:
            reaches[layer] = reach
    keeps = channel_keeps(traced, reaches, skipped, amount, norm, scope)

    removed = {layer: torch.nonzero(~keeps[layer]).flatten().tolist() for layer in layers if layer in reaches}
    skipped = {layer: skipped[layer] for layer in layers if layer in skipped}
    recipe = masked_recipe(amount, norm, scope, [weight for layer in skipped for weight in weights[layer]])
    before = _parameter_count(source)
    if not any(removed.values()):
        return ChannelResult(module, removed, skipped, before, before, recipe)
    shrink(traced, {layer: reaches[layer] for layer in removed if removed[layer]}, keeps)
    traced.graph.lint()
    traced.recompile()
    return ChannelResult(traced.eval(), removed, skipped, before, _parameter_count(traced), recipe)


def _check_arguments(amount: Any, norm: Any, scope: Any) -> None:
    if isinstance(amount, bool) or not isinstance(amount, numbers.Real) or not 0.0 <= amount < 1.0:
        hint = " amount=1 would remove every channel of every layer." if amount == 1 and amount is not True else ""
        raise CompressionError(
            f"amount must be a number in [0, 1), the fraction of each layer's output channels to "
            f"remove; got {amount!r}.{hint}"
        )
    if norm not in STRUCTURED_NORMS:
        raise CompressionError(f"norm must be one of {', '.join(map(repr, STRUCTURED_NORMS))}; got {norm!r}.")
    if scope not in PRUNE_SCOPES:
        raise CompressionError(f"scope must be one of {', '.join(map(repr, PRUNE_SCOPES))}; got {scope!r}.")


def _source(
    model: LoadedModel | nn.Module, example_inputs: tuple[torch.Tensor, ...] | torch.Tensor | None
) -> tuple[str, nn.Module, tuple[torch.Tensor, ...]]:
    name, module, inputs = named_module(model)
    if example_inputs is not None:
        inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    return name, module, inputs


def _propagate_shapes(traced: fx.GraphModule, inputs: tuple[torch.Tensor, ...], name: str) -> None:
    try:
        with torch.no_grad():
            ShapeProp(traced).propagate(*inputs)  # records each node's output shape
    except (RuntimeError, ValueError, TypeError, IndexError) as error:
        raise CompressionError(
            f"the example inputs do not run through {name} ({type(error).__name__}: {error}); give "
            "example_inputs shaped like the model's real inputs (a batch of two is enough)."
        ) from error


def _parameter_count(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())
