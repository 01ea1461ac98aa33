"""Small ONNX graphs built at test time whose inputs a file leaves open or a guess cannot make."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def speech_graph() -> onnx.ModelProto:
    """A voice-activity-like graph: audio (batch, 64), a state (2, batch, 64), an int64 sample rate."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(size=(64, 64)).astype(np.float32), name) for name in ("w", "s")]
    nodes = [
        helper.make_node("MatMul", ["audio", "w"], ["a"]),
        helper.make_node("ReduceMean", ["state"], ["mean_state"], axes=[0], keepdims=0),
        helper.make_node("MatMul", ["mean_state", "s"], ["b"]),
        helper.make_node("Add", ["a", "b"], ["sum"]),
        helper.make_node("Cast", ["sr"], ["rate"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["sum", "rate"], ["y"]),
    ]
    inputs = [
        helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", 64]),
        helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", 64]),
        helper.make_tensor_value_info("sr", TensorProto.INT64, []),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 64])]
    graph = helper.make_graph(nodes, "speech", inputs, outputs, weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def fixed_area_graph() -> onnx.ModelProto:
    """x (n, 3, h, w) reshaped into rows of 429 values: it runs only where 143 divides h * w."""
    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(429, 2)).astype(np.float32), "fc")
    shape = numpy_helper.from_array(np.array([-1, 429], dtype=np.int64), "rows")
    nodes = [helper.make_node("Reshape", ["x", "rows"], ["flat"]), helper.make_node("MatMul", ["flat", "fc"], ["y"])]
    graph = helper.make_graph(
        nodes, "fixed_area", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])], [weight, shape],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def pooled_conv_graph() -> onnx.ModelProto:
    """x (n, 3, h, w) with h and w free: a 3x3 convolution, global average pooling, 2 scores."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "conv"),
               numpy_helper.from_array(rng.normal(size=(4, 2)).astype(np.float32), "fc")]
    nodes = [helper.make_node("Conv", ["x", "conv"], ["features"], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["features"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("MatMul", ["flat", "fc"], ["y"])]
    graph = helper.make_graph(
        nodes, "pooled_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])], weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
