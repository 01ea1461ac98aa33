"""Structured pruning that removes channels: a smaller dense copy of a model.

The engine's structured masks zero whole output channels of a layer; this module takes the
same channels out. The copy's layers have fewer output channels, and the layers that read
them (the next convolution, the Linear after a flatten, the BatchNorm between) fewer inputs,
so it is smaller and faster with no sparse kernels at all.

A masked channel is not silent: its weights are zero but its bias is not, so it outputs a
constant, which BatchNorm and the activation map to another constant. Removing the channel,
that constant's contribution is added back where it lands: into the consumer's bias, or,
where the consumer zero-pads its input (the border sees less of the constant than the
interior), as a fixed one-channel convolution of ones. The copy therefore gives the outputs of
``compress(model, result.masked_recipe).module``, the engine's masked model, up to float
rounding: removal changes the speed, not the function.

Channels are followed through the traced graph (``torch.fx``) only where the mapping is
exact; a layer whose channels reach a residual add, a concatenation, an unmapped reshape or the
model's output is left whole, and ``skipped`` says why.

>>> import torch
>>> from torch import nn
>>> from compression.compress import compress
>>> _ = torch.manual_seed(0)
>>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU(),
...                       nn.Flatten(), nn.Linear(16 * 4 * 4, 10)).eval()
>>> x = torch.randn(2, 3, 8, 8)
>>> result = remove_channels(model, 0.5, example_inputs=(x,))
>>> result.module.get_submodule("2").weight.shape  # 8 of 16 filters, reading 4 of 8 channels
torch.Size([8, 4, 3, 3])
>>> result.skipped
{'5': "its channels reach the model's output, whose shape must not change"}
>>> masked = compress(model, result.masked_recipe).module
>>> torch.allclose(result.module(x), masked(x), atol=1e-5)
True
"""
from __future__ import annotations

import copy
import math
import numbers
import operator
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from compression.errors import CompressionError
from compression.fusion import _BATCHNORM_TYPES, _CONV_TYPES, _references
from compression.tracing import traced as fx_traced
from compression.model import LoadedModel, module_layer_types, named_module
from compression.pruning import _as_rows, compute_masks
from compression.recipe import PRUNE_SCOPES, STRUCTURED_NORMS, PruneSpec

Step = Callable[[torch.Tensor], torch.Tensor]  # maps each channel's constant value onward

# Element-wise maps: a constant channel stays constant, and its value is the map of the old one.
_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardtanh,
    nn.Hardswish, nn.Identity,
)
_ELEMENTWISE_FUNCTIONS = {
    F.relu, torch.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, F.hardtanh, F.hardswish,
    torch.sigmoid, F.sigmoid, torch.tanh, F.tanh,
}
_ELEMENTWISE_METHODS = ("relu", "sigmoid", "tanh")
# Identities in eval mode, the mode the copy is traced and compared in.
_DROPOUT_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_DROPOUT_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout}
# Pools work channel by channel and map a constant channel to the same constant (average pools
# only where no padded zero enters the mean); each maps to the spatial dimensions it pools.
_POOL_MODULES = {
    nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3,
    nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3,
    nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3,
    nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3,
}
_POOL_FUNCTIONS = {
    F.max_pool1d: 1, F.max_pool2d: 2, F.max_pool3d: 3,
    F.adaptive_max_pool1d: 1, F.adaptive_max_pool2d: 2, F.adaptive_max_pool3d: 3,
    F.adaptive_avg_pool1d: 1, F.adaptive_avg_pool2d: 2, F.adaptive_avg_pool3d: 3,
    F.avg_pool1d: 1, F.avg_pool2d: 2, F.avg_pool3d: 3,
}
_AVERAGE_POOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)
_JOINS = {
    operator.add: "a residual add", operator.iadd: "a residual add", torch.add: "a residual add",
    operator.mul: "a product", operator.sub: "a difference",
    torch.cat: "a concatenation", torch.concat: "a concatenation", torch.stack: "a stack",
}
_CONV_FUNCTIONS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_OUTPUT = "its channels reach the model's output, whose shape must not change"


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
        return original.with_module(
            self.module, f"{channels} channels removed from {sum(map(bool, self.removed.values()))} layers"
        )


