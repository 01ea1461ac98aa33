"""Input specs: each model input as its file records it, open sizes guessed or given, and models
whose inputs cannot be made still load, list their layers and compress (only scoring refuses)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from torch import nn

import compression
from compression.cli import EXIT_BAD_INPUT, main
from compression.errors import CompressionError, DataError, ModelLoadError
from compression.evaluation import model_outputs
from compression.io.input_specs import IMAGE_SIZES, parse_input_shape
from compression.io.onnx.runtime import quiet_tools
from compression.model_inputs import EXAMPLE, GIVEN, GUESSED, STATIC, batch_axes
from tests.input_graphs import fixed_area_graph, speech_graph

RECIPE = {"prune": {"method": "magnitude", "amount": 0.5}, "quantize": {"scheme": "linear", "bits": 4}}


class Detector(nn.Module):
    """Five stride-2 convolutions and an upsampled skip: H and W must be multiples of 32."""

    def __init__(self) -> None:
        super().__init__()
        widths = [(3, 8), (8, 8), (8, 16), (16, 16), (16, 16)]
        self.stem = nn.ModuleList(nn.Conv2d(i, o, 3, stride=2, padding=1) for i, o in widths)
        self.skip = nn.Conv2d(16, 16, 1)
        self.head = nn.Conv2d(16, 6, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = []
        for conv in self.stem:
            images = torch.relu(conv(images))
            features.append(images)
        upsampled = nn.functional.interpolate(features[-1], scale_factor=2.0)
        return self.head(upsampled + self.skip(features[-2]))


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> Path:
    """The detector exported with a dynamic batch and dynamic H, W (multiples of 32)."""
    torch.manual_seed(0)
    module = Detector().eval()
    dims = torch.export.Dim
    shapes = ({0: dims("batch"), 2: 32 * dims("h", max=40), 3: 32 * dims("w", max=40)},)
    path = tmp_path_factory.mktemp("detector") / "detector.onnx"
    with quiet_tools():
        program = torch.onnx.export(module, (torch.randn(2, 3, 64, 96),), dynamo=True, dynamic_shapes=shapes,
                                    input_names=["images"], verbose=False)
    program.save(str(path))
    return path


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("speech") / "speech.onnx"
    path.write_bytes(speech_graph().SerializeToString())
    return path


@pytest.fixture(scope="module")
def speech_data(speech) -> Path:
    rng = np.random.default_rng(1)
    path = speech.with_suffix(".npz")
    np.savez(path, audio=rng.normal(size=(40, 64)).astype(np.float32),
             state=rng.normal(size=(2, 40, 64)).astype(np.float32), sr=np.array(16000))
    return path


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# --- guessed sizes -------------------------------------------------------------------------


def test_a_detector_with_dynamic_height_and_width_loads_with_a_multiple_of_32_and_is_scored(detector) -> None:
    model = compression.load_model(detector)
    (images,) = model.input_specs
    batch, channels, height, width = images.dims
    assert (channels.size, channels.origin) == (3, STATIC)
    assert height.origin == width.origin == GUESSED
    assert height.size % 32 == 0 and width.size % 32 == 0 and height.size in IMAGE_SIZES
    assert model.evaluation.inputs[0].shape[1:] == (3, height.size, width.size)
    score = compression.evaluate(model)
    assert score.value == pytest.approx(score.baseline_value)


def test_large_rows_are_scored_in_a_small_batch(detector) -> None:
    model = compression.load_model(detector)
    assert model.evaluation.batch_size < 256
    assert model.input_specs[0].dims[0].size == model.evaluation.batch_size
    assert f"scored in batches of {model.evaluation.batch_size}" in model.description


def test_the_guessed_sizes_are_in_the_description_and_noted_on_standard_output(detector, capsys) -> None:
    model = compression.load_model(detector)
    assert "guessed input sizes: images" in model.description
    status, out, err = run(capsys, "eval", detector)
    assert status == 0 and err == ""
    assert out.startswith("note: guessed input sizes images") and "--input-shape" in out.splitlines()[0]


def test_an_input_shape_given_on_the_command_line_is_honoured(detector, capsys) -> None:
    status, out, err = run(capsys, "info", detector, "--input-shape", "images=1,3,320,320", "--json")
    assert status == 0, err
    info = json.loads(out)
    assert info["inputs"][0]["shape"] == [1, 3, 320, 320]
    assert info["inputs"][0]["dims"][2].endswith("=320 (given)")
    assert "baseline_value" in info


def test_an_input_shape_given_to_the_api_is_honoured_and_sets_the_batch(detector) -> None:
    model = compression.load_model(detector, input_shapes={"images": (1, 3, 320, 320)})
    assert [dim.origin for dim in model.input_specs[0].dims] == [GIVEN, STATIC, GIVEN, GIVEN]
    assert model.evaluation.batch_size == 1
    assert model.evaluation.inputs[0].shape[1:] == (3, 320, 320)
    assert compression.evaluate(model).value == pytest.approx(1.0)


def test_the_name_may_be_left_out_for_a_model_with_one_input(detector) -> None:
    model = compression.load_model(detector, input_shapes={None: (2, 3, 256, 256)})
    assert model.input_specs[0].shape == (2, 3, 256, 256)


def test_an_input_shape_that_contradicts_the_file_is_refused_in_one_line(detector) -> None:
    with pytest.raises(ModelLoadError, match=r"axis 1 of 'images' is fixed at 3") as refused:
        compression.load_model(detector, input_shapes={"images": (1, 4, 320, 320)})
    assert "\n" not in str(refused.value)
    with pytest.raises(ModelLoadError, match=r"does not take; its inputs: 'images'"):
        compression.load_model(detector, input_shapes={"pixels": (1, 3, 320, 320)})
    with pytest.raises(ModelLoadError, match=r"has 4 axes"):
        compression.load_model(detector, input_shapes={"images": (1, 3, 320)})


def test_sizes_the_graph_does_not_run_on_load_and_only_scoring_refuses_without_listing_weights(detector) -> None:
    model = compression.load_model(detector, input_shapes={"images": (1, 3, 330, 320)})
    assert model.evaluation is None and model.layer_types
    with pytest.raises(DataError) as refused:
        compression.evaluate(model)
    message = str(refused.value)
    assert len(message.splitlines()) <= 2
    assert "input 'images'" in message and "--input-shape images=N,3,N,N" in message
    assert "stem.0.weight" not in message and "head.bias" not in message


def test_a_size_no_candidate_fits_leaves_the_model_loadable_until_the_user_gives_one(tmp_path, capsys) -> None:
    path = tmp_path / "fixed_area.onnx"
    path.write_bytes(fixed_area_graph().SerializeToString())
    model = compression.load_model(path)
    assert model.evaluation is None and set(model.layer_types) == {"fc"}
    assert compression.compress(model, compression.Recipe.from_dict(RECIPE)).report.layers
    status, _, err = run(capsys, "eval", path)
    assert status == EXIT_BAD_INPUT
    assert len(err.strip().splitlines()) <= 2
    assert "input 'x'" in err and "--input-shape x=N,3,N,N" in err
    given = compression.load_model(path, input_shapes={"x": (4, 3, 11, 13)})
    assert compression.evaluate(given).value == pytest.approx(1.0)


def test_guessing_sizes_writes_nothing_on_standard_error(tmp_path, capfd) -> None:
    """Every failed try is an onnxruntime error that its own log would print."""
    path = tmp_path / "fixed_area.onnx"
    path.write_bytes(fixed_area_graph().SerializeToString())
    compression.load_model(path)
    assert capfd.readouterr().err == ""


# --- several inputs ------------------------------------------------------------------------


def test_a_graph_with_an_integer_scalar_input_loads_lists_its_layers_and_compresses(speech) -> None:
    model = compression.load_model(speech)
    assert [spec.name for spec in model.input_specs] == ["audio", "state", "sr"]
    assert [spec.batch_axis for spec in model.input_specs] == [0, 1, None]
    assert model.input_specs[2].problem and model.evaluation is None
    assert set(model.layer_types) == {"w", "s"}
    result = compression.compress(model, compression.Recipe.from_dict(RECIPE))
    assert {layer.name for layer in result.report.layers} == {"w", "s"}


def test_scoring_a_graph_with_an_integer_scalar_refuses_in_two_lines_naming_that_input(speech, capsys) -> None:
    status, out, err = run(capsys, "eval", speech)
    assert status == EXIT_BAD_INPUT
    lines = err.strip().splitlines()
    assert len(lines) <= 2
    assert "input 'sr'" in lines[0] and "int64" in lines[0]
    assert ".npz" in err and "'audio', 'state', 'sr'" in err


def test_info_needs_no_evaluation_inputs_and_shows_each_input(speech, capsys) -> None:
    status, out, err = run(capsys, "info", speech)
    assert status == 0 and err == ""
    assert "input audio: float32 [batch=" in out
    assert "input state: float32 [2, batch=" in out
    assert "input sr: int64 scalar: holds a value that cannot be guessed" in out


def test_an_npz_with_one_array_per_input_scores_the_graph_as_onnxruntime_runs_it(speech, speech_data) -> None:
    model = compression.load_model(speech, speech_data)
    arrays = dict(np.load(speech_data))
    session = onnxruntime.InferenceSession(speech.read_bytes(), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, arrays)
    assert (model.evaluation.size, model.calibration.size) == (30, 10)  # a quarter calibrates
    audio = torch.from_numpy(arrays["audio"])
    evaluated = [int((audio == row).all(dim=1).nonzero()) for row in model.evaluation.inputs[0]]
    outputs = model_outputs(model.module, model.evaluation.inputs, 16)
    assert np.allclose(outputs.numpy(), expected[evaluated], atol=1e-6)
    result = compression.compress(model, compression.Recipe.from_dict(RECIPE))
    score = compression.evaluate(model, result.module)
    assert score.baseline_value == pytest.approx(1.0) and 0 < score.value <= 1


def test_the_cli_scores_the_graph_with_the_npz(speech, speech_data, capsys) -> None:
    status, out, err = run(capsys, "eval", speech, "--data", speech_data, "--json")
    assert status == 0, err
    assert json.loads(out)["baseline_value"] == pytest.approx(1.0)


def test_an_npz_missing_an_input_is_refused_naming_it(speech, tmp_path) -> None:
    path = tmp_path / "audio_only.npz"
    np.savez(path, audio=np.zeros((4, 64), np.float32))
    with pytest.raises(DataError, match=r"no array for input\(s\) 'state', 'sr'"):
        compression.load_model(speech, path)


def test_an_npz_whose_inputs_disagree_on_the_samples_is_refused(speech, tmp_path) -> None:
    path = tmp_path / "uneven.npz"
    np.savez(path, audio=np.zeros((4, 64), np.float32), state=np.zeros((2, 3, 64), np.float32), sr=np.array(8000))
    with pytest.raises(DataError, match=r"different numbers of samples \(audio 4, state 3\)"):
        compression.load_model(speech, path)


def test_the_batch_axis_follows_the_name_the_graph_gives_it() -> None:
    assert batch_axes([("batch", 64), (2, "batch", 64), ()]) == (0, 1, None)
    assert batch_axes([(1, 4), (1, 8)]) == (0, 0)
    assert batch_axes([("n", 4), ("m", 8)]) == (0, 0)


# --- .pt2 and the argument -----------------------------------------------------------------


def test_a_program_with_dynamic_dims_shows_them(tmp_path, capsys) -> None:
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    dims = torch.export.Dim
    program = torch.export.export(module, (torch.randn(4, 3, 32, 32),),
                                  dynamic_shapes=({0: dims("batch"), 2: dims("height", min=4), 3: dims("width", min=4)},))
    path = tmp_path / "dynamic.pt2"
    torch.export.save(program, path)
    model = compression.load_model(path)
    (spec,) = model.input_specs
    assert [dim.origin for dim in spec.dims] == [EXAMPLE, STATIC, EXAMPLE, EXAMPLE]
    assert spec.shape == (4, 3, 32, 32)
    status, out, _ = run(capsys, "info", path)
    assert status == 0
    assert f"input {spec.name}: float32 [" in out and "=32 (example)" in out
    given = compression.load_model(path, input_shapes={spec.name: (2, 3, 48, 40)})
    assert given.evaluation.inputs[0].shape[1:] == (3, 48, 40)


def test_an_input_shape_for_a_model_with_its_own_inputs_is_refused() -> None:
    with pytest.raises(ModelLoadError, match=r"--input-shape sets the sizes an ONNX or \.pt2 file leaves open"):
        compression.load_model("mlp", input_shapes={None: (1, 64)})


@pytest.mark.parametrize("text", ["", "images=", "=1,3", "1,x", "images=1,0,3"])
def test_a_malformed_input_shape_is_refused(text) -> None:
    with pytest.raises(CompressionError, match="an input shape is NAME=sizes"):
        parse_input_shape(text)


def test_a_malformed_input_shape_on_the_command_line_exits_with_status_2(detector, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["info", str(detector), "--input-shape", "images=1,3,x"])
    assert exited.value.code == 2
    assert "an input shape is NAME=sizes" in capsys.readouterr().err


# --- TorchScript and Hugging Face folders ----------------------------------------------------


@pytest.fixture(scope="module")
def scripted(tmp_path_factory) -> Path:
    """A scripted classifier: it records no input shape."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)).eval()
    path = tmp_path_factory.mktemp("scripted") / "scripted.pt"
    torch.jit.save(torch.jit.script(module), path)
    return path


