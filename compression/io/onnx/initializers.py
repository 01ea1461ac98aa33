"""An ONNX model's initializers (weights, biases, constants) read out and replaced by name.

What compressing an exported model's weights in place needs: read them as tensors, write
other values of the same shapes back.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from onnx import numpy_helper

from compression.errors import CompressionError
from compression.io.onnx.runtime import parse_onnx, serialize_onnx


def load_onnx_initializers(onnx_bytes: bytes) -> dict[str, torch.Tensor]:
    """Every initializer (weights, biases, constants) of the main graph, by name, as tensors.

    Names are the exporter's: a torch parameter keeps its name (``fc1.weight``) unless the
    exporter folded it into another (BatchNorm into the conv before it: ``conv1.weight`` then
    holds the fused weight).
    """
    proto = parse_onnx(onnx_bytes)
    return {init.name: torch.from_numpy(numpy_helper.to_array(init).copy()) for init in proto.graph.initializer}


def replace_initializers(onnx_bytes: bytes, tensors: Mapping[str, torch.Tensor]) -> bytes:
    """The ONNX model with the named initializers holding ``tensors`` (same shapes; cast to their dtype)."""
    proto = parse_onnx(onnx_bytes)
    existing = {init.name: index for index, init in enumerate(proto.graph.initializer)}
    unknown = sorted(set(tensors) - existing.keys())
    if unknown:
        known = ", ".join(list(existing)[:5])
        raise CompressionError(
            f"tensors names initializer(s) the ONNX model lacks: {', '.join(unknown[:5])}; its "
            f"initializers include {known} (see load_onnx_initializers)."
        )
    for name, tensor in tensors.items():
        original = proto.graph.initializer[existing[name]]
        values = numpy_helper.to_array(original)
        replacement = torch.as_tensor(tensor).detach().cpu().numpy()
        if tuple(replacement.shape) != values.shape:
            raise CompressionError(
                f"initializer {name!r} has shape {values.shape}; the replacement has {tuple(replacement.shape)}."
            )
        original.CopyFrom(numpy_helper.from_array(replacement.astype(values.dtype), name))
    return serialize_onnx(proto, "ONNX model with replaced initializers")