@dataclass(frozen=True)
class _Layout:
    """Where a tensor on the way holds the producer's channels.

    ``channels``: dimension 1, then ``spatial`` dimensions (a convolution's output);
    ``flat``: 2-D, channel c in columns c*group .. (c+1)*group - 1 (after a flatten);
    ``features``: the last dimension, of a tensor of unknown rank (a Linear's output).
    """

    kind: str
    spatial: int = 0
    group: int = 1


@dataclass(frozen=True)
class _Through:
    """A per-channel op the channels pass through; ``norm``: a BatchNorm sliced with them."""

    layout: _Layout
    step: Step
    norm: bool = False


@dataclass(frozen=True)
class _Consumer:
    """A layer reading the channels: ``group`` input columns per channel, ``steps`` on the way."""

    node: fx.Node
    group: int
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class _Traced:
    """The traced copy and what every link check asks of it."""

    module: fx.GraphModule
    references: dict[str, int]  # calls and direct reads per module name (fusion's count)
    holders: Counter[int]  # how many modules hold each parameter (by id): tied weights count twice
    shapes: bool  # whether example inputs recorded each node's output shape


@dataclass
class _Reach:
    """Everything one prunable layer's output channels reach, all of it mappable."""

    norms: list[fx.Node]
    consumers: list[_Consumer]


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
    is skipped too: every layer keeps at least one channel.
    """
    _check_arguments(amount, norm, scope)
    name, source, inputs = _source(model, example_inputs)
    module = copy.deepcopy(source).eval()  # the traced module shares its submodules with this copy
    traced = fx_traced(module, name, "channel removal")
    if inputs:
        _propagate_shapes(traced, inputs, name)

    holders = Counter(id(tensor) for _, tensor in traced.named_parameters(remove_duplicate=False))
    graph = _Traced(traced, _references(traced.graph), holders, bool(inputs))
    reaches: dict[str, _Reach] = {}
    skipped: dict[str, str] = {}
    layers = [key.removesuffix("weight").removesuffix(".") for key in module_layer_types(module)]
    if not layers:
        # A torch.export program keeps its layers as graph operations: no module to shrink, while
        # the masked recipe would still mask every weight its graph multiplies.
        raise CompressionError(
            f"{name} has no Linear or Conv1d/2d/3d modules for channel removal to follow (a torch.export "
            "program keeps its layers as graph operations); load a zoo name, a state dict or a "
            "Hugging Face folder, or use the structured masks of compress."
        )
    for layer in layers:
        reach = _follow_layer(graph, module.get_submodule(layer), layer)
        if isinstance(reach, str):
            skipped[layer] = reach
        else:
            reaches[layer] = reach
    keeps = _channel_keeps(traced, reaches, skipped, amount, norm, scope)

    removed = {layer: torch.nonzero(~keeps[layer]).flatten().tolist() for layer in layers if layer in reaches}
    skipped = {layer: skipped[layer] for layer in layers if layer in skipped}
    recipe = _masked_recipe(amount, norm, scope, skipped)
    before = _parameter_count(source)
    if not any(removed.values()):
        return ChannelResult(module, removed, skipped, before, before, recipe)
    _shrink(traced, {layer: reaches[layer] for layer in removed if removed[layer]}, keeps)
    traced.graph.lint()
    traced.recompile()
    return ChannelResult(traced.eval(), removed, skipped, before, _parameter_count(traced), recipe)


# --- arguments -------------------------------------------------------------------------------


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


def _masked_recipe(amount: float, norm: str, scope: str, skipped: dict[str, str]) -> dict[str, Any]:
    recipe: dict[str, Any] = {"prune": {"method": "structured", "amount": float(amount), "norm": norm, "scope": scope}}
    if skipped:
        recipe["overrides"] = {(f"{layer}.weight" if layer else "weight"): {"prune": None} for layer in skipped}
    return recipe


# --- which channels --------------------------------------------------------------------------


def _channel_keeps(
    traced: fx.GraphModule,
    reaches: dict[str, _Reach],
    skipped: dict[str, str],
    amount: float,
    norm: str,
    scope: str,
) -> dict[str, torch.Tensor]:
    """The engine's structured keep-rows of each layer in ``reaches``, none of them empty.

    A layer the mask would empty is skipped, and the rest masked again without it: with scope
    ``global`` the pool, and so the cut, changes, exactly as in ``compress`` with that layer's
    pruning switched off.
    """
    spec = PruneSpec(method="structured", amount=float(amount), norm=norm, scope=scope)
    while True:
        weights = {layer: traced.get_submodule(layer).weight.detach() for layer in reaches}
        masks = compute_masks(weights, {layer: spec for layer in weights})
        keeps = {layer: _as_rows(mask.keep)[:, 0] for layer, mask in masks.items()}
        emptied = [layer for layer, keep in keeps.items() if not keep.any()]
        if not emptied:
            return keeps
        for layer in emptied:
            channels = keeps[layer].numel()
            skipped[layer] = (
                f"structured pruning at amount={amount} would remove all {channels} of its output "
                "channels; a layer keeps at least one"
            )
            del reaches[layer]


# --- following the channels ------------------------------------------------------------------


def _follow_layer(graph: _Traced, layer_module: nn.Module, layer: str) -> _Reach | str:
    """Where ``layer``'s output channels go, or why they cannot be removed."""
    if type(layer_module) not in (*_CONV_TYPES, nn.Linear):
        return f"a {type(layer_module).__name__}: only exact Linear and Conv1d/2d/3d layers are followed"
    if isinstance(layer_module, _CONV_TYPES) and layer_module.groups != 1:
        return f"a grouped convolution (groups={layer_module.groups}): its channels are tied in groups"
    calls = [node for node in graph.module.graph.nodes if node.op == "call_module" and node.target == layer]
    if not calls:
        return "not called as a module in the traced forward"
    problem = _shared(graph, layer)
    if problem:
        return f"it {problem}"
    producer = calls[0]
    if isinstance(layer_module, nn.Linear):
        layout = _Layout("flat") if _rank(producer) == 2 else _Layout("features")
    else:
        spatial = layer_module.weight.ndim - 2
        if _rank(producer) == spatial + 1:
            return "runs on unbatched input: its channels are dimension 0"
        layout = _Layout("channels", spatial)
    return _follow(graph, producer, layout, layer_module.weight.shape[0])


