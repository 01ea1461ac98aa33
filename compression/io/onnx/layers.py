"""Which initializers of an ONNX graph are layer weights: their layer type, whether the module
holds them transposed, and where their output channels lie.

MatMul and Gemm read their weight as (in, out): it is held transposed, (out, in) as in
``torch.nn.Linear``. ConvTranspose weights are (in, out/group, k…): output axis 1 in
``group`` blocks. LSTM/GRU/RNN ``W`` and ``R`` are (directions, gates·hidden, in): output
axis 1 in one block per direction, so each direction's gate units are rows of their own.

>>> from onnx import helper, TensorProto
>>> graph = helper.make_graph(
...     [helper.make_node("GRU", ["x", "W", "R"], ["y"], hidden_size=2)], "g",
...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 3])], [],
...     [helper.make_tensor("W", TensorProto.FLOAT, [1, 6, 3], [0.0] * 18),
...      helper.make_tensor("R", TensorProto.FLOAT, [1, 6, 2], [0.0] * 12)])
>>> weight_uses(graph)["W"]
WeightUse(layer_type='GRU', transposed=False, output_axis=OutputAxis(axis=1, groups=1))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import onnx

from compression.output_axes import OutputAxis

_RECURRENT = ("LSTM", "GRU", "RNN")


@dataclass(frozen=True)
class WeightUse:
    """How one initializer is read: by a layer of ``layer_type`` (None: not as a layer weight)."""

    layer_type: str | None
    transposed: bool
    output_axis: OutputAxis


NOT_A_LAYER = WeightUse(None, False, OutputAxis())


def weight_uses(graph: onnx.GraphProto) -> dict[str, WeightUse]:
    """How each layer weight of the graph is read.

    A weight read in two layouts (rare: tied weights read by Gemm and by MatMul) is kept as
    stored and not listed as a layer.
    """
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}
    found: dict[str, set[WeightUse]] = {}
    for node in graph.node:
        for weight, use in _node_weights(node, shapes):
            found.setdefault(weight, set()).add(use)
    return {name: next(iter(uses)) if len(uses) == 1 else NOT_A_LAYER for name, uses in found.items()}


def _node_weights(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> Iterator[tuple[str, WeightUse]]:
    attributes = {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in node.attribute}
    if node.op_type in _RECURRENT:
        for weight in node.input[1:3]:  # W, R
            shape = shapes.get(weight, ())
            if len(shape) == 3:
                yield weight, WeightUse(node.op_type, False, OutputAxis(1, max(shape[0], 1)))
        return
    if len(node.input) < 2 or node.input[1] not in shapes:
        return
    weight, shape = node.input[1], shapes[node.input[1]]
    if node.op_type == "Conv" and 3 <= len(shape) <= 5:
        yield weight, WeightUse(f"Conv{len(shape) - 2}d", False, OutputAxis())
    elif node.op_type == "ConvTranspose" and 3 <= len(shape) <= 5:
        group = attributes.get("group", 1)
        if group >= 1 and shape[0] % group == 0:
            yield weight, WeightUse(f"ConvTranspose{len(shape) - 2}d", False, OutputAxis(1, group))
    elif node.op_type == "Gemm" and len(shape) == 2:
        yield weight, WeightUse("Linear", not attributes.get("transB", 0), OutputAxis())
    elif node.op_type == "MatMul" and len(shape) == 2:
        yield weight, WeightUse("Linear", True, OutputAxis())
