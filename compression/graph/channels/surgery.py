"""Removing the channels: slicing layers and BatchNorms, and adding the removed constants back."""
from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from compression.graph.channels.following import Reach

_CONV_FUNCTIONS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def shrink(traced: fx.GraphModule, reaches: dict[str, Reach], keeps: dict[str, torch.Tensor]) -> None:
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
