"""How one op reads a producer's channels: passes them on, reads them as inputs, or cannot be followed."""
from __future__ import annotations

import math
import operator
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

from compression.graph.layers import BATCHNORM_TYPES, CONV_TYPES

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
_OUTPUT = "its channels reach the model's output, whose shape must not change"


@dataclass(frozen=True)
class Layout:
    """Where a tensor on the way holds the producer's channels.

    ``channels``: dimension 1, then ``spatial`` dimensions (a convolution's output);
    ``flat``: 2-D, channel c in columns c*group .. (c+1)*group - 1 (after a flatten);
    ``features``: the last dimension, of a tensor of unknown rank (a Linear's output).
    """

    kind: str
    spatial: int = 0
    group: int = 1


@dataclass(frozen=True)
class Through:
    """A per-channel op the channels pass through; ``norm``: a BatchNorm sliced with them."""

    layout: Layout
    step: Step
    norm: bool = False


@dataclass(frozen=True)
class Traced:
    """The traced copy and what every link check asks of it."""

    module: fx.GraphModule
    references: dict[str, int]  # calls and direct reads per module name (module_references)
    holders: Counter[int]  # how many modules hold each parameter (by id): tied weights count twice
    shapes: bool  # whether example inputs recorded each node's output shape


def link_to(graph: Traced, node: fx.Node, user: fx.Node, layout: Layout, channels: int) -> Through | int | str | None:
    """How ``user`` reads ``node``'s channels: through a per-channel op (``Through``), as a
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


def _module_link(graph: Traced, user: fx.Node, layout: Layout, channels: int) -> Through | int | str:
    module = graph.module.get_submodule(user.target)
    kind = type(module)
    if user.kwargs or len(user.args) != 1:
        return _unfollowed(graph, user)
    if kind in _ELEMENTWISE_MODULES:
        return Through(layout, lambda values: module(values.clone()))
    if kind in _DROPOUT_MODULES:
        return Through(layout, _identity)
    if kind in _POOL_MODULES:
        if getattr(module, "return_indices", False):
            return f"its channels reach {_described(graph, user)}, which also returns indices"
        fields = {key: getattr(module, key, None) for key in ("padding", "count_include_pad", "divisor_override")}
        return _pooled(graph, user, layout, _POOL_MODULES[kind], kind in _AVERAGE_POOLS, fields)
    if kind is nn.Flatten:
        return _flattened(graph, user, layout, module.start_dim, module.end_dim)
    if kind not in (*BATCHNORM_TYPES, *CONV_TYPES, nn.Linear):
        return _unfollowed(graph, user)
    problem = shared(graph, user.target)
    if problem:
        return f"its channels reach {user.target}, which {problem}"
    if kind in BATCHNORM_TYPES:
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


def _function_link(graph: Traced, user: fx.Node, layout: Layout) -> Through | str:
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
        return Through(layout, _identity)
    if target in _POOL_FUNCTIONS:
        if rest.get("return_indices", False):
            return f"its channels reach {user.name}, which also returns indices"
        return _pooled(graph, user, layout, _POOL_FUNCTIONS[target], target in _AVERAGE_POOLS, rest)
    return Through(layout, lambda values: target(values.clone(), **rest))


def _arguments_besides_input(graph: Traced, user: fx.Node) -> dict[str, Any] | None:
    """The call's other arguments by name, defaults filled in; None where torch cannot tell."""
    if len(user.args) == 1 and not user.kwargs and user.target in _ELEMENTWISE_FUNCTIONS:
        return {}  # torch.tanh(x): its overloads (tensor, int, float...) make normalising ambiguous
    try:
        arguments = user.normalized_arguments(graph.module, normalize_to_only_use_kwargs=True)
    except (RuntimeError, ValueError, TypeError):
        return None
    return None if arguments is None else {key: value for key, value in arguments.kwargs.items() if key != "input"}


