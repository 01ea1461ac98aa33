"""Int8 ONNX models with onnxruntime.quantization: dynamic, or static calibrated on data rows.

Only the operators that carry weights are quantized, and calibration rows come from the
model's training data where it has some (``calibration_inputs_for``), never from the rows
it is scored on.
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.onnx_model import ONNXModel
from onnxruntime.quantization.shape_inference import quant_pre_process

from compression.errors import CompressionError, DataError
from compression.io.onnx.export import example_inputs
from compression.io.onnx.runtime import first_line, parse_onnx, quiet_tools, serialize_onnx
from compression.model import LoadedModel

STATIC_FORMATS = ("qdq", "qoperator")
CALIBRATION_BATCH_SIZE = 64
STATIC_OP_TYPES = ("Conv", "MatMul", "Gemm")  # the operators that carry weights


def quantize_onnx_dynamic(onnx_bytes: bytes) -> bytes:
    """Int8 weights, activations quantized at run time from their observed range: no calibration.

    onnxruntime's dynamic quantizer covers MatMul and Conv but not Gemm, which the exporter
    emits for every nn.Linear on 2-D inputs, so Gemm nodes become MatMul + Add first.
    """
    proto = parse_onnx(onnx_bytes, "the model to quantize")
    with tempfile.TemporaryDirectory(prefix="onnx-int8-") as folder:
        prepared = ONNXModel(onnx.load(_preprocessed(proto, Path(folder))))
        prepared.replace_gemm_with_matmul()
        source, target = Path(folder) / "matmul.onnx", Path(folder) / "int8.onnx"
        onnx.save(prepared.model, source)
        with quiet_tools():
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        return serialize_onnx(onnx.load(target), "dynamically quantized model")


def quantize_onnx_static(
    onnx_bytes: bytes,
    calibration_inputs: tuple[torch.Tensor, ...],
    *,
    format: str = "qdq",
    per_channel: bool = False,
) -> bytes:
    """Int8 weights and activations, the activation ranges measured on ``calibration_inputs``.

    ``format`` "qdq" keeps float operators between QuantizeLinear/DequantizeLinear pairs
    (int8 activations, which onnxruntime fuses into int8 kernels); "qoperator" writes
    QLinearConv / QLinearMatMul directly (uint8 activations). Only the operators that carry
    weights (``STATIC_OP_TYPES``) are quantized: int8 embeddings, additions and normalisations
    ruin a transformer (MiniLM's cosine fell from 0.91 to 0.36 with them). Calibration is
    MinMax over batches of ``CALIBRATION_BATCH_SIZE`` rows; give rows the model is not scored
    on (``calibration_inputs_for``).
    """
    if format not in STATIC_FORMATS:
        raise CompressionError(f"format must be one of {', '.join(map(repr, STATIC_FORMATS))}; got {format!r}.")
    if not isinstance(per_channel, bool):
        raise CompressionError(f"per_channel must be True or False; got {per_channel!r}.")
    proto = parse_onnx(onnx_bytes, "the model to quantize")
    initializers = {init.name for init in proto.graph.initializer}
    names = [value.name for value in proto.graph.input if value.name not in initializers]
    inputs = _calibration_tensors(calibration_inputs, len(names))
    quant_format, activations = {
        "qdq": (QuantFormat.QDQ, QuantType.QInt8),
        "qoperator": (QuantFormat.QOperator, QuantType.QUInt8),
    }[format]
    static_batch = _static_batch(proto)
    reader = _CalibrationReader(names, inputs, static_batch or CALIBRATION_BATCH_SIZE, static_batch is not None)
    with tempfile.TemporaryDirectory(prefix="onnx-int8-") as folder:
        source, target = _preprocessed(proto, Path(folder)), Path(folder) / "int8.onnx"
        with quiet_tools():
            quantize_static(
                source, target, reader, quant_format=quant_format, per_channel=per_channel,
                activation_type=activations, weight_type=QuantType.QInt8,
                op_types_to_quantize=list(STATIC_OP_TYPES),
            )
        return serialize_onnx(onnx.load(target), f"statically quantized ({format}) model")


def calibration_inputs_for(model: LoadedModel) -> tuple[torch.Tensor, ...]:
    """Rows to calibrate int8 activations on: the model's training rows, never held-out rows.

    Models without training rows use their evaluation inputs; their int8 scores are then
    measured on the rows they were calibrated on.
    """
    if model.training is not None:
        return (model.training.inputs,)
    if model.evaluation is None:
        return example_inputs(model)
    return model.evaluation.inputs


def _preprocessed(proto: onnx.ModelProto, folder: Path) -> Path:
    """onnxruntime's recommended step before quantizing: shape inference and graph cleanup.

    Symbolic shape inference fails on some graphs (MiniLM's dynamo export among them); the
    step is then retried without it, and skipped, with a warning, when that fails too.
    Paths, not ModelProtos, go to onnxruntime: given a proto it rewrites it in place.
    """
    source, target = folder / "fp32.onnx", folder / "prepared.onnx"
    onnx.save(proto, source)
    failure = None
    for skip_symbolic_shape in (False, True):
        try:
            with quiet_tools():
                quant_pre_process(str(source), str(target), skip_symbolic_shape=skip_symbolic_shape)
            return target
        except Exception as error:  # noqa: BLE001 - an optional step; its failures are of every kind
            failure = error
    warnings.warn(f"quant_pre_process failed ({first_line(failure)}); quantizing the model as exported.", stacklevel=3)
    return source


def _static_batch(proto: onnx.ModelProto) -> int | None:
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    return dims[0].dim_value if dims and dims[0].HasField("dim_value") else None


def _calibration_tensors(inputs: tuple[torch.Tensor, ...], expected: int) -> tuple[torch.Tensor, ...]:
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    if not isinstance(inputs, (tuple, list)) or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise DataError(f"calibration_inputs must be a tuple of tensors; got {type(inputs).__name__}.")
    if len(inputs) != expected:
        raise DataError(f"calibration_inputs holds {len(inputs)} tensor(s) but the model takes {expected} input(s).")
    rows = {int(t.shape[0]) if t.ndim else 0 for t in inputs}
    if len(rows) != 1 or 0 in rows:
        raise DataError(f"calibration_inputs must share a non-empty first (batch) dimension; got {sorted(rows)} rows.")
    return tuple(inputs)


class _CalibrationReader(CalibrationDataReader):
    """Feeds the calibration rows in fixed-size batches (the last one padded for a static batch)."""

    def __init__(self, names: list[str], inputs: tuple[torch.Tensor, ...], batch_size: int, pad: bool) -> None:
        count = int(inputs[0].shape[0])
        self._batches = []
        for start in range(0, count, batch_size):
            batch = tuple(tensor[start : start + batch_size] for tensor in inputs)
            rows = int(batch[0].shape[0])
            if pad and rows < batch_size:
                batch = tuple(tensor[torch.arange(batch_size) % rows] for tensor in batch)
            arrays = (np.ascontiguousarray(t.detach().cpu().numpy()) for t in batch)
            self._batches.append(dict(zip(names, arrays)))
        self._next = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._next, None)

    def rewind(self) -> None:
        self._next = iter(self._batches)
