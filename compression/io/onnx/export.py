"""ONNX for deployment: export a (compressed) module, and score the exported model.

The compressed weights of ``compress`` are float32 values on a small grid; ONNX Runtime is
where they are deployed, and where int8 kernels actually run (``int8`` quantizes the export).

>>> import torch
>>> from compression.io.onnx.initializers import load_onnx_initializers
>>> from compression.io.onnx.runtime import onnx_outputs
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

import re
import warnings

import torch
from torch import nn

from compression.errors import DataError, ModelLoadError
from compression.evaluation import Evaluation, evaluate
from compression.metrics import metric, output_tensor, output_tensors
from compression.io.onnx.importing import OnnxGraphModule, onnx_with_weights
from compression.io.onnx.runtime import OnnxRuntimeModule, first_line, quiet_tools, serialize_onnx
from compression.model import LoadedModel

NOTE_KEY = "compression_lab.note"  # metadata_props entry saying why a batch is static
_EXPORTED_OUTPUT = "scored"  # attribute of the wrapper that makes the scored tensor the output


def export_onnx(model: LoadedModel, module: nn.Module | None = None, *, dynamic_batch: bool = True) -> bytes:
    """The ONNX model of ``module`` (default the base module), traced on the model's example inputs.

    Uses the dynamo exporter (``torch.export`` underneath). With ``dynamic_batch`` the first
    dimension of every input is left free; where the exporter refuses (a model that fixes its
    batch), the export falls back to the example's batch, warns, and records why under the
    ``compression_lab.note`` metadata entry. The outputs are what ``evaluate`` scores: the
    scored tensor, or every output tensor of a model scored by the fidelity of every output.
    """
    module = model.module if module is None else module
    if isinstance(module, OnnxGraphModule):  # an imported graph: written back with its weights
        return onnx_with_weights(module)
    if isinstance(module, torch.jit.ScriptModule):
        raise ModelLoadError(
            f"{model.name!r} is a TorchScript module, which the dynamo ONNX exporter cannot trace; "
            "export the model with torch.export (a .pt2 program) or load its state_dict instead."
        )
    inputs = example_inputs(model)
    every = model.evaluation is not None and metric(model.evaluation.metric).every_output
    exportable = _with_scored_output(module, inputs, every)
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
    if program is None:
        program = _exported_or_error(model.name, exportable, inputs, None)
    if note is not None:  # only once the static export worked: a refusal alone says what failed
        warnings.warn(f"{model.name}: {note}", stacklevel=2)
    if exportable is not module:
        _strip_prefix(program.model, f"{_EXPORTED_OUTPUT}.")
    proto = program.model_proto
    if note is not None:
        entry = proto.metadata_props.add()
        entry.key, entry.value = NOTE_KEY, note
    return serialize_onnx(proto, model.name)


def example_inputs(model: LoadedModel) -> tuple[torch.Tensor, ...]:
    """The inputs to trace ``model`` on: its example inputs, else two rows of its evaluation data."""
    if model.example_inputs:
        return model.example_inputs
    if model.evaluation is not None:
        return tuple(tensor[:2] for tensor in model.evaluation.inputs)
    raise DataError(
        f"{model.name!r} has no example inputs to trace the export with; load it with a data file "
        "(--data x.npz) so that its input shape is known."
    )


def _with_scored_output(module: nn.Module, inputs: tuple[torch.Tensor, ...], every: bool) -> nn.Module:
    """``module`` itself when it returns a tensor, else a wrapper returning what ``evaluate``
    scores: the scored tensor, or (``every``) the tuple of every output tensor."""
    with torch.inference_mode():
        output = module(*inputs)
    if isinstance(output, torch.Tensor):
        return module
    wrapper = _ScoredOutput(module, every)
    wrapper.training = False  # not .eval(): that would recurse into the shared, read-only module
    return wrapper


class _ScoredOutput(nn.Module):
    def __init__(self, module: nn.Module, every: bool) -> None:
        super().__init__()
        self.scored = module  # the attribute name is _EXPORTED_OUTPUT, stripped from initializer names
        self.every = every

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        output = self.scored(*inputs)
        return output_tensors(output) if self.every else output_tensor(output)


def _at_least_two_rows(inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    # torch.export treats a size-1 dimension as the constant 1, so it cannot become dynamic.
    if inputs[0].ndim > 0 and inputs[0].shape[0] == 1:
        return tuple(tensor.repeat(2, *([1] * (tensor.ndim - 1))) for tensor in inputs)
    return inputs


def _batch_dimensions(inputs: tuple[torch.Tensor, ...]) -> tuple[dict[int, object] | None, ...]:
    batch = torch.export.Dim("batch")
    return tuple({0: batch} if tensor.ndim > 0 else None for tensor in inputs)


def _export(module: nn.Module, inputs: tuple[torch.Tensor, ...], dynamic_shapes) -> torch.onnx.ONNXProgram:
    with quiet_tools():
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
    return re.sub(r"\x1b\[[0-9;]*m", "", first_line(error))


def evaluate_onnx(
    model: LoadedModel, onnx_bytes: bytes, *, samples: int | None = None, threads: int | None = None
) -> Evaluation:
    """Score an ONNX model as ``compression.evaluate`` scores a module: same data, metric, baseline.

    The baseline stays the base torch model's outputs, so a float ONNX export of the base model
    scores the baseline value (up to rounding) and an int8 one shows what int8 costs.
    """
    return evaluate(model, OnnxRuntimeModule(onnx_bytes, threads=threads), samples=samples)
