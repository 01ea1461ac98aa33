"""ONNX models as modules: import an .onnx file, compress its weights, run it with onnxruntime.

The engine needs named weights and a forward call, not torch code. So an imported graph's
float initializers become this module's parameters (``fc1.weight`` keeps its name) and the
graph is rewritten to take them as inputs: onnxruntime always runs the weights the module
holds now, and a compressed copy runs its compressed weights through the same session.
Weights that MatMul/Gemm read stored ``(in, out)`` are held transposed, ``(out, in)`` as in
``torch.nn.Linear``, so structured and N:M pruning find output channels in rows as they do
for torch layers; ConvTranspose and LSTM/GRU/RNN weights are held as stored, with their
output axis (``layers``). ``onnx_with_weights`` writes the graph back with the module's weights.

An ONNX file is protobuf: parsed, never executed; files that keep tensors elsewhere
(external data) are refused by ``runtime.parse_onnx``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import onnx
import torch
from onnx import numpy_helper
from torch import nn

from compression.display_text import DisplayText
from compression.errors import DataError, ModelLoadError
from compression.evaluation import every_output
from compression.io.evaluation_data import DEFAULT_BATCH_SIZE, InputSpec, random_evaluation
from compression.io.input_specs import (
    EXAMPLE_ROWS,
    InputShapes,
    batch_size,
    example_input,
    generated_rows,
    guess_sizes,
    scoring_batch,
    with_batch,
    with_given_shapes,
)
from compression.io.onnx.runtime import (
    OnnxRuntimeModule,
    declared_dims,
    external_tensors,
    first_line,
    parse_onnx,
    serialize_onnx,
)
from compression.io.onnx.layers import NOT_A_LAYER, weight_uses
from compression.io.safety import DEFAULT_MAX_FILE_BYTES
from compression.model import ForeignRuntimeModule, LoadedModel
from compression.model_inputs import GUESSED, Dimension, ModelInput, batch_axes, guessed_sizes
from compression.output_axes import OutputAxis

ONNX_FORMAT = "onnx"
# Float element types that become parameters; the rest (shapes, indices) stay constants.
_WEIGHT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)
# Ops that pass token ids on unchanged, between a graph input and its embedding table's Gather.
_IDS_KEPT = ("Cast", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity")
# What a run on inputs that do not fit raises (onnxruntime's refusal, a wrong count of inputs).
_RUN_ERRORS = (DataError,)


@dataclass(frozen=True)
class WeightBinding:
    """Which initializer a parameter stands for, and whether it is held transposed."""

    parameter: str
    initializer: str
    transposed: bool


class _SharedRunner:
    """The onnxruntime session, shared by every copy of the module.

    Weights are fed on each run, so a deep copy with other weights (what ``compress`` makes)
    needs no session of its own; sessions cannot be copied anyway.
    """

    def __init__(self, runner: OnnxRuntimeModule) -> None:
        self.runner = runner

    def __deepcopy__(self, memo: dict) -> _SharedRunner:
        return self


class OnnxGraphModule(ForeignRuntimeModule):
    """An ONNX graph run by onnxruntime with this module's parameters as its weights."""

    runtime = "onnxruntime"

    def __init__(self, proto: onnx.ModelProto, *, threads: int | None = None) -> None:
        super().__init__()
        uses = weight_uses(proto.graph)
        self.bindings: tuple[WeightBinding, ...] = ()
        self.layer_types: dict[str, str] = {}
        self.output_axes: dict[str, OutputAxis] = {}
        bindings = []
        for initializer in proto.graph.initializer:
            if initializer.data_type not in _WEIGHT_TYPES or not initializer.dims:
                continue
            use = uses.get(initializer.name, NOT_A_LAYER)
            values = torch.from_numpy(numpy_helper.to_array(initializer).copy())
            parameter = nn.Parameter(values.t() if use.transposed else values, requires_grad=False)
            path = _register(self, initializer.name, parameter)
            bindings.append(WeightBinding(path, initializer.name, use.transposed))
            if use.layer_type is not None:
                self.layer_types[path] = use.layer_type
                self.output_axes[path] = use.output_axis
        self.bindings = tuple(bindings)
        self.original = proto.SerializeToString()
        graph_inputs = [value.name for value in proto.graph.input]
        self.user_inputs = tuple(name for name in graph_inputs if name not in {b.initializer for b in bindings})
        runner = OnnxRuntimeModule(_weights_as_inputs(proto, bindings), threads=threads, data_inputs=len(self.user_inputs))
        self._runner = _SharedRunner(runner)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if len(inputs) != len(self.user_inputs):
            raise DataError(
                f"the ONNX model takes {len(self.user_inputs)} input(s) ({', '.join(self.user_inputs)}); "
                f"got {len(inputs)}."
            )
        batch = self._runner.runner.static_batch
        if batch is not None and inputs[0].ndim and inputs[0].shape[0] != batch:
            return every_output(self._run, inputs, batch)
        return self._run(*inputs)

    def _run(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        return self._runner.runner.run(*inputs, *self._weights())

    def _weights(self) -> list[torch.Tensor]:
        parameters = dict(self.named_parameters())
        weights = []
        for binding in self.bindings:
            value = parameters[binding.parameter].detach()
            weights.append(value.t().contiguous() if binding.transposed else value)
        return weights


def read_onnx(
    path: Path, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, input_shapes: InputShapes | None = None
) -> tuple[LoadedModel, InputSpec]:
    """An .onnx file as a LoadedModel evaluated on seeded random inputs (a data file replaces them).

    Sizes the graph leaves open come from ``input_shapes`` (``{input name: shape}``, the batch
    first), else from guesses that the graph runs on (``compression.io.input_specs``). A graph
    whose inputs cannot be made loads without evaluation data; its inputs say why.
    """
    proto = parse_onnx(path.read_bytes(), path.name, max_file_bytes)
    external = _function_external_tensors(proto)
    if external:
        raise ModelLoadError(
            f"{path.name} keeps tensors of its functions in external files ({', '.join(external[:3])}); "
            "only self-contained ONNX files are read. Save it with onnx.save(model, path, "
            "save_as_external_data=False)."
        )
    module = OnnxGraphModule(proto)
    specs = with_given_shapes(_input_specs(proto.graph, module.user_inputs), input_shapes, path.name)
    specs = guess_sizes(specs, module, _RUN_ERRORS)
    batch = scoring_batch(specs)
    specs = with_batch(specs, batch)
    example, evaluation = (), None
    if not any(spec.problem for spec in specs):
        rows = batch_size(specs) or EXAMPLE_ROWS
        vocabularies = _token_vocabularies(proto.graph)
        example = tuple(_token_ids(example_input(spec, rows), vocabularies.get(spec.name)) for spec in specs)
        try:
            evaluation = random_evaluation(module, InputSpec(example, batch), generated_rows(specs, batch))
        except _RUN_ERRORS as error:
            problem = f"does not run in batches of {batch} rows ({first_line(error)})"
            specs = (replace(specs[0], problem=problem), *specs[1:])
            example = ()
    nodes = len(proto.graph.node)
    description = (DisplayText("onnx_graph_from", f"ONNX graph from {proto.producer_name} ({nodes} nodes) run by "
                               "onnxruntime", producer=proto.producer_name, nodes=nodes) if proto.producer_name else
                   DisplayText("onnx_graph", f"ONNX graph ({nodes} nodes) run by onnxruntime", nodes=nodes))
    guessed = guessed_sizes(specs)
    if guessed:
        note = DisplayText("guessed_sizes", f"guessed input sizes: {guessed}", sizes=guessed)
        description = DisplayText("noted", f"{description}; {note}", description=description, note=note)
    if batch_size(specs) is None and batch < DEFAULT_BATCH_SIZE:
        note = DisplayText("small_batches", f"scored in batches of {batch} (large rows)", batch=batch)
        description = DisplayText("noted", f"{description}; {note}", description=description, note=note)
    model = LoadedModel(
        name=path.name, format=ONNX_FORMAT, module=module, layer_types=dict(module.layer_types),
        output_axes=dict(module.output_axes),
        example_inputs=example, evaluation=evaluation, description=description, input_specs=specs,
    )
    return model, InputSpec(example, batch)


def onnx_with_weights(module: OnnxGraphModule) -> bytes:
    """The imported ONNX model with the module's current (e.g. compressed) weights."""
    proto = onnx.load_model_from_string(module.original)
    by_name = {initializer.name: initializer for initializer in proto.graph.initializer}
    for binding, value in zip(module.bindings, module._weights()):
        original = by_name[binding.initializer]
        array = value.cpu().numpy().astype(onnx.helper.tensor_dtype_to_np_dtype(original.data_type))
        original.CopyFrom(numpy_helper.from_array(array, binding.initializer))
    return serialize_onnx(proto, "ONNX model with compressed weights")


# --- the graph -----------------------------------------------------------------------------


def _function_external_tensors(proto: onnx.ModelProto) -> list[str]:
    """Tensors that the model's local functions keep in external files (the main graph is
    checked by ``runtime.parse_onnx``); onnxruntime would look for them beside the file."""
    names = []
    for function in proto.functions:
        for node in function.node:
            for attribute in node.attribute:
                tensors = ([attribute.t] if attribute.HasField("t") else []) + list(attribute.tensors)
                names += [t.name for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL]
                subgraphs = ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs)
                names += [name for graph in subgraphs for name in external_tensors(graph)]
    return names


