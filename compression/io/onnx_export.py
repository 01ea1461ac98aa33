"""ONNX for deployment: export a (compressed) module, run it with onnxruntime, quantize it to int8.

The compressed weights of ``compress`` are float32 values on a small grid; ONNX Runtime is
where they are deployed, and where int8 kernels actually run. An ONNX file is protobuf: it is
parsed, never executed, and tensors stored outside the file (external data) are refused, so
a file cannot make us read other files on this machine.

>>> import torch
>>> from compression.model import LoadedModel
>>> linear = torch.nn.Linear(4, 2).eval()
>>> model = LoadedModel("linear", "module", linear, {"weight": "Linear"}, (torch.ones(2, 4),), None)
>>> onnx_bytes = export_onnx(model)
>>> sorted(load_onnx_initializers(onnx_bytes))
['bias', 'weight']
>>> x = torch.randn(3, 4)
>>> torch.allclose(onnx_outputs(onnx_bytes, (x,), batch_size=8), linear(x), atol=1e-6)
True
"""
from __future__ import annotations

import contextlib
import logging
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from google.protobuf.message import DecodeError
from onnx import numpy_helper
from onnxruntime.capi import onnxruntime_pybind11_state
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.onnx_model import ONNXModel
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn

from compression.errors import CompressionError, DataError, ModelLoadError
from compression.evaluation import Evaluation, evaluate, model_outputs, output_tensor
from compression.model import LoadedModel
from compression.io.safety import DEFAULT_MAX_FILE_BYTES

STATIC_FORMATS = ("qdq", "qoperator")
CALIBRATION_BATCH_SIZE = 64
STATIC_OP_TYPES = ("Conv", "MatMul", "Gemm")  # the operators that carry weights
NOTE_KEY = "compression_lab.note"  # metadata_props entry saying why a batch is static
_EXPORTED_OUTPUT = "scored"  # attribute of the wrapper that makes the scored tensor the output
# Every exception onnxruntime's C++ layer raises (they share no base class but Exception).
_RUNTIME_ERRORS = tuple(
    value for value in vars(onnxruntime_pybind11_state).values()
    if isinstance(value, type) and issubclass(value, Exception)
)
# Noise the exporter logs on every call (missing torchvision ops, failed constant folds).
_QUIET_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")


# --- export --------------------------------------------------------------------------------


def export_onnx(model: LoadedModel, module: nn.Module | None = None, *, dynamic_batch: bool = True) -> bytes:
    """The ONNX model of ``module`` (default the base module), traced on the model's example inputs.

    Uses the dynamo exporter (``torch.export`` underneath). With ``dynamic_batch`` the first
    dimension of every input is left free; where the exporter refuses (a model that fixes its
    batch), the export falls back to the example's batch, warns, and records why under the
    ``compression_lab.note`` metadata entry. The output is the tensor ``evaluate`` scores.
    """
    module = model.module if module is None else module
    from compression.io.onnx_import import OnnxGraphModule, onnx_with_weights  # it builds on this module

    if isinstance(module, OnnxGraphModule):  # an imported graph: written back with its weights
        return onnx_with_weights(module)
    if isinstance(module, torch.jit.ScriptModule):
        raise ModelLoadError(
            f"{model.name!r} is a TorchScript module, which the dynamo ONNX exporter cannot trace; "
            "export the model with torch.export (a .pt2 program) or load its state_dict instead."
        )
    inputs = _example_inputs(model)
    exportable = _with_scored_output(module, inputs)
    note = None
    program = None
    if dynamic_batch:
        dimensions = _batch_dimensions(inputs)
        if exportable is not module:  # its forward(*inputs) takes the inputs as one tuple argument
            dimensions = (dimensions,)
        try:
            program = _export(exportable, _at_least_two_rows(inputs), dimensions)
        except torch.onnx.OnnxExporterError as error:
            note = f"the exporter refused a dynamic batch dimension ({_cause(error)})"
        else:
            if not _has_dynamic_batch(program.model):
                note = "the exporter fixed the batch dimension (the model's code depends on it)"
                program = None  # re-export on the example's own batch, not the doubled one
        if note is not None:
            note = f"batch dimension is static: {note}; run it on batches of exactly {inputs[0].shape[0]} rows"
            warnings.warn(f"{model.name}: {note}", stacklevel=2)
    if program is None:
        program = _exported_or_error(model.name, exportable, inputs, None)
    if exportable is not module:
        _strip_prefix(program.model, f"{_EXPORTED_OUTPUT}.")
    proto = program.model_proto
    if note is not None:
        entry = proto.metadata_props.add()
        entry.key, entry.value = NOTE_KEY, note
    return _serialized(proto, model.name)


