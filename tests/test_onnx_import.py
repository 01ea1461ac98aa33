"""ONNX import: an .onnx file becomes a model whose weights the engine compresses and onnxruntime runs."""
from __future__ import annotations

import copy
import functools
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from compression.graph.channels import remove_channels
from compression.compress import compress
from compression.errors import CompressionError, DataError, ModelLoadError
from compression.evaluation import evaluate
from compression.graph.fusion import fuse_conv_bn
from compression.io.loading import load_model
from compression.model import LoadedModel
from compression.io.onnx.export import export_onnx
from compression.io.onnx.initializers import load_onnx_initializers
from compression.io.safety import ONNX, inspect_file
from tests.tensor_checks import assert_bitwise_equal, bitwise_copy, outputs

RECIPE = {"prune": {"method": "magnitude", "amount": 0.5}, "quantize": {"scheme": "linear", "bits": 4}}
STRUCTURED = {"prune": {"method": "structured", "amount": 0.5}}


@functools.cache
def torch_model(name: str) -> LoadedModel:
    return load_model(name)


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> dict[str, LoadedModel]:
    folder = tmp_path_factory.mktemp("onnx")
    models = {}
    for name in ("simplenet", "mlp", "bn_cnn"):
        path = folder / f"{name}.onnx"
        path.write_bytes(export_onnx(torch_model(name)))
        models[name] = load_model(path)
    return models


def write(path: Path, proto: onnx.ModelProto) -> Path:
    path.write_bytes(proto.SerializeToString())
    return path


def matmul_graph(names: tuple[str, str] = ("w", "b"), *, gemm: bool = False, batch: int | str = "n") -> onnx.ModelProto:
    """y = x @ W + b with W stored (in=4, out=3): MatMul + Add, or Gemm with transB=0."""
    weight = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    bias = np.array([0.1, -0.2, 0.3], dtype=np.float32)
    initializers = [numpy_helper.from_array(weight, names[0]), numpy_helper.from_array(bias, names[1])]
    if gemm:
        nodes = [helper.make_node("Gemm", ["x", names[0], names[1]], ["y"], transB=0)]
    else:
        nodes = [helper.make_node("MatMul", ["x", names[0]], ["xw"]), helper.make_node("Add", ["xw", names[1]], ["y"])]
    graph = helper.make_graph(
        nodes, "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])], initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("name", ["simplenet", "mlp", "bn_cnn"])
def test_an_exported_sample_model_imports_and_computes_what_torch_computes(imported, name):
    model = imported[name]
    assert model.format == ONNX
    assert torch.allclose(outputs(model.module, torch_model(name)), outputs(torch_model(name).module, torch_model(name)), atol=1e-4)
    assert set(model.layer_types) == set(torch_model(name).layer_types)


@pytest.mark.parametrize("name", ["simplenet", "mlp"])
def test_a_sample_model_exported_to_onnx_is_scored_on_the_held_out_digits(imported, name):
    model = imported[name]
    assert model.evaluation.metric == "accuracy"
    assert evaluate(model).value == pytest.approx(evaluate(torch_model(name)).value, abs=1 / 450)


def test_compressing_an_imported_model_gives_the_torch_compression_and_leaves_it_unchanged(imported):
    model = imported["mlp"]
    before = bitwise_copy(model.module.state_dict())
    ours = compress(model, RECIPE)
    theirs = compress(torch_model("mlp"), RECIPE)
    assert_bitwise_equal(model.module.state_dict(), before)
    assert ours.report.sparsity == pytest.approx(theirs.report.sparsity)
    assert ours.report.encoded_bytes == theirs.report.encoded_bytes
    assert torch.allclose(outputs(ours.module, model), outputs(theirs.module, torch_model("mlp")), atol=1e-4)
    assert evaluate(model, ours.module).value == pytest.approx(evaluate(torch_model("mlp"), theirs.module).value, abs=1 / 450)


def test_a_compressed_import_is_written_back_as_onnx_with_its_compressed_weights(imported, tmp_path):
    model = imported["mlp"]
    compressed = compress(model, RECIPE).module
    onnx_bytes = export_onnx(model, compressed)
    initializers = load_onnx_initializers(onnx_bytes)
    for name, tensor in compressed.state_dict().items():
        assert torch.equal(initializers[name], tensor), name
    reloaded = load_model(write(tmp_path / "compressed.onnx", onnx.load_model_from_string(onnx_bytes)))
    assert torch.allclose(outputs(reloaded.module, model), outputs(compressed, model), atol=1e-6)


def test_matmul_weights_are_held_like_torch_linear_so_structured_pruning_removes_outputs(tmp_path):
    for gemm in (False, True):
        model = load_model(write(tmp_path / f"linear-{gemm}.onnx", matmul_graph(gemm=gemm)))
        weight = model.module.state_dict()["w"]
        assert model.layer_types == {"w": "Linear"}
        assert tuple(weight.shape) == (3, 4)  # (out, in), stored (in, out) in the file
        x = torch.randn(5, 4)
        expected = x @ weight.t() + torch.tensor([0.1, -0.2, 0.3])
        assert torch.allclose(model.module(x), expected, atol=1e-6)
        pruned = compress(model, {"prune": {"method": "structured", "amount": 0.34}}).module
        removed = [row for row in range(3) if not pruned.state_dict()["w"][row].any()]
        assert len(removed) == 1
        written = load_onnx_initializers(export_onnx(model, pruned))["w"]
        assert not written[:, removed[0]].any() and written[:, [c for c in range(3) if c != removed[0]]].all()


def test_initializer_names_that_are_not_python_names_become_valid_parameter_names(tmp_path):
    model = load_model(write(tmp_path / "names.onnx", matmul_graph(("onnx::MatMul_12", "/layer.0/bias"))))
    assert sorted(model.module.state_dict()) == ["_layer.0_bias", "onnx__MatMul_12"]
    compressed = compress(model, RECIPE).module
    written = load_onnx_initializers(export_onnx(model, compressed))
    assert torch.equal(written["onnx::MatMul_12"], compressed.state_dict()["onnx__MatMul_12"].t())


def test_a_copy_shares_the_session_and_runs_its_own_weights(imported):
    module = imported["mlp"].module
    copied = copy.deepcopy(module)
    assert copied._runner is module._runner
    with torch.no_grad():
        copied.fc3.weight.zero_()
        copied.fc3.bias.zero_()
    x = torch_model("mlp").evaluation.inputs[0][:4]
    assert not copied(x).any()
    assert module(x).any()


def test_a_fixed_batch_graph_is_fed_batches_of_its_own_size(tmp_path):
    model = load_model(write(tmp_path / "static.onnx", matmul_graph(batch=2)))
    assert model.evaluation.batch_size == 2
    x = torch.randn(5, 4)
    assert model.module(x).shape == (5, 3)


def test_an_npz_replaces_the_random_inputs_of_an_imported_model(tmp_path):
    path = write(tmp_path / "linear.onnx", matmul_graph())
    np.savez(tmp_path / "data.npz", x=np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32),
             y=np.arange(20) % 3)
    model = load_model(path, tmp_path / "data.npz")
    assert model.evaluation.metric == "accuracy" and model.evaluation.size == 15  # a quarter calibrates
    with pytest.raises(DataError, match="per-sample shape"):
        np.savez(tmp_path / "wrong.npz", x=np.zeros((3, 5), np.float32))
        load_model(path, tmp_path / "wrong.npz")