def _method_link(graph: Traced, user: fx.Node, layout: Layout) -> Through | str:
    if user.target in _ELEMENTWISE_METHODS and len(user.args) == 1 and not user.kwargs:
        return Through(layout, lambda values: getattr(values, user.target)())
    if user.target == "flatten":
        return _flattened(graph, user, layout, *_flatten_dimensions(user))
    if user.target == "contiguous" and len(user.args) == 1 and not user.kwargs:
        return Through(layout, _identity)
    return _unfollowed(graph, user)


def _identity(values: torch.Tensor) -> torch.Tensor:
    return values


_BATCHNORM_SPATIAL = {nn.BatchNorm1d: 1, nn.BatchNorm2d: 2, nn.BatchNorm3d: 3}


def _normalised(norm: nn.Module, user: fx.Node, layout: Layout) -> Through | str:
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
    return Through(layout, lambda values: (values - mean) * scale + shift, norm=True)


def _pooled(
    graph: Traced, user: fx.Node, layout: Layout, dimensions: int, average: bool, fields: dict[str, Any]
) -> Through | str:
    if layout.kind != "channels" or layout.spatial != dimensions:
        return f"its channels reach {_described(graph, user)}, which pools across other dimensions"
    padding = fields.get("padding") or 0
    pads = (padding,) if isinstance(padding, int) else tuple(padding)
    counts_padding = any(pads) and fields.get("count_include_pad", True)
    if average and (counts_padding or fields.get("divisor_override") is not None):
        # Padded zeros in the mean, or another divisor, change a constant channel's value.
        return f"its channels reach {_described(graph, user)}, an average pool that counts padding or sets its divisor"
    return Through(layout, _identity)


def _flatten_dimensions(node: fx.Node) -> tuple[Any, Any]:
    """(start_dim, end_dim) of torch.flatten(x, ...) or x.flatten(...), with their defaults."""
    args = node.args[1:]
    start = args[0] if len(args) > 0 else node.kwargs.get("start_dim", 0)
    end = args[1] if len(args) > 1 else node.kwargs.get("end_dim", -1)
    return start, end


def _flattened(graph: Traced, user: fx.Node, layout: Layout, start: Any, end: Any) -> Through | str:
    """flatten(1): channel c becomes the columns c*H*W .. (c+1)*H*W - 1 (H*W from the shapes)."""
    if layout.kind == "flat" and start in (1, -1) and end == -1:
        return Through(layout, _identity)  # flattening a 2-D tensor from dimension 1 changes nothing
    if layout.kind != "channels":
        return f"its channels reach {_described(graph, user)}, a flatten that scatters them"
    shape = _shape(user.args[0])
    if not graph.shapes or shape is None:
        return f"its channels reach {_described(graph, user)}, a flatten: mapping them needs example_inputs"
    rank = len(shape)
    if start not in (1, 1 - rank) or end not in (-1, rank - 1):
        return f"its channels reach {_described(graph, user)}, a flatten of other dimensions than channels and space"
    return Through(Layout("flat", group=math.prod(shape[2:])), _identity)


def _reshaped(graph: Traced, node: fx.Node, user: fx.Node, layout: Layout) -> Through | str:
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


def shared(graph: Traced, target: str) -> str | None:
    """Why a layer cannot be sliced alone (a verb phrase), or None where it can."""
    if graph.references[target] != 1:
        return "is called more than once, or its tensors are read directly"
    if any(graph.holders[id(tensor)] > 1 for tensor in graph.module.get_submodule(target).parameters()):
        return "shares its parameters with another layer"
    return None


def _unfollowed(graph: Traced, user: fx.Node) -> str:
    return f"its channels reach {_described(graph, user)}, which channel removal cannot follow"


def _described(graph: Traced, node: fx.Node) -> str:
    if node.op == "call_module":
        return f"{node.target} ({type(graph.module.get_submodule(node.target)).__name__})"
    if node.op == "call_method":
        return f".{node.target}() ({node.name})"
    return node.name


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def rank(node: fx.Node) -> int | None:
    """How many dimensions ``node``'s output has, where example inputs recorded its shape."""
    shape = _shape(node)
    return None if shape is None else len(shape)
