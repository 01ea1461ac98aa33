"""Files that carry their own architecture: TorchScript and torch.export programs (.pt2) read
as LoadedModels, and a module written as a .pt2 (how rewritten models, fused or with channels
removed, leave the lab as files that ``load_model`` reads back)."""
from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import nn

from compression.errors import CompressionError, ModelLoadError
from compression.io.evaluation_data import DEFAULT_BATCH_SIZE, InputSpec, random_evaluation
from compression.io.program_layers import export_layers
from compression.model import LoadedModel, module_layer_types

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


def read_torchscript(path: Path) -> tuple[LoadedModel, InputSpec]:
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except LOAD_ERRORS as error:
        raise ModelLoadError(f"{path.name} could not be loaded by torch.jit.load ({error}).") from None
    module.eval()
    model = LoadedModel(
        name=path.name, format="torchscript", module=module,
        layer_types=module_layer_types(module), example_inputs=(), evaluation=None,
        description="TorchScript module (it records no input shape)",
    )
    return model, InputSpec()


def read_export(path: Path) -> tuple[LoadedModel, InputSpec]:
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
    spec = InputSpec(tuple(args), _static_batch_size(program) or DEFAULT_BATCH_SIZE)
    layer_types, output_axes = export_layers(program)
    # No .eval(): the program's train/eval behaviour was fixed at export and its module refuses it.
    model = LoadedModel(
        name=path.name, format="torch_export", module=module,
        layer_types=layer_types, output_axes=output_axes, example_inputs=spec.example,
        evaluation=random_evaluation(module, spec) if args else None,
        description="torch.export program",
    )
    return model, spec


def _static_batch_size(program: torch.export.ExportedProgram) -> int | None:
    """The batch size the program was exported with, when its batch dimension is not dynamic."""
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        value = node.meta.get("val")
        if node.op != "placeholder" or node.name not in user_inputs or not isinstance(value, torch.Tensor):
            continue
        size = value.shape[0] if value.ndim else None
        return size if isinstance(size, int) else None
    return None