def _follow(graph: _Traced, producer: fx.Node, layout: _Layout, channels: int) -> _Reach | str:
    reach = _Reach([], [])
    pending: list[tuple[fx.Node, _Layout, tuple[Step, ...]]] = [(producer, layout, ())]
    while pending:
        node, layout, steps = pending.pop()
        for user in node.users:
            link = _link(graph, node, user, layout, channels)
            if isinstance(link, str):
                return link
            if isinstance(link, _Through):
                reach.norms.extend([user] if link.norm else [])
                pending.append((user, link.layout, (*steps, link.step)))
            elif isinstance(link, int):
                reach.consumers.append(_Consumer(user, link, steps))
    return reach


def _link(graph: _Traced, node: fx.Node, user: fx.Node, layout: _Layout, channels: int) -> _Through | int | str | None:
    """How ``user`` reads ``node``'s channels: through a per-channel op (``_Through``), as a
    consumer (its input columns per channel), not at all (None: a batch-size query), or the
    reason why the channels cannot be followed there."""
    if user.op == "output":
        return _OUTPUT
    if user.op == "call_method" and user.target == "size" and _size_dimension(user) == 0:
        return None
    if user.op == "call_function" and user.target in _JOINS and len(user.all_input_nodes) > 1:
        return f"its channels meet another tensor in {_JOINS[user.target]} ({user.name}), which ties them to it"
    if user.op == "call_method" and user.target in ("view", "reshape"):
        return _reshaped(graph, node, user, layout)
    if user.all_input_nodes != [node] or not user.args or user.args[0] is not node:
        return _unfollowed(graph, user)
    if user.op == "call_module":
        return _module_link(graph, user, layout, channels)
    if user.op == "call_function":
        return _function_link(graph, user, layout)
    if user.op == "call_method":
        return _method_link(graph, user, layout)
    return _unfollowed(graph, user)


