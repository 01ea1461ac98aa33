"""The export → int8 → score pipeline that the ``export`` command and the Export page share."""
from __future__ import annotations

import dataclasses
import functools

import pytest

from compression.compress import compress
from compression.errors import CompressionError
from compression.io.loading import load_model
from compression.io.onnx.export import evaluate_onnx, export_onnx
from compression.io.onnx.runtime import parse_onnx
from compression.workflows.onnx_scoring import INT8_MODES, export_and_score


@functools.cache
def mlp():
    return load_model("mlp")


def test_float_export_scores_the_uncompressed_model_as_evaluate_onnx_does() -> None:
    scored = export_and_score(mlp())
    assert scored.int8 == "none"
    assert scored.evaluation.value == pytest.approx(evaluate_onnx(mlp(), export_onnx(mlp())).value)
    assert scored.evaluation.baseline_value == pytest.approx(scored.evaluation.value, abs=1 / 450)


@pytest.mark.parametrize("int8", [mode for mode in INT8_MODES if mode != "none"])
def test_every_int8_mode_gives_a_smaller_file_that_keeps_accuracy(int8) -> None:
    module = compress(mlp(), {"prune": {"method": "magnitude", "amount": 0.5}}).module
    plain, quantized = export_and_score(mlp(), module), export_and_score(mlp(), module, int8)
    assert len(quantized.program) < len(plain.program) / 2
    assert quantized.evaluation.value >= plain.evaluation.value - 0.02
    assert any(node.op_type in ("DynamicQuantizeLinear", "QuantizeLinear", "QLinearMatMul", "MatMulInteger")
               for node in parse_onnx(quantized.program, "int8").graph.node)


def test_a_model_without_evaluation_data_is_exported_unscored() -> None:
    scored = export_and_score(dataclasses.replace(mlp(), evaluation=None, cache={}))
    assert scored.evaluation is None and scored.program


def test_an_unknown_int8_mode_is_refused_naming_the_modes() -> None:
    with pytest.raises(CompressionError, match="int8 must be one of 'none', 'dynamic', 'qdq', 'qoperator'; got 'int4'"):
        export_and_score(mlp(), int8="int4")