def _example_inputs(model: LoadedModel) -> tuple[torch.Tensor, ...]:
    if model.example_inputs:
        return model.example_inputs
    if model.evaluation is not None:
        return tuple(tensor[:2] for tensor in model.evaluation.inputs)
    raise DataError(
        f"{model.name!r} has no example inputs to trace the export with; load it with a data file "
        "(--data x.npz) so that its input shape is known."
    )


def _with_scored_output(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> nn.Module:
    """``module`` itself when it returns a tensor, else a wrapper returning what ``evaluate`` scores."""
    with torch.inference_mode():
        output = module(*inputs)
    if isinstance(output, torch.Tensor):
        return module
    wrapper = _ScoredOutput(module)
    wrapper.training = False  # not .eval(): that would recurse into the shared, read-only module
    return wrapper


class _ScoredOutput(nn.Module):
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.scored = module  # the attribute name is _EXPORTED_OUTPUT, stripped from initializer names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return output_tensor(self.scored(*inputs))


def _at_least_two_rows(inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    # torch.export treats a size-1 dimension as the constant 1, so it cannot become dynamic.
    if inputs[0].ndim > 0 and inputs[0].shape[0] == 1:
        return tuple(tensor.repeat(2, *([1] * (tensor.ndim - 1))) for tensor in inputs)
    return inputs


def _batch_dimensions(inputs: tuple[torch.Tensor, ...]) -> tuple[dict[int, object] | None, ...]:
    batch = torch.export.Dim("batch")
    return tuple({0: batch} if tensor.ndim > 0 else None for tensor in inputs)


def _export(module: nn.Module, inputs: tuple[torch.Tensor, ...], dynamic_shapes) -> torch.onnx.ONNXProgram:
    with _quiet_tools():
        return torch.onnx.export(module, inputs, dynamo=True, dynamic_shapes=dynamic_shapes, verbose=False)


def _exported_or_error(name: str, module: nn.Module, inputs, dynamic_shapes) -> torch.onnx.ONNXProgram:
    try:
        return _export(module, inputs, dynamic_shapes)
    except torch.onnx.OnnxExporterError as error:
        raise ModelLoadError(
            f"{name!r} could not be exported to ONNX ({_cause(error)}). The model must be "
            "traceable by torch.export.export(module, example_inputs, strict=False); rewrite the "
            "failing code or save it as a .pt2 program first."
        ) from None


@contextlib.contextmanager
def _quiet_tools() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r".*axis name: .* will not be used", category=UserWarning)
            # A LoadedModel's module is in eval mode, or (torch.export programs) fixed at export.
            warnings.filterwarnings("ignore", message="Exporting a model while it is in training mode")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _strip_prefix(ir_model, prefix: str) -> None:
    """Give initializers the module's own parameter names, without the wrapper's attribute."""
    for value in list(ir_model.graph.initializers.values()):
        if value.name.startswith(prefix) and value.name[len(prefix):] not in ir_model.graph.initializers:
            value.name = value.name[len(prefix):]


def _has_dynamic_batch(ir_model) -> bool:
    """Whether every input's first dimension is symbolic (the exporter may fix it silently)."""
    shapes = [value.shape for value in ir_model.graph.inputs]
    return all(shape is None or len(shape) == 0 or not isinstance(shape[0], int) for shape in shapes)


def _cause(error: BaseException) -> str:
    """The first line of what torch.export said: the exporter's own message is a generic banner."""
    while error.__cause__ is not None:
        error = error.__cause__
    return re.sub(r"\x1b\[[0-9;]*m", "", _first_line(error))


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _serialized(proto: onnx.ModelProto, where: str) -> bytes:
    try:
        onnx_bytes = proto.SerializeToString()
    except ValueError as error:  # protobuf refuses messages of 2 GiB and more
        raise CompressionError(
            f"{where}: the ONNX model is too large for one protobuf file ({error}); ONNX files "
            "over 2 GiB need external data, which this tool does not write."
        ) from None
    _checked(onnx_bytes, where)
    return onnx_bytes


# --- reading and checking ------------------------------------------------------------------


def _checked(
    onnx_bytes: bytes, where: str = "ONNX model", max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> onnx.ModelProto:
    """Parse and validate ONNX bytes; refuse oversized files and external-data tensors."""
    if not isinstance(onnx_bytes, (bytes, bytearray, memoryview)):
        raise ModelLoadError(f"{where} must be the bytes of an ONNX file; got {type(onnx_bytes).__name__}.")
    if len(onnx_bytes) > max_file_bytes:
        raise ModelLoadError(
            f"{where} is {len(onnx_bytes):,} bytes, over the limit of {max_file_bytes:,} "
            "(the model-file limit of compression.io.safety); give a smaller model."
        )
    try:
        proto = onnx.load_model_from_string(bytes(onnx_bytes))
    except (DecodeError, ValueError, RuntimeError) as error:
        raise ModelLoadError(f"{where} is not an ONNX file: protobuf could not parse it ({error}).") from None
    if proto.ByteSize() == 0 or not proto.graph.node:
        raise ModelLoadError(f"{where} is not an ONNX model: it has no graph. Give the bytes of an .onnx file.")
    external = _external_tensors(proto.graph)
    if external:
        raise ModelLoadError(
            f"{where} keeps tensors in external files ({', '.join(external[:3])}); only "
            "self-contained ONNX files are read. Save it with onnx.save(model, path, "
            "save_as_external_data=False)."
        )
    try:
        onnx.checker.check_model(proto)
    except (onnx.checker.ValidationError, ValueError) as error:
        raise ModelLoadError(f"{where} failed onnx.checker ({_first_line(error)}).") from None
    return proto


def _external_tensors(graph: onnx.GraphProto) -> list[str]:
    """Names of tensors stored outside the file, in the graph and its subgraphs."""
    tensors = list(graph.initializer)
    tensors += [part for sparse in graph.sparse_initializer for part in (sparse.values, sparse.indices)]
    subgraphs = []
    for node in graph.node:
        for attribute in node.attribute:
            tensors += ([attribute.t] if attribute.HasField("t") else []) + list(attribute.tensors)
            subgraphs += ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs)
    names = [t.name for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL]
    for subgraph in subgraphs:
        names += _external_tensors(subgraph)
    return names


# --- running -------------------------------------------------------------------------------


class OnnxRuntimeModule(nn.Module):
    """An onnxruntime session called like a module, so ``evaluate`` scores it as it scores torch.

    ``threads`` sets ``intra_op_num_threads`` (None: onnxruntime's default, one per core).
    A model exported with a static batch is fed exactly that many rows per run.
    """

    def __init__(self, onnx_bytes: bytes, *, threads: int | None = None) -> None:
        super().__init__()
        _checked(onnx_bytes)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise CompressionError(f"threads must be a positive integer or None; got {threads!r}.")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: a run should not print
        try:
            self.session = onnxruntime.InferenceSession(
                bytes(onnx_bytes), options, providers=["CPUExecutionProvider"]
            )
        except _RUNTIME_ERRORS as error:
            raise ModelLoadError(f"onnxruntime cannot load the ONNX model ({_first_line(error)}).") from None
        self.input_names = [value.name for value in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name
        batch = self.session.get_inputs()[0].shape[:1]
        self.static_batch = batch[0] if batch and isinstance(batch[0], int) else None

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) != len(self.input_names):
            raise DataError(
                f"the ONNX model takes {len(self.input_names)} input(s) ({', '.join(self.input_names)}); "
                f"got {len(inputs)}."
            )
        rows = int(inputs[0].shape[0]) if inputs[0].ndim else None
        if self.static_batch is not None and rows != self.static_batch:
            return model_outputs(self.run, inputs, self.static_batch)
        return self.run(*inputs)

    def run(self, *inputs: torch.Tensor) -> torch.Tensor:
        """One session run on exactly these inputs, one per session input, in order."""
        feeds = {
            name: np.ascontiguousarray(tensor.detach().cpu().numpy()) for name, tensor in zip(self.input_names, inputs)
        }
        try:
            (output,) = self.session.run([self.output_name], feeds)
        except _RUNTIME_ERRORS as error:
            shapes = ", ".join(f"{n} {tuple(f.shape)} {f.dtype}" for n, f in feeds.items())
            raise DataError(f"onnxruntime refused the inputs ({shapes}): {_first_line(error)}") from None
        return torch.from_numpy(output)


def onnx_outputs(
    onnx_bytes: bytes, inputs: tuple[torch.Tensor, ...], batch_size: int, *, threads: int | None = None
) -> torch.Tensor:
    """The ONNX model's first output for every row of ``inputs``, ``batch_size`` rows per run."""
    return model_outputs(OnnxRuntimeModule(onnx_bytes, threads=threads), tuple(inputs), batch_size)


def evaluate_onnx(
    model: LoadedModel, onnx_bytes: bytes, *, samples: int | None = None, threads: int | None = None
) -> Evaluation:
    """Score an ONNX model as ``compression.evaluate`` scores a module: same data, metric, baseline.

    The baseline stays the base torch model's outputs, so a float ONNX export of the base model
    scores the baseline value (up to rounding) and an int8 one shows what int8 costs.
    """
    return evaluate(model, OnnxRuntimeModule(onnx_bytes, threads=threads), samples=samples)


# --- int8 with onnxruntime.quantization ----------------------------------------------------


def quantize_onnx_dynamic(onnx_bytes: bytes) -> bytes:
    """Int8 weights, activations quantized at run time from their observed range: no calibration.

    onnxruntime's dynamic quantizer covers MatMul and Conv but not Gemm, which the exporter
    emits for every nn.Linear on 2-D inputs, so Gemm nodes become MatMul + Add first.
    """
    proto = _checked(onnx_bytes, "the model to quantize")
    with tempfile.TemporaryDirectory(prefix="onnx-int8-") as folder:
        prepared = ONNXModel(onnx.load(_preprocessed(proto, Path(folder))))
        prepared.replace_gemm_with_matmul()
        source, target = Path(folder) / "matmul.onnx", Path(folder) / "int8.onnx"
        onnx.save(prepared.model, source)
        with _quiet_tools():
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        return _serialized(onnx.load(target), "dynamically quantized model")


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
    proto = _checked(onnx_bytes, "the model to quantize")
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
        with _quiet_tools():
            quantize_static(
                source, target, reader, quant_format=quant_format, per_channel=per_channel,
                activation_type=activations, weight_type=QuantType.QInt8,
                op_types_to_quantize=list(STATIC_OP_TYPES),
            )
        return _serialized(onnx.load(target), f"statically quantized ({format}) model")


def calibration_inputs_for(model: LoadedModel) -> tuple[torch.Tensor, ...]:
    """Rows to calibrate int8 activations on: the model's training rows, never held-out rows.

    Models without training rows use their evaluation inputs; their int8 scores are then
    measured on the rows they were calibrated on.
    """
    if model.training is not None:
        return (model.training.inputs,)
    if model.evaluation is None:
        return _example_inputs(model)
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
            with _quiet_tools():
                quant_pre_process(str(source), str(target), skip_symbolic_shape=skip_symbolic_shape)
            return target
        except Exception as error:  # noqa: BLE001 - an optional step; its failures are of every kind
            failure = error
    warnings.warn(f"quant_pre_process failed ({_first_line(failure)}); quantizing the model as exported.", stacklevel=3)
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


# --- initializers: compress an ONNX model's weights ----------------------------------------


def load_onnx_initializers(onnx_bytes: bytes) -> dict[str, torch.Tensor]:
    """Every initializer (weights, biases, constants) of the main graph, by name, as tensors.

    Names are the exporter's: a torch parameter keeps its name (``fc1.weight``) unless the
    exporter folded it into another (BatchNorm into the conv before it: ``conv1.weight`` then
    holds the fused weight).
    """
    proto = _checked(onnx_bytes)
    return {init.name: torch.from_numpy(numpy_helper.to_array(init).copy()) for init in proto.graph.initializer}


def replace_initializers(onnx_bytes: bytes, tensors: Mapping[str, torch.Tensor]) -> bytes:
    """The ONNX model with the named initializers holding ``tensors`` (same shapes; cast to their dtype)."""
    proto = _checked(onnx_bytes)
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
    return _serialized(proto, "ONNX model with replaced initializers")