def _module_link(graph: _Traced, user: fx.Node, layout: _Layout, channels: int) -> _Through | int | str:
    module = graph.module.get_submodule(user.target)
    kind = type(module)
    if user.kwargs or len(user.args) != 1:
        return _unfollowed(graph, user)
    if kind in _ELEMENTWISE_MODULES:
        return _Through(layout, lambda values: module(values.clone()))
    if kind in _DROPOUT_MODULES:
        return _Through(layout, _identity)
    if kind in _POOL_MODULES:
        if getattr(module, "return_indices", False):
            return f"its channels reach {_described(graph, user)}, which also returns indices"
        fields = {key: getattr(module, key, None) for key in ("padding", "count_include_pad", "divisor_override")}
        return _pooled(graph, user, layout, _POOL_MODULES[kind], kind in _AVERAGE_POOLS, fields)
    if kind is nn.Flatten:
        return _flattened(graph, user, layout, module.start_dim, module.end_dim)
    if kind not in (*_BATCHNORM_TYPES, *_CONV_TYPES, nn.Linear):
        return _unfollowed(graph, user)
    problem = _shared(graph, user.target)
    if problem:
        return f"its channels reach {user.target}, which {problem}"
    if kind in _BATCHNORM_TYPES:
        return _normalised(module, user, layout)
    if kind is nn.Linear:
        if layout.kind == "channels" or module.in_features != channels * layout.group:
            return f"its channels reach {user.target}, which does not read them as its input features"
        return layout.group
    if module.groups != 1:
        return f"its channels reach {user.target}, a grouped convolution that reads them in groups"
    if layout.kind != "channels" or layout.spatial != module.weight.ndim - 2:
        return f"its channels reach {user.target}, which does not read them as its input channels"
    return 1


def _function_link(graph: _Traced, user: fx.Node, layout: _Layout) -> _Through | str:
    target = user.target
    if target is torch.flatten:
        return _flattened(graph, user, layout, *_flatten_dimensions(user))
    if target not in _ELEMENTWISE_FUNCTIONS and target not in _DROPOUT_FUNCTIONS and target not in _POOL_FUNCTIONS:
        return _unfollowed(graph, user)
    rest = _arguments_besides_input(graph, user)
    if rest is None:
        return _unfollowed(graph, user)
    if target in _DROPOUT_FUNCTIONS:
        if rest.get("training", True):
            return f"its channels reach {user.name}, a dropout in training mode: random, never exact"
        return _Through(layout, _identity)
    if target in _POOL_FUNCTIONS:
        if rest.get("return_indices", False):
            return f"its channels reach {user.name}, which also returns indices"
        return _pooled(graph, user, layout, _POOL_FUNCTIONS[target], target in _AVERAGE_POOLS, rest)
    return _Through(layout, lambda values: target(values.clone(), **rest))


def _arguments_besides_input(graph: _Traced, user: fx.Node) -> dict[str, Any] | None:
    """The call's other arguments by name, defaults filled in; None where torch cannot tell."""
    if len(user.args) == 1 and not user.kwargs and user.target in _ELEMENTWISE_FUNCTIONS:
        return {}  # torch.tanh(x): its overloads (tensor, int, float...) make normalising ambiguous
    try:
        arguments = user.normalized_arguments(graph.module, normalize_to_only_use_kwargs=True)
    except (RuntimeError, ValueError, TypeError):
        return None
    return None if arguments is None else {key: value for key, value in arguments.kwargs.items() if key != "input"}