def test_onnx_files_are_recognised_by_content(tmp_path):
    path = write(tmp_path / "model.bin", matmul_graph())
    assert inspect_file(path).kind == ONNX


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x08\x07garbage that is no protobuf \xff\xff", "not an ONNX file|no graph|checker"),
        (b"just text, named .onnx", "not an ONNX file|no graph|checker"),
    ],
)
def test_files_that_are_not_onnx_models_get_a_clear_refusal(tmp_path, content, message):
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message):
        load_model(path)


def test_a_truncated_onnx_file_is_refused(tmp_path):
    whole = matmul_graph().SerializeToString()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ModelLoadError):
        load_model(path)


def test_tensors_kept_in_external_files_are_never_read(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones(12, np.float32).tobytes())
    proto = matmul_graph()
    weight = proto.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value=str(secret))
    with pytest.raises(ModelLoadError, match="external files"):
        load_model(write(tmp_path / "external.onnx", proto))


def test_an_operator_onnxruntime_does_not_know_is_a_load_error(tmp_path):
    proto = matmul_graph()
    proto.graph.node[1].op_type = "Launch"
    proto.graph.node[1].domain = "evil.ops"
    proto.opset_import.append(helper.make_opsetid("evil.ops", 1))
    with pytest.raises(ModelLoadError, match="onnxruntime"):
        load_model(write(tmp_path / "custom.onnx", proto))


def test_nan_weights_in_an_onnx_file_are_refused(tmp_path):
    proto = matmul_graph()
    bias = np.array([np.nan, 0, 0], dtype=np.float32)
    proto.graph.initializer[1].CopyFrom(numpy_helper.from_array(bias, "b"))
    with pytest.raises(ModelLoadError, match="NaN"):
        load_model(write(tmp_path / "nan.onnx", proto))


def test_the_parameter_limit_applies_to_onnx_files(tmp_path):
    with pytest.raises(ModelLoadError, match="max_parameters"):
        load_model(write(tmp_path / "big.onnx", matmul_graph()), max_parameters=10)



@pytest.mark.parametrize("rewrite", [fuse_conv_bn, lambda model: remove_channels(model, 0.5)])
def test_rewrites_of_torch_layers_refuse_an_imported_graph_and_say_what_works(imported, rewrite):
    with pytest.raises(CompressionError, match="imported ONNX graph.*Prune and quantize its weights"):
        rewrite(imported["mlp"])
