"""TFLite export: the file runs in LiteRT and computes what the (compressed) torch module computes."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from compression.compress import compress
from compression.errors import CompressionError
from compression.io.loading import load_model
from compression.model import LoadedModel
from compression.io.onnx.export import export_onnx
from compression.io.tflite_export import export_tflite

RECIPE = {"prune": {"method": "magnitude", "amount": 0.5}, "quantize": {"scheme": "linear", "bits": 4}}


@functools.cache
def model(name: str) -> LoadedModel:
    return load_model(name)


def litert_outputs(tflite_bytes: bytes, inputs: torch.Tensor) -> np.ndarray:
    interpreter_module = pytest.importorskip("ai_edge_litert.interpreter")
    interpreter = interpreter_module.Interpreter(model_content=tflite_bytes)
    interpreter.allocate_tensors()
    (given,), (result,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.set_tensor(given["index"], inputs.numpy())
    interpreter.invoke()
    return interpreter.get_tensor(result["index"])


@pytest.mark.parametrize("name", ["mlp", "simplenet"])
def test_a_compressed_model_runs_in_litert_with_the_compressed_outputs(name):
    pytest.importorskip("litert_torch")
    compressed = compress(model(name), RECIPE).module
    inputs = model(name).evaluation.inputs[0][:2]  # the file takes the example batch (2) only
    with torch.no_grad():
        expected = compressed(inputs).numpy()
    np.testing.assert_allclose(litert_outputs(export_tflite(model(name), compressed), inputs), expected, atol=1e-4)


def test_an_imported_onnx_graph_is_refused_with_the_reason(tmp_path):
    path = tmp_path / "mlp.onnx"
    path.write_bytes(export_onnx(model("mlp")))
    with pytest.raises(CompressionError, match="imported ONNX graph"):
        export_tflite(load_model(path))


def test_without_litert_torch_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "litert_torch", None)  # as if not installed
    with pytest.raises(CompressionError, match="requirements-tflite.txt"):
        export_tflite(model("mlp"))