def _method_link(graph: _Traced, user: fx.Node, layout: _Layout) -> _Through | str:
    if user.target in _ELEMENTWISE_METHODS and len(user.args) == 1 and not user.kwargs:
        return _Through(layout, lambda values: getattr(values, user.target)())
    if user.target == "flatten":
        return _flattened(graph, user, layout, *_flatten_dimensions(user))
    if user.target == "contiguous" and len(user.args) == 1 and not user.kwargs:
        return _Through(layout, _identity)
    return _unfollowed(graph, user)


def _identity(values: torch.Tensor) -> torch.Tensor:
    return values


_BATCHNORM_SPATIAL = {nn.BatchNorm1d: 1, nn.BatchNorm2d: 2, nn.BatchNorm3d: 3}


def _normalised(norm: nn.Module, user: fx.Node, layout: _Layout) -> _Through | str:
    """A BatchNorm over the channels: sliced with them; in eval mode it maps a constant to a constant."""
    if norm.running_mean is None or norm.running_var is None:
        return f"its channels reach {user.target}, a BatchNorm that normalises with batch statistics"
    over_channels = (layout.kind == "channels" and layout.spatial == _BATCHNORM_SPATIAL[type(norm)]) or (
        type(norm) is nn.BatchNorm1d and layout.kind == "flat" and layout.group == 1
    )
    if not over_channels:
        return f"its channels reach {user.target}, a BatchNorm that does not normalise them one by one"
    mean = norm.running_mean.detach().double().clone()  # copies: the BatchNorm is sliced later
    scale = torch.rsqrt(norm.running_var.detach().double() + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight.detach().double()
    shift = norm.bias.detach().double().clone() if norm.bias is not None else torch.zeros_like(mean)
    return _Through(layout, lambda values: (values - mean) * scale + shift, norm=True)


def _pooled(
    graph: _Traced, user: fx.Node, layout: _Layout, dimensions: int, average: bool, fields: dict[str, Any]
) -> _Through | str:
    if layout.kind != "channels" or layout.spatial != dimensions:
        return f"its channels reach {_described(graph, user)}, which pools across other dimensions"
    padding = fields.get("padding") or 0
    pads = (padding,) if isinstance(padding, int) else tuple(padding)
    counts_padding = any(pads) and fields.get("count_include_pad", True)
    if average and (counts_padding or fields.get("divisor_override") is not None):
        # Padded zeros in the mean, or another divisor, change a constant channel's value.
        return f"its channels reach {_described(graph, user)}, an average pool that counts padding or sets its divisor"
    return _Through(layout, _identity)


def _flatten_dimensions(node: fx.Node) -> tuple[Any, Any]:
    """(start_dim, end_dim) of torch.flatten(x, ...) or x.flatten(...), with their defaults."""
    args = node.args[1:]
    start = args[0] if len(args) > 0 else node.kwargs.get("start_dim", 0)
    end = args[1] if len(args) > 1 else node.kwargs.get("end_dim", -1)
    return start, end


def _flattened(graph: _Traced, user: fx.Node, layout: _Layout, start: Any, end: Any) -> _Through | str:
    """flatten(1): channel c becomes the columns c*H*W .. (c+1)*H*W - 1 (H*W from the shapes)."""
    if layout.kind == "flat" and start in (1, -1) and end == -1:
        return _Through(layout, _identity)  # flattening a 2-D tensor from dimension 1 changes nothing
    if layout.kind != "channels":
        return f"its channels reach {_described(graph, user)}, a flatten that scatters them"
    shape = _shape(user.args[0])
    if not graph.shapes or shape is None:
        return f"its channels reach {_described(graph, user)}, a flatten: mapping them needs example_inputs"
    rank = len(shape)
    if start not in (1, 1 - rank) or end not in (-1, rank - 1):
        return f"its channels reach {_described(graph, user)}, a flatten of other dimensions than channels and space"
    return _Through(_Layout("flat", group=math.prod(shape[2:])), _identity)


def _reshaped(graph: _Traced, node: fx.Node, user: fx.Node, layout: _Layout) -> _Through | str:
    """x.view(x.size(0), -1) or x.reshape(batch, -1): the classic flatten, and no other reshape."""
    sizes = user.args[1:]
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    batch = sizes[0] if sizes else None
    batch_query = (
        isinstance(batch, fx.Node) and batch.target == "size" and batch.args[0] is node and _size_dimension(batch) == 0
    )
    flattens = len(sizes) == 2 and sizes[1] == -1 and (isinstance(batch, int) or batch_query)
    if user.kwargs or user.args[0] is not node or not flattens:
        return f"its channels reach {_described(graph, user)}, a reshape whose channel mapping is unknown"
    return _flattened(graph, user, layout, 1, -1)


def _size_dimension(node: fx.Node) -> Any:
    return node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")


def _shared(graph: _Traced, target: str) -> str | None:
    """Why a layer cannot be sliced alone (a verb phrase), or None where it can."""
    if graph.references[target] != 1:
        return "is called more than once, or its tensors are read directly"
    if any(graph.holders[id(tensor)] > 1 for tensor in graph.module.get_submodule(target).parameters()):
        return "shares its parameters with another layer"
    return None


def _unfollowed(graph: _Traced, user: fx.Node) -> str:
    return f"its channels reach {_described(graph, user)}, which channel removal cannot follow"


def _described(graph: _Traced, node: fx.Node) -> str:
    if node.op == "call_module":
        return f"{node.target} ({type(graph.module.get_submodule(node.target)).__name__})"
    if node.op == "call_method":
        return f".{node.target}() ({node.name})"
    return node.name


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _rank(node: fx.Node) -> int | None:
    shape = _shape(node)
    return None if shape is None else len(shape)


# --- removing them ---------------------------------------------------------------------------


def _shrink(traced: fx.GraphModule, reaches: dict[str, _Reach], keeps: dict[str, torch.Tensor]) -> None:
    """Slice every layer and BatchNorm the removed channels touch, and add their constants back.

    All constants are computed before anything is sliced: they come from the original weights,
    as in the masked model.
    """
    rows = {layer: keeps[layer] for layer in reaches}
    columns: dict[str, torch.Tensor] = {}
    norms: dict[str, torch.Tensor] = {}
    bias_deltas: dict[str, torch.Tensor] = {}
    border_kernels: dict[fx.Node, torch.Tensor] = {}
    for layer, reach in reaches.items():
        keep = keeps[layer]
        producer = traced.get_submodule(layer)
        # A masked channel outputs its bias (zero without one) wherever it is computed.
        if producer.bias is not None:
            constants = producer.bias.detach().double()
        else:
            constants = torch.zeros(keep.numel(), dtype=torch.float64, device=keep.device)
        for norm in reach.norms:
            norms[norm.target] = keep
        for consumer in reach.consumers:
            columns[consumer.node.target] = keep.repeat_interleave(consumer.group)
            values = constants
            for step in consumer.steps:
                values = step(values)
            layer_module = traced.get_submodule(consumer.node.target)
            contribution = _constant_contribution(layer_module, values, keep, consumer.group)
            if contribution is None:
                continue
            if contribution.ndim == 1:
                bias_deltas[consumer.node.target] = contribution
            else:
                border_kernels[consumer.node] = contribution
    for target in {**rows, **columns}:
        _slice_layer(traced.get_submodule(target), rows.get(target), columns.get(target), bias_deltas.get(target))
    for target, keep in norms.items():
        _slice_norm(traced.get_submodule(target), keep)
    for node, kernel in border_kernels.items():
        keep = rows.get(node.target)
        _add_border(traced, node, kernel if keep is None else kernel[keep])


def _constant_contribution(
    layer: nn.Module, values: torch.Tensor, keep: torch.Tensor, group: int
) -> torch.Tensor | None:
    """What the removed channels, constant at ``values``, add to ``layer``'s output.

    A per-output-channel bias (1-D), or, for a convolution that zero-pads its input, a
    one-input-channel kernel (out × 1 × k...) to convolve with ones: at the border the kernel
    overlaps the padding and sees less of the constant than in the interior.
    """
    removed = ~keep
    constants = values[removed]
    if not constants.any():
        return None
    weight = layer.weight.detach().double()
    if isinstance(layer, nn.Linear):
        columns = weight[:, removed.repeat_interleave(group)].reshape(weight.shape[0], -1, group)
        return (columns.sum(dim=2) * constants).sum(dim=1)
    spatial = weight.ndim - 2
    kernel = (weight[:, removed] * constants.reshape(1, -1, *([1] * spatial))).sum(dim=1, keepdim=True)
    return kernel if _zero_pads(layer) else kernel.flatten(1).sum(dim=1)


def _zero_pads(conv: nn.Module) -> bool:
    if conv.padding_mode != "zeros" or conv.padding == "valid":
        return False  # reflect/replicate/circular padding of a constant is that constant
    return conv.padding == "same" or any(pad != 0 for pad in conv.padding)


def _slice_layer(
    layer: nn.Module, rows: torch.Tensor | None, columns: torch.Tensor | None, bias_delta: torch.Tensor | None
) -> None:
    """Keep ``rows`` (output channels) and ``columns`` (inputs) of a layer, adding ``bias_delta``."""
    weight = layer.weight.detach()
    if rows is not None:
        weight = weight[rows]
    if columns is not None:
        weight = weight[:, columns]
    bias = layer.bias.detach() if layer.bias is not None else None
    if rows is not None and bias is not None:
        bias = bias[rows]
    if bias_delta is not None:
        bias_delta = bias_delta if rows is None else bias_delta[rows]
        bias = (bias_delta if bias is None else bias.double() + bias_delta).to(weight.dtype)
    layer.weight = nn.Parameter(weight.contiguous(), requires_grad=layer.weight.requires_grad)
    if bias is not None:
        requires_grad = layer.bias.requires_grad if layer.bias is not None else layer.weight.requires_grad
        layer.bias = nn.Parameter(bias.contiguous(), requires_grad=requires_grad)
    if isinstance(layer, nn.Linear):
        layer.out_features, layer.in_features = weight.shape
    else:
        layer.out_channels, layer.in_channels = weight.shape[:2]


def _slice_norm(norm: nn.Module, keep: torch.Tensor) -> None:
    for name in ("weight", "bias"):
        tensor = getattr(norm, name)
        if tensor is not None:
            setattr(norm, name, nn.Parameter(tensor.detach()[keep].clone(), requires_grad=tensor.requires_grad))
    norm.running_mean = norm.running_mean[keep].clone()
    norm.running_var = norm.running_var[keep].clone()
    norm.num_features = int(keep.sum())


def _add_border(traced: fx.GraphModule, node: fx.Node, kernel: torch.Tensor) -> None:
    """conv(x) + conv(ones, kernel): the removed constant channels, border included, exactly."""
    conv = traced.get_submodule(node.target)
    name = f"{node.target.replace('.', '_')}_removed_channels_kernel"
    while hasattr(traced, name):
        name += "_"
    traced.register_buffer(name, kernel.to(conv.weight.dtype))
    spatial = kernel.ndim - 2
    graph = traced.graph
    with graph.inserting_before(node.next):
        # Ones shaped like one channel of one sample of the input, batched or not: the channel
        # axis counted from the end, then dimension 0 (size 1 already without a batch). The
        # border map broadcasts over the batch.
        probe = graph.call_method("narrow", (node.args[0], -(spatial + 1), 0, 1))
        probe = graph.call_method("narrow", (probe, 0, 0, 1))
        ones = graph.call_function(torch.ones_like, (probe,))
        weights = graph.get_attr(name)
        border = graph.call_function(
            _CONV_FUNCTIONS[spatial], (ones, weights, None, conv.stride, conv.padding, conv.dilation, 1)
        )
        total = graph.call_function(operator.add, (node, border))
    node.replace_all_uses_with(total, delete_user_cb=lambda user: user is not total)
