"""Files that carry their own architecture: TorchScript and torch.export programs (.pt2) read
as LoadedModels, and a module written as a .pt2 (how rewritten models, fused or with channels
removed, leave the lab as files that ``load_model`` reads back)."""
from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from compression.display_text import DisplayText
from compression.errors import CompressionError, ModelLoadError
from compression.io.evaluation_data import InputSpec, random_evaluation
from compression.io.input_specs import (
    InputShapes,
    generated_rows,
    given_input_specs,
    scoring_batch,
    with_given_shapes,
)
from compression.io.program_layers import export_layers
from compression.model import EvaluationData, LoadedModel, module_layer_types
from compression.model_inputs import EXAMPLE, Dimension, ModelInput

_EXPORT_ERRORS = (RuntimeError, ValueError, TypeError, AssertionError, NotImplementedError)
# What torch.jit.load and torch.export.load raise on files they cannot read.
LOAD_ERRORS = (RuntimeError, ValueError, AssertionError, KeyError, TypeError, AttributeError)


def program_bytes(module: nn.Module, model: LoadedModel) -> bytes:
    """``module`` as the bytes of a torch.export program traced on ``model``'s example inputs."""
    if not model.example_inputs:
        raise CompressionError(f"{model.name} records no example input to export with; load it with a data file.")
    # Copies: an example input sliced from the evaluation data is a view, and the program stores
    # a view's whole storage (1.4 MB of digits in simplenet's otherwise 30 KB file).
    example_inputs = tuple(tensor.clone() for tensor in model.example_inputs)
    buffer = io.BytesIO()
    try:
        torch.export.save(torch.export.export(module, example_inputs), buffer)
    except _EXPORT_ERRORS as error:
        # torch.export's messages run over many lines; the first names the problem.
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CompressionError(f"torch.export could not export {model.name} ({type(error).__name__}: {reason}).") from None
    return buffer.getvalue()


# --- reading ---------------------------------------------------------------------------------


def read_torchscript(path: Path, input_shapes: InputShapes | None = None) -> tuple[LoadedModel, InputSpec]:
    """A TorchScript module. It records no input shape: with ``input_shapes`` (``{input name:
    shape}``, the batch first) it is scored on seeded random float32 inputs of those shapes,
    else it loads unscored and scoring asks for sizes or data."""
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except LOAD_ERRORS as error:
        raise ModelLoadError(f"{path.name} could not be loaded by torch.jit.load ({error}).") from None
    module.eval()
    model = LoadedModel(
        name=path.name, format="torchscript", module=module,
        layer_types=module_layer_types(module), example_inputs=(), evaluation=None,
        description=DisplayText("torchscript_no_shapes", "TorchScript module (it records no input shape)"),
    )
    if not input_shapes:
        return model, InputSpec()
    specs = given_input_specs(_forward_inputs(module), input_shapes, path.name)
    example = tuple(torch.zeros(spec.shape) for spec in specs)
    batch = scoring_batch(specs)
    evaluation, specs = _scored(module, example, specs, batch)
    model = replace(model, example_inputs=example, evaluation=evaluation, input_specs=specs,
                    description=DisplayText("torchscript_given_shapes", "TorchScript module (on the input sizes given)"))
    return model, InputSpec(example, batch)


def _forward_inputs(module: torch.jit.ScriptModule) -> tuple[str, ...]:
    """The scripted forward's argument names (``self`` left out); ``input0``… where its schema
    cannot be read."""
    try:
        arguments = module.forward.schema.arguments[1:]
    except (AttributeError, RuntimeError):
        return ()
    return tuple(argument.name for argument in arguments if not argument.has_default_value())


def _scored(module: nn.Module, example: tuple[torch.Tensor, ...], specs: tuple[ModelInput, ...],
            batch: int) -> tuple[EvaluationData | None, tuple[ModelInput, ...]]:
    """Seeded random evaluation inputs like ``example``, or none and a problem on the first
    input where the module does not run at these sizes."""
    try:
        return random_evaluation(module, InputSpec(example, batch), generated_rows(specs, batch)), specs
    except (*LOAD_ERRORS, CompressionError) as error:  # sizes given that the module refuses
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return None, (replace(specs[0], problem=f"does not run at the sizes given ({reason})"), *specs[1:])


def read_export(path: Path, input_shapes: InputShapes | None = None) -> tuple[LoadedModel, InputSpec]:
    """A .pt2 program, scored on seeded random inputs shaped like its example inputs, or like
    ``input_shapes`` (``{input name: shape}``, the batch first) on its dynamic axes."""
    try:
        program = torch.export.load(path)
        module = program.module()
    except (*LOAD_ERRORS, NotImplementedError) as error:
        raise ModelLoadError(f"{path.name} could not be loaded by torch.export.load ({error}).") from None
    args, kwargs = program.example_inputs or ((), {})
    if kwargs:
        raise ModelLoadError(
            f"{path.name} takes keyword inputs ({', '.join(kwargs)}); export the model with "
            "positional tensor inputs only."
        )
    if not all(isinstance(arg, torch.Tensor) for arg in args):
        raise ModelLoadError(f"{path.name} takes inputs that are not tensors; export it with tensors only.")
    specs = with_given_shapes(program_input_specs(program, args), input_shapes, path.name)
    batch = scoring_batch(specs)
    example = tuple(_resized(arg, spec.shape) for arg, spec in zip(args, specs))
    evaluation = None
    if args:
        evaluation, specs = _scored(module, example, specs, batch)
    layer_types, output_axes = export_layers(program)
    # No .eval(): the program's train/eval behaviour was fixed at export and its module refuses it.
    model = LoadedModel(
        name=path.name, format="torch_export", module=module,
        layer_types=layer_types, output_axes=output_axes, example_inputs=example, evaluation=evaluation,
        description=DisplayText("export_program", "torch.export program"), input_specs=specs,
    )
    return model, InputSpec(example, batch)


def program_input_specs(program: torch.export.ExportedProgram, args: tuple[torch.Tensor, ...]) -> tuple[ModelInput, ...]:
    """The program's inputs: static sizes, and dynamic ones named by their symbol (``s0``; the
    names given at export are not saved) with the example input's size."""
    placeholders = {node.name: node.meta.get("val") for node in program.graph.nodes if node.op == "placeholder"}
    specs = []
    for name, example in zip(program.graph_signature.user_inputs, args):
        value = placeholders.get(name)
        sizes = value.shape if isinstance(value, torch.Tensor) else example.shape
        dims = tuple(
            Dimension(size) if isinstance(size, int) else Dimension(int(actual), EXAMPLE, str(size))
            for size, actual in zip(sizes, example.shape)
        )
        specs.append(ModelInput(name, str(example.dtype).removeprefix("torch."), dims, 0 if dims else None))
    return tuple(specs)


def _resized(example: torch.Tensor, shape: tuple[int | None, ...]) -> torch.Tensor:
    """The example's values repeated into ``shape`` (integers keep their range: token ids stay valid)."""
    if tuple(example.shape) == shape:
        return example
    flat = example.reshape(-1)
    count = 1
    for size in shape:
        count *= size
    return flat[torch.arange(count) % max(flat.numel(), 1)].reshape(shape)