def _weights_as_inputs(proto: onnx.ModelProto, bindings: list[WeightBinding]) -> bytes:
    """The graph taking the bound initializers as inputs, after its own and in binding order."""
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(proto)
    graph = rewritten.graph
    bound = {binding.initializer: binding for binding in bindings}
    weights = [init for init in graph.initializer if init.name in bound]
    kept = [init for init in graph.initializer if init.name not in bound]
    users = [value for value in graph.input if value.name not in bound]  # drops declared defaults
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.input[:]
    graph.input.extend(users)
    graph.input.extend(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)) for init in weights)
    return rewritten.SerializeToString()


def _input_specs(graph: onnx.GraphProto, user_inputs: tuple[str, ...]) -> tuple[ModelInput, ...]:
    """The graph's data inputs as specs: static sizes, open ones (None) named by their dim_param.

    An integer scalar (a sample rate, a step count) has a value no guess can stand for.
    """
    values = {value.name: value for value in graph.input}
    declared = [declared_dims(values[name]) for name in user_inputs]
    specs = []
    for name, dims, axis in zip(user_inputs, declared, batch_axes(declared)):
        value = values[name]
        if not value.type.HasField("tensor_type"):
            raise ModelLoadError(f"graph input {name!r} is not a tensor; only tensor inputs are supported.")
        dtype = str(onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type))
        problem = None
        if not hasattr(torch, dtype) or not isinstance(getattr(torch, dtype), torch.dtype):
            problem = f"has element type {dtype}, which the lab cannot make"
        elif not dims and dtype.startswith(("int", "uint")):
            problem = "holds a value that cannot be guessed (a sample rate, a count)"
        sizes = tuple(Dimension(size) if isinstance(size, int) else Dimension(None, GUESSED, size) for size in dims)
        specs.append(ModelInput(name, dtype, sizes, axis, problem))
    return tuple(specs)


