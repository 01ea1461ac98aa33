"""Which parameters of a torch.export program are layer weights, and where their output
channels lie: a .pt2 keeps no layer modules, so both are read from the operators of its graph.

>>> import torch
>>> program = torch.export.export(torch.nn.Sequential(torch.nn.ConvTranspose1d(2, 4, 3)), (torch.ones(1, 2, 5),))
>>> export_layers(program)
({'0.weight': 'ConvTranspose1d'}, {'0.weight': OutputAxis(axis=1, groups=1)})
"""
from __future__ import annotations

import torch

from compression.output_axes import OutputAxis

# Operators that multiply by a weight matrix: the position of the weight argument, and whether
# they read it as (in, out) (``x @ W``, as GPT-2's Conv1D does) rather than (out, in) as linear.
_MATRIX_WEIGHTS = {"linear": (1, False), "mm": (1, True), "addmm": (2, True), "matmul": (1, True)}
_CONVOLUTIONS = {"conv1d", "conv2d", "conv3d", "convolution", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"}
# Recurrent layers take their weights as a list, after (input, hx) or (data, batch_sizes, hx).
_RECURRENT = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN", "rnn_relu": "RNN"}
_CELLS = {"lstm_cell": "LSTMCell", "gru_cell": "GRUCell", "rnn_tanh_cell": "RNNCell", "rnn_relu_cell": "RNNCell"}
_VIEW_OPERATORS = {"t", "permute", "transpose", "view", "reshape", "_reshape_alias", "alias"}


def export_layers(program: torch.export.ExportedProgram) -> tuple[dict[str, str], dict[str, OutputAxis]]:
    """The layer type and output axis of each compressible weight of an exported program.

    A parameter counts when it feeds (possibly through a transpose or view) a weight argument
    of aten.linear ("Linear", axis 0) or aten.mm/addmm/matmul ("Linear" read as (in, out):
    axis 1), a transpose on the way swapping the two; aten.conv*/convolution ("Conv<n>d");
    aten.conv_transpose* or a transposed convolution ("ConvTranspose<n>d": axis 1, in its
    groups); aten.lstm/gru/rnn_* ("LSTM", "GRU", "RNN": each matrix of the weight list) and
    their cells ("LSTMCell", "GRUCell", "RNNCell"). A weight read in two layouts is left out.
    """
    parameters = program.graph_signature.inputs_to_parameters
    uses: dict[str, set[tuple[str, OutputAxis]]] = {}
    for node in program.graph.nodes:
        if node.op != "call_function":
            continue
        for argument, kind, axis in _weight_arguments(node):
            source, transposed = _through_views(argument)
            if source is None or source.name not in parameters:
                continue
            if transposed:
                if kind != "Linear":
                    continue  # a convolution or recurrent weight kept in another layout
                axis = OutputAxis(1 - axis.axis)
            uses.setdefault(parameters[source.name], set()).add((kind, axis))
    found = {name: next(iter(layouts)) for name, layouts in uses.items() if len(layouts) == 1}
    return {name: kind for name, (kind, _) in found.items()}, {name: axis for name, (_, axis) in found.items()}


def _weight_arguments(node: torch.fx.Node) -> list[tuple[object, str, OutputAxis]]:
    """The weight arguments of one graph operator, each with its layer type and output axis."""
    operator, args = _operator_name(node), node.args
    if operator in _MATRIX_WEIGHTS:
        position, in_by_out = _MATRIX_WEIGHTS[operator]
        weight = args[position] if len(args) > position else None
        if _rank(weight) != 2:
            return []  # a batched matmul multiplies activations, not a layer's weight
        return [(weight, "Linear", OutputAxis(int(in_by_out)))]
    if operator in _CONVOLUTIONS:
        dims = _rank(args[1]) - 2 if len(args) > 1 else -1
        if operator == "convolution":  # (input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
            transposed, groups = len(args) > 6 and bool(args[6]), args[8] if len(args) > 8 else 1
        else:  # conv_transpose: (input, weight, bias, stride, padding, output_padding, groups, dilation)
            transposed, groups = operator.startswith("conv_transpose"), args[6] if len(args) > 6 else 1
        if not 1 <= dims <= 3:
            return []
        if transposed:
            return [(args[1], f"ConvTranspose{dims}d", OutputAxis(1, groups if isinstance(groups, int) else 1))]
        return [(args[1], f"Conv{dims}d", OutputAxis())]
    if operator in _RECURRENT:
        position = 2 if node.target._overloadname == "input" else 3
        weights = args[position] if len(args) > position and isinstance(args[position], (list, tuple)) else ()
        return [(weight, _RECURRENT[operator], OutputAxis()) for weight in weights if _rank(weight) == 2]
    if operator in _CELLS:  # (input, hx, w_ih, w_hh, b_ih, b_hh)
        return [(weight, _CELLS[operator], OutputAxis()) for weight in args[2:4]]
    return []


def _rank(argument: object) -> int:
    value = argument.meta.get("val") if isinstance(argument, torch.fx.Node) else None
    return value.ndim if isinstance(value, torch.Tensor) else -1


def _operator_name(node: torch.fx.Node) -> str | None:
    """``"linear"`` for a node calling aten.linear.default, and so on."""
    return getattr(getattr(node.target, "overloadpacket", None), "__name__", None)


def _through_views(argument: object) -> tuple[torch.fx.Node | None, bool]:
    """The placeholder an argument comes from, following single-input view operators, and
    whether those swap the two axes of a matrix (an odd number of transposes)."""
    node, transposed = argument, False
    while isinstance(node, torch.fx.Node) and node.op == "call_function":
        operator = _operator_name(node)
        if operator not in _VIEW_OPERATORS:
            return None, False
        transposed ^= _swaps_axes(node, operator)
        node = node.args[0]
    return (node, transposed) if isinstance(node, torch.fx.Node) and node.op == "placeholder" else (None, False)


def _swaps_axes(node: torch.fx.Node, operator: str) -> bool:
    """Whether a view operator swaps the two axes of a matrix."""
    if _rank(node.args[0]) != 2:
        return False
    if operator == "t":
        return True
    if operator == "transpose":
        return node.args[1] % 2 != node.args[2] % 2
    if operator == "permute":
        return [dim % 2 for dim in node.args[1]] == [1, 0]
    return False
