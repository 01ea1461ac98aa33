"""ONNX export: the exported model computes what torch computes, int8 keeps accuracy, bad files fail."""
from __future__ import annotations

import functools

import onnx
import pytest
import torch

from compression.compress import compress
from compression.errors import CompressionError
from compression.evaluation import evaluate, model_outputs
from compression.io.loading import load_model
from compression.model import LoadedModel
from compression.io.onnx.export import evaluate_onnx, export_onnx
from compression.io.onnx.initializers import load_onnx_initializers, replace_initializers
from compression.io.onnx.int8 import calibration_inputs_for, quantize_onnx_dynamic, quantize_onnx_static
from compression.io.onnx.runtime import onnx_outputs

DIGITS = ("simplenet", "mlp", "bn_cnn")
TOLERANCE = 1e-4
COMPRESSION = {"prune": {"method": "magnitude", "amount": 0.5}, "quantize": {"scheme": "linear", "bits": 4}}


@functools.cache
def model(name: str) -> LoadedModel:
    return load_model(name)


@functools.cache
def exported(name: str) -> bytes:
    return export_onnx(model(name))


@functools.cache
def compressed_mlp():
    return compress(model("mlp"), COMPRESSION).module


def torch_outputs(loaded: LoadedModel, module: torch.nn.Module) -> torch.Tensor:
    data = loaded.evaluation
    return model_outputs(module, data.inputs, data.batch_size)


def mlp_onnx_outputs(onnx_bytes: bytes) -> torch.Tensor:
    data = model("mlp").evaluation
    return onnx_outputs(onnx_bytes, data.inputs, data.batch_size)


@pytest.mark.parametrize("name", DIGITS)
def test_onnx_outputs_match_torch(name):
    loaded = model(name)
    data = loaded.evaluation
    ours = onnx_outputs(exported(name), data.inputs, data.batch_size)
    assert (ours - torch_outputs(loaded, loaded.module)).abs().max() <= TOLERANCE


def test_batch_dimension_is_dynamic():
    x = model("mlp").evaluation.inputs[0]
    for rows in (1, 7, 300):
        assert onnx_outputs(exported("mlp"), (x[:rows],), batch_size=rows).shape == (rows, 10)


def test_compressed_weights_survive_export():
    loaded, module = model("mlp"), compressed_mlp()
    onnx_bytes = export_onnx(loaded, module)
    assert torch.equal(load_onnx_initializers(onnx_bytes)["fc1.weight"], module.fc1.weight.detach())
    compressed = torch_outputs(loaded, module)
    assert (mlp_onnx_outputs(onnx_bytes) - compressed).abs().max() <= TOLERANCE
    assert (compressed - torch_outputs(loaded, loaded.module)).abs().max() > TOLERANCE  # not the base weights


@pytest.mark.parametrize("compressed", [False, True], ids=["base", "compressed"])
def test_evaluate_onnx_scores_as_evaluate(compressed):
    loaded = model("mlp")
    module = compressed_mlp() if compressed else loaded.module
    ours = evaluate_onnx(loaded, export_onnx(loaded, module) if compressed else exported("mlp"))
    theirs = evaluate(loaded, module)
    assert ours.metric == theirs.metric and ours.baseline_value == theirs.baseline_value
    assert abs(ours.value - theirs.value) <= 1 / loaded.evaluation.size


def test_dynamic_int8_keeps_accuracy_in_a_smaller_file():
    fp32 = exported("mlp")
    int8 = quantize_onnx_dynamic(fp32)
    assert mlp_onnx_outputs(int8).shape == (450, 10)
    assert evaluate_onnx(model("mlp"), int8).value >= evaluate(model("mlp")).value - 0.02
    assert len(int8) < len(fp32) / 2


@pytest.mark.parametrize("format", ["qdq", "qoperator"])
def test_static_int8_keeps_accuracy_in_a_smaller_file(format):
    fp32 = exported("mlp")
    int8 = quantize_onnx_static(fp32, calibration_inputs_for(model("mlp")), format=format)
    assert mlp_onnx_outputs(int8).shape == (450, 10)
    assert evaluate_onnx(model("mlp"), int8).value >= evaluate(model("mlp")).value - 0.02
    assert len(int8) < len(fp32) / 2


def test_static_int8_runs_on_convolutions():
    int8 = quantize_onnx_static(exported("bn_cnn"), calibration_inputs_for(model("bn_cnn")), per_channel=True)
    assert evaluate_onnx(model("bn_cnn"), int8).value >= evaluate(model("bn_cnn")).value - 0.02


def test_calibration_uses_training_rows_not_held_out_ones():
    (calibration,) = calibration_inputs_for(model("mlp"))
    held_out = model("mlp").evaluation.inputs[0]
    assert calibration.shape[1:] == held_out.shape[1:]
    assert not (calibration[:, None] == held_out[None]).all(dim=2).any()


def test_static_format_is_validated():
    with pytest.raises(CompressionError, match="format must be one of 'qdq', 'qoperator'; got 'int4'"):
        quantize_onnx_static(exported("mlp"), calibration_inputs_for(model("mlp")), format="int4")


def test_initializer_round_trip_changes_outputs_as_torch_does():
    loaded = model("mlp")
    weights = load_onnx_initializers(exported("mlp"))
    halved = weights["fc1.weight"].clone()
    halved[: halved.shape[0] // 2] = 0.0
    onnx_bytes = replace_initializers(exported("mlp"), {"fc1.weight": halved})

    reference = compress(loaded, {}).module  # an unchanged copy to edit
    with torch.no_grad():
        reference.fc1.weight.copy_(halved)
    ours = mlp_onnx_outputs(onnx_bytes)
    assert (ours - mlp_onnx_outputs(exported("mlp"))).abs().max() > TOLERANCE
    assert (ours - torch_outputs(loaded, reference)).abs().max() <= TOLERANCE


def test_replace_initializers_names_unknown_tensors():
    with pytest.raises(CompressionError, match="lacks: fc9.weight"):
        replace_initializers(exported("mlp"), {"fc9.weight": torch.zeros(1)})


def test_replace_initializers_refuses_another_shape():
    with pytest.raises(CompressionError, match="has shape"):
        replace_initializers(exported("mlp"), {"fc1.weight": torch.zeros(3, 3)})


@pytest.mark.parametrize(
    "onnx_bytes", [b"", b"not an onnx file", b"\x08\x07" + b"x" * 10], ids=["empty", "text", "header"]
)
def test_bad_bytes_raise_compression_error(onnx_bytes):
    with pytest.raises(CompressionError):
        load_onnx_initializers(onnx_bytes)
    with pytest.raises(CompressionError):
        onnx_outputs(onnx_bytes, (torch.zeros(1, 64),), 1)


def test_truncated_file_raises_compression_error():
    with pytest.raises(CompressionError):
        evaluate_onnx(model("mlp"), exported("mlp")[:1000])


def test_external_data_is_refused():
    proto = onnx.load_model_from_string(exported("mlp"))
    weight = proto.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.data_location = onnx.TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="/etc/passwd")
    with pytest.raises(CompressionError, match="external files"):
        load_onnx_initializers(proto.SerializeToString())