def _token_vocabularies(graph: onnx.GraphProto) -> dict[str, int]:
    """The inputs that hold token ids, each with the rows of the embedding table it indexes.

    A token input reaches a ``Gather`` of a float matrix initializer as its indices, directly
    or through ops that keep the ids (GPT-2 reshapes them first); its ids lie in the table's rows.
    """
    tables = {init.name: init.dims[0] for init in graph.initializer
              if init.data_type in _WEIGHT_TYPES and len(init.dims) == 2}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input[:2]:
            readers.setdefault(name, []).append(node)
    vocabularies = {}
    for value in graph.input:
        names, rows = [value.name], []
        while names:
            name = names.pop()
            for node in readers.get(name, ()):
                if node.op_type == "Gather" and node.input[1:2] == [name] and node.input[0] in tables:
                    rows.append(tables[node.input[0]])
                elif node.op_type in _IDS_KEPT and node.input[0] == name:
                    names.extend(node.output)
        if rows:
            vocabularies[value.name] = min(rows)
    return vocabularies


def _token_ids(example: torch.Tensor, vocabulary: int | None) -> torch.Tensor:
    """An example of token ids from 0 to the last of the vocabulary (random inputs are drawn in
    the example's range), or the example as it is for any other input."""
    if vocabulary is None or example.is_floating_point() or not example.numel():
        return example
    ids = torch.linspace(0, vocabulary - 1, example.numel()).round()
    return ids.to(example.dtype).reshape(example.shape)


def _register(root: nn.Module, name: str, parameter: nn.Parameter) -> str:
    """Register ``parameter`` under the initializer's dotted name, made valid; returns the path.

    Segments keep letters, digits and underscores; a segment that clashes with an attribute
    (``forward``, an existing parameter) gets a trailing underscore.
    """
    segments = [re.sub(r"\W", "_", segment) or "_" for segment in name.split(".")]
    module, path = root, []
    for segment in segments[:-1]:
        child = module._modules.get(segment)
        if child is None:
            segment = _free_name(module, segment)
            child = nn.Module()
            module.add_module(segment, child)
        module = child
        path.append(segment)
    leaf = _free_name(module, segments[-1])
    module.register_parameter(leaf, parameter)
    return ".".join([*path, leaf])


def _free_name(module: nn.Module, name: str) -> str:
    while hasattr(module, name):
        name += "_"
    return name
