"""ONNX bytes read, checked and run: the ground every other ONNX module stands on.

An ONNX file is protobuf: it is parsed, never executed, and tensors stored outside the file
(external data) are refused, so a file cannot make us read other files on this machine.
``OnnxRuntimeModule`` runs a checked model with onnxruntime, called like a torch module so
that ``evaluate`` scores it as it scores torch.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

import numpy as np
import onnx
import onnxruntime
import torch
from google.protobuf.message import DecodeError
from onnxruntime.capi import onnxruntime_pybind11_state
from torch import nn

from compression.errors import CompressionError, DataError, ModelLoadError
from compression.evaluation import every_output, model_outputs
from compression.io.safety import DEFAULT_MAX_FILE_BYTES
from compression.model_inputs import batch_axes, to_graph_layout

# Every exception onnxruntime's C++ layer raises (they share no base class but Exception).
RUNTIME_ERRORS = tuple(
    value for value in vars(onnxruntime_pybind11_state).values()
    if isinstance(value, type) and issubclass(value, Exception)
)
# Noise the exporter logs on every call (missing torchvision ops, failed constant folds).
_QUIET_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")


@contextlib.contextmanager
def quiet_tools() -> Iterator[None]:
    """Silence the exporter's and onnxruntime's routine warnings and logs for a ``with`` block."""
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


def first_line(error: BaseException) -> str:
    """The first line of an error's message (the tools' messages run to pages), or its type."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# --- reading and checking ------------------------------------------------------------------


def parse_onnx(
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
    external = external_tensors(proto.graph)
    if external:
        raise ModelLoadError(
            f"{where} keeps tensors in external files ({', '.join(external[:3])}); only "
            "self-contained ONNX files are read. Save it with onnx.save(model, path, "
            "save_as_external_data=False)."
        )
    try:
        onnx.checker.check_model(proto)
    except (onnx.checker.ValidationError, ValueError) as error:
        raise ModelLoadError(f"{where} failed onnx.checker ({first_line(error)}).") from None
    return proto


def external_tensors(graph: onnx.GraphProto) -> list[str]:
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
        names += external_tensors(subgraph)
    return names


def declared_dims(value: onnx.ValueInfoProto) -> tuple[int | str | None, ...]:
    """The sizes a graph input declares: an int where fixed, its ``dim_param`` name where named,
    else None."""
    dims = value.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None) for d in dims)


def serialize_onnx(proto: onnx.ModelProto, where: str) -> bytes:
    """The bytes of a model this tool wrote, checked as any ONNX file read back is checked."""
    try:
        onnx_bytes = proto.SerializeToString()
    except ValueError as error:  # protobuf refuses messages of 2 GiB and more
        raise CompressionError(
            f"{where}: the ONNX model is too large for one protobuf file ({error}); ONNX files "
            "over 2 GiB need external data, which this tool does not write."
        ) from None
    parse_onnx(onnx_bytes, where)
    return onnx_bytes


# --- running -------------------------------------------------------------------------------


class OnnxRuntimeModule(nn.Module):
    """An onnxruntime session called like a module, so ``evaluate`` scores it as it scores torch.

    ``threads`` sets ``intra_op_num_threads`` (None: onnxruntime's default, one per core).
    A model exported with a static batch is fed exactly that many rows per run. The first
    ``data_inputs`` session inputs (default: all) are given rows first, whatever axis the graph
    keeps its batch on (``compression.model_inputs.to_graph_layout``). It returns the graph's
    output, or the tuple of its outputs when it has several (all of them are scored).
    """

    def __init__(self, onnx_bytes: bytes, *, threads: int | None = None, data_inputs: int | None = None) -> None:
        super().__init__()
        proto = parse_onnx(onnx_bytes)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise CompressionError(f"threads must be a positive integer or None; got {threads!r}.")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        options.log_severity_level = 4  # a failed run raises; its log line would only repeat it
        try:
            self.session = onnxruntime.InferenceSession(
                bytes(onnx_bytes), options, providers=["CPUExecutionProvider"]
            )
        except RUNTIME_ERRORS as error:
            raise ModelLoadError(f"onnxruntime cannot load the ONNX model ({first_line(error)}).") from None
        self.input_names = [value.name for value in self.session.get_inputs()]
        # The first ``data_inputs`` inputs are the caller's rows (the rest: weights fed each run),
        # rows first, each moved to the axis where the graph keeps its batch.
        declared = {value.name: declared_dims(value) for value in proto.graph.input}
        data = self.input_names[: len(self.input_names) if data_inputs is None else data_inputs]
        self.batch_axes = batch_axes([declared.get(name, ()) for name in data])
        self.output_names = [value.name for value in self.session.get_outputs()]
        self.output_name = self.output_names[0]
        batch = self.session.get_inputs()[0].shape[:1]
        self.static_batch = batch[0] if batch and isinstance(batch[0], int) else None

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if len(inputs) != len(self.input_names):
            raise DataError(
                f"the ONNX model takes {len(self.input_names)} input(s) ({', '.join(self.input_names)}); "
                f"got {len(inputs)}."
            )
        rows = int(inputs[0].shape[0]) if inputs[0].ndim else None
        if self.static_batch is not None and rows != self.static_batch:
            return every_output(self.run, inputs, self.static_batch)
        return self.run(*inputs)

    def run(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """One session run on exactly these inputs, one per session input, in order."""
        axes = self.batch_axes + (0,) * (len(inputs) - len(self.batch_axes))
        feeds = {
            name: np.ascontiguousarray(to_graph_layout(tensor.detach().cpu(), axis).numpy())
            for name, tensor, axis in zip(self.input_names, inputs, axes)
        }
        try:
            outputs = self.session.run(self.output_names, feeds)
        except RUNTIME_ERRORS as error:
            data = list(feeds.items())[: len(self.batch_axes)]  # never the weights: a graph has thousands
            shapes = ", ".join(f"{n} {tuple(f.shape)} {f.dtype}" for n, f in data)
            raise DataError(f"onnxruntime refused the inputs ({shapes}): {first_line(error)}") from None
        tensors = tuple(torch.from_numpy(output) for output in outputs)
        return tensors[0] if len(tensors) == 1 else tensors


def onnx_outputs(
    onnx_bytes: bytes, inputs: tuple[torch.Tensor, ...], batch_size: int, *, threads: int | None = None
) -> torch.Tensor:
    """The ONNX model's first output for every row of ``inputs``, ``batch_size`` rows per run."""
    return model_outputs(OnnxRuntimeModule(onnx_bytes, threads=threads), tuple(inputs), batch_size)