def test_torchscript_without_sizes_loads_unscored_and_scoring_asks_for_sizes_or_data(scripted, capsys) -> None:
    model = compression.load_model(scripted)
    assert model.evaluation is None and model.input_specs == ()
    status, _, err = run(capsys, "eval", scripted)
    assert status == EXIT_BAD_INPUT and err.count("\n") <= 2
    assert "--input-shape" in err and "--data x.npz" in err


def test_torchscript_with_an_input_shape_is_scored_on_random_inputs_of_those_sizes(scripted, capsys) -> None:
    model = compression.load_model(scripted, input_shapes={None: (1, 3, 32, 32)})
    (spec,) = model.input_specs
    assert (spec.name, spec.dtype, spec.shape) == ("input", "float32", (1, 3, 32, 32))
    assert {dim.origin for dim in spec.dims} == {GIVEN}
    assert model.example_inputs[0].shape == (1, 3, 32, 32) and model.evaluation.inputs[0].shape[1:] == (3, 32, 32)
    assert model.family == "image_classifier" and compression.evaluate(model).value == 1.0
    status, out, _ = run(capsys, "info", scripted, "--input-shape", "input=1,3,32,32")
    assert status == 0 and "input input: float32 [1 (given), 3 (given), 32 (given), 32 (given)]" in out
    with pytest.raises(ModelLoadError, match=r"names input 'images', which scripted\.pt does not take; .*'input'"):
        compression.load_model(scripted, input_shapes={"images": (1, 3, 32, 32)})


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    from tests.tiny_models import save_tiny_model

    root = tmp_path_factory.mktemp("folders")
    return {name: save_tiny_model(name, root / name) for name in ("bert", "vit")}


def test_a_folders_info_lists_the_inputs_its_family_feeds(folders, capsys) -> None:
    status, out, _ = run(capsys, "info", folders["bert"], "--json")
    assert status == 0
    inputs = {spec["name"]: spec for spec in json.loads(out)["inputs"]}
    assert list(inputs) == ["input_ids", "attention_mask"]
    assert inputs["input_ids"]["dtype"] == "int64" and len(inputs["input_ids"]["shape"]) == 2
    status, out, _ = run(capsys, "info", folders["vit"], "--json")
    ((name, dtype, shape),) = [(s["name"], s["dtype"], s["shape"]) for s in json.loads(out)["inputs"]]
    assert (name, dtype, shape[1:]) == ("pixel_values", "float32", [3, 32, 32])


def test_an_input_shape_for_a_folder_is_refused_in_one_line(folders, capsys) -> None:
    status, out, err = run(capsys, "info", folders["vit"], "--input-shape", "1,3,32,32")
    assert status == EXIT_BAD_INPUT and out == "" and err.count("\n") == 1
    assert "--input-shape sets the sizes an ONNX or .pt2 file leaves open" in err
