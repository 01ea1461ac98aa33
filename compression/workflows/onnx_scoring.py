"""Export to ONNX, optionally to int8, and score the file with onnxruntime: the pipeline the
``export`` command and the Export page both run.

onnx and onnxruntime load when a file is first exported, not with this module: the command
line lists its ``--int8`` choices without them.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from compression.errors import CompressionError
from compression.evaluation import Evaluation
from compression.model import LoadedModel

NO_INT8 = "none"
INT8_MODES = (NO_INT8, "dynamic", "qdq", "qoperator")  # dynamic, or static calibrated as QDQ / QOperator


@dataclass(frozen=True)
class ScoredOnnx:
    """An ONNX file as bytes, its int8 mode, and its onnxruntime scores (None: no evaluation data)."""

    program: bytes
    int8: str
    evaluation: Evaluation | None


def export_and_score(model: LoadedModel, module: nn.Module | None = None, int8: str = NO_INT8) -> ScoredOnnx:
    """``module`` (default: the model's own) as ONNX, quantized to int8 as ``int8`` says, and
    scored on ``model``'s evaluation data against the uncompressed torch model.

    Static int8 calibrates on the model's training rows (``calibration_inputs_for``), never on
    the rows it is scored on.
    """
    from compression.io.onnx.export import evaluate_onnx, export_onnx
    from compression.io.onnx.int8 import calibration_inputs_for, quantize_onnx_dynamic, quantize_onnx_static

    if int8 not in INT8_MODES:
        raise CompressionError(f"int8 must be one of {', '.join(map(repr, INT8_MODES))}; got {int8!r}.")
    program = export_onnx(model, module)
    if int8 == "dynamic":
        program = quantize_onnx_dynamic(program)
    elif int8 != NO_INT8:
        program = quantize_onnx_static(program, calibration_inputs_for(model), format=int8)
    evaluation = evaluate_onnx(model, program) if model.evaluation is not None else None
    return ScoredOnnx(program, int8, evaluation)
