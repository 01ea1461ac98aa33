"""The command line: each command's output, files, and one-line refusals with exit status 2."""
from __future__ import annotations

import json
import os
import shlex

import pytest
import torch
from safetensors.torch import load_file

import compression
from compression.cli import EXIT_BAD_INPUT, main
from compression.cli.command_lines import command_line
from compression.cli.parser import build_parser
from compression.evaluation import model_outputs

RECIPE = '{"prune": {"method": "magnitude", "amount": 0.5}, "quantize": {"scheme": "linear", "bits": 4}}'


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_models_lists_the_zoo_as_json(capsys) -> None:
    status, out, _ = run(capsys, "models", "--json")
    assert status == 0
    assert [row["name"] for row in json.loads(out)] == ["simplenet", "mlp", "bn_cnn", "minilm", "tinylm"]


def test_info_gives_the_layers_and_the_baseline(capsys) -> None:
    status, out, _ = run(capsys, "info", "mlp", "--json")
    assert status == 0
    assert "fc1.weight" in out


def test_info_gives_the_macs_per_input_of_each_layer_and_in_total(capsys) -> None:
    status, out, _ = run(capsys, "info", "mlp", "--json")
    info = json.loads(out)
    assert status == 0 and info["macs"]["total"] == 64 * 256 + 256 * 128 + 128 * 10
    assert {row["name"]: row["macs"] for row in info["layers"]} == info["macs"]["layers"]
    status, out, _ = run(capsys, "info", "mlp")
    assert "MACs per input (64): 50,432" in out


def test_apply_writes_a_packed_file_of_the_reported_size(capsys, tmp_path) -> None:
    out_file, dense = tmp_path / "mlp.packed", tmp_path / "mlp.safetensors"
    status, out, _ = run(capsys, "apply", "mlp", "--recipe", RECIPE, "--out", str(out_file),
                         "--dense-out", str(dense), "--json")
    assert status == 0
    report = json.loads(out)
    assert os.path.getsize(out_file) == report["file_bytes"]
    assert set(load_file(dense)) >= {"fc1.weight", "fc2.weight"}


def test_apply_refuses_to_overwrite_without_force(capsys, tmp_path) -> None:
    target = tmp_path / "exists.packed"
    target.write_bytes(b"keep me")
    status, _, err = run(capsys, "apply", "mlp", "--recipe", RECIPE, "--out", str(target))
    assert status == EXIT_BAD_INPUT
    assert "--force" in err and err.count("\n") == 1
    assert target.read_bytes() == b"keep me"


def test_unpack_gives_back_the_dense_weights(capsys, tmp_path) -> None:
    packed, dense = tmp_path / "m.packed", tmp_path / "m.safetensors"
    run(capsys, "apply", "mlp", "--recipe", RECIPE, "--out", str(packed))
    status, out, _ = run(capsys, "unpack", str(packed), "--dense-out", str(dense))
    assert status == 0 and dense.exists()
    assert "tensors of model 'mlp'" in out


def test_eval_after_a_recipe_reports_the_metric_and_baseline(capsys) -> None:
    status, out, _ = run(capsys, "eval", "mlp", "--recipe", RECIPE, "--json")
    payload = json.loads(out)
    assert status == 0
    assert payload["metric"] == "accuracy" and payload["baseline_value"] == pytest.approx(0.9778, abs=1e-4)


def test_sweep_writes_a_csv_with_one_row_per_configuration(capsys, tmp_path) -> None:
    table = tmp_path / "sweep.csv"
    status, _, _ = run(capsys, "sweep", "mlp", "--amounts", "0,0.5", "--bits", "32,4", "--csv", str(table))
    assert status == 0
    assert len(table.read_text().strip().splitlines()) == 1 + 4


def test_agp_prints_each_step_and_compares_with_one_shot(capsys, tmp_path) -> None:
    packed = tmp_path / "agp.packed"
    status, out, _ = run(capsys, "agp", "mlp", "--final", "0.8", "--steps", "2", "--out", str(packed), "--json")
    payload = json.loads(out)
    assert status == 0
    assert [round(step["target"], 4) for step in payload["steps"]] == [0.0, 0.7, 0.8]
    assert payload["gradual"]["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert payload["one_shot"]["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert os.path.getsize(packed) == payload["gradual"]["file_bytes"]
    control = payload["one_shot_fine_tuned"]
    assert control["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert control["epochs"] == payload["gradual"]["epochs"] == 3 and payload["one_shot"]["epochs"] == 0
    assert control["file_bytes"] > 0 and 0 < control["value"] <= 1


def test_agp_prints_the_three_arms_after_the_steps(capsys) -> None:
    status, out, _ = run(capsys, "agp", "mlp", "--final", "0.5", "--steps", "1", "--epochs-per-step", "0")
    assert status == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[-3:]] == ["gradual", "one_shot", "one_shot_fine_tuned"]
    assert all("sparsity 0.500" in line and "accuracy" in line for line in lines[-3:])
    assert "magnitude pruning, global scope, to sparsity 0.500:" in out


def test_agp_prunes_by_the_recipes_method_and_scope_unless_scope_is_given(capsys) -> None:
    recipe = '{"prune": {"method": "magnitude", "amount": 0.3, "scope": "layer"}, "quantize": {"bits": 8}}'
    argv = ("agp", "mlp", "--final", "0.5", "--steps", "1", "--epochs-per-step", "0", "--recipe", recipe, "--json")
    _, out, _ = run(capsys, *argv)
    assert json.loads(out)["prune"] == {"method": "magnitude", "amount": 0.5, "scope": "layer"}
    _, out, _ = run(capsys, *argv, "--scope", "global")
    assert json.loads(out)["prune"]["scope"] == "global"


@pytest.mark.parametrize(
    "argv",
    [
        ("apply", "no-such-model", "--recipe", "{}", "--out", "x.packed"),
        ("apply", "mlp", "--recipe", '{"prune": {"amount": 2}}', "--out", "x.packed"),
        ("eval", "mlp", "--recipe", "missing.json"),
        ("agp", "mlp", "--final", "1.0"),
        ("agp", "minilm", "--steps", "1"),
        ("agp", "mlp", "--steps", "1", "--recipe", '{"prune": {"method": "n:m"}}'),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_2(capsys, tmp_path, monkeypatch, argv) -> None:
    monkeypatch.chdir(tmp_path)
    status, _, err = run(capsys, *argv)
    assert status == EXIT_BAD_INPUT
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "x.packed").exists()


def test_fuse_folds_bn_cnn_keeps_its_accuracy_and_writes_a_loadable_program(capsys, tmp_path) -> None:
    program = tmp_path / "fused.pt2"
    status, out, _ = run(capsys, "fuse", "bn_cnn", "--out", str(program), "--json")
    payload = json.loads(out)
    assert status == 0
    assert payload["pairs"] == [["conv1", "bn1"], ["conv2", "bn2"], ["conv3", "bn3"], ["conv4", "bn4"]]
    assert payload["max_output_difference"] < 1e-5
    assert payload["value_after"] == pytest.approx(payload["value_before"], abs=1e-4)
    status, out, _ = run(capsys, "info", str(program), "--json")
    assert status == 0 and "conv1.weight" in out


def test_sensitivity_writes_one_row_per_layer_and_level(capsys, tmp_path) -> None:
    table = tmp_path / "sensitivity.csv"
    status, out, _ = run(capsys, "sensitivity", "mlp", "--amounts", "0,0.9", "--bits", "4", "--csv", str(table))
    assert status == 0
    assert "fc1.weight" in out
    assert len(table.read_text().strip().splitlines()) == 1 + 3 * 3  # 3 layers × (2 amounts + 1 bit-width)


def test_search_returns_an_amount_within_the_tolerance(capsys) -> None:
    status, out, _ = run(capsys, "search", "mlp", "--tolerance", "0.01", "--json")
    payload = json.loads(out)
    assert status == 0
    assert payload["drop"] <= 0.01 and 0 < payload["amount"] < 1
    assert payload["recipe"]["prune"]["amount"] == payload["amount"]


def test_distill_trains_a_distilled_and_a_plain_student_smaller_than_the_teacher(capsys) -> None:
    status, out, _ = run(capsys, "distill", "mlp", "--width", "8", "--epochs", "2", "--json")
    payload = json.loads(out)
    assert status == 0
    assert payload["distilled"]["parameters"] == payload["labels_only"]["parameters"] < payload["teacher"]["parameters"]
    assert payload["config"]["alpha"] == 0.7


def test_export_writes_an_int8_onnx_file_scored_by_onnxruntime(capsys, tmp_path) -> None:
    target = tmp_path / "mlp.onnx"
    status, out, _ = run(capsys, "export", "mlp", "--recipe", RECIPE, "--int8", "dynamic", "--out", str(target), "--json")
    payload = json.loads(out)
    assert status == 0
    assert os.path.getsize(target) == payload["file_bytes"]
    assert payload["value"] > 0.9


def test_tflite_export_without_litert_torch_says_how_to_get_it(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "litert_torch", None)  # as if not installed
    status, _, err = run(capsys, "export", "mlp", "--format", "tflite", "--out", str(tmp_path / "m.tflite"))
    assert status == EXIT_BAD_INPUT
    assert "requirements-tflite.txt" in err and "litert-torch" in err
    assert not (tmp_path / "m.tflite").exists()


def test_shrink_writes_a_smaller_program_with_the_outputs_of_remove_channels(capsys, tmp_path) -> None:
    program = tmp_path / "simplenet-shrunk.pt2"
    status, out, _ = run(capsys, "shrink", "simplenet", "--amount", "0.5", "--out", str(program), "--json")
    payload = json.loads(out)
    assert status == 0
    assert payload["parameters_after"] < payload["parameters_before"]
    assert list(payload["skipped"]) == ["fc1"]  # the classifier's outputs are the model's
    assert payload["value"] == payload["masked_value"]
    assert os.path.getsize(program) == payload["file_bytes"]

    original = compression.load_model("simplenet")
    expected = compression.remove_channels(original, 0.5).module
    loaded = compression.load_model(str(program))
    inputs = tuple(tensor[:64] for tensor in original.evaluation.inputs)
    batch = loaded.evaluation.batch_size  # the program's static batch
    assert sum(parameter.numel() for parameter in loaded.module.parameters()) == payload["parameters_after"]
    torch.testing.assert_close(model_outputs(loaded.module, inputs, batch), model_outputs(expected, inputs, batch),
                               rtol=0, atol=1e-5)


def test_shrink_refuses_an_amount_outside_zero_to_one_in_one_line(capsys, tmp_path) -> None:
    target = tmp_path / "shrunk.pt2"
    status, _, err = run(capsys, "shrink", "mlp", "--amount", "1", "--out", str(target))
    assert status == EXIT_BAD_INPUT
    assert err.startswith("error: amount must be a number in [0, 1)") and err.count("\n") == 1
    assert not target.exists()


def test_shrink_refuses_to_overwrite_without_force(capsys, tmp_path) -> None:
    target = tmp_path / "exists.pt2"
    target.write_bytes(b"keep me")
    status, _, err = run(capsys, "shrink", "mlp", "--amount", "0.5", "--out", str(target))
    assert status == EXIT_BAD_INPUT
    assert "--force" in err and err.count("\n") == 1
    assert target.read_bytes() == b"keep me"


def test_shrink_refuses_a_program_whose_layers_are_graph_operations(capsys, tmp_path) -> None:
    source, target = tmp_path / "program.pt2", tmp_path / "shrunk.pt2"
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    torch.export.save(torch.export.export(module, (torch.randn(2, 4),)), source)
    status, _, err = run(capsys, "shrink", str(source), "--amount", "0.5", "--out", str(target))
    assert status == EXIT_BAD_INPUT
    assert "no Linear or Conv1d/2d/3d modules" in err and err.count("\n") == 1
    assert not target.exists()


# --- the command lines the dashboard shows -------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "arguments", "options"),
    [
        ("apply", ("mlp",), {"recipe": RECIPE, "out": "mlp.packed", "dense_out": "mlp-dense.safetensors",
                             "data": "path/to/data.npz"}),
        ("fuse", ("bn_cnn",), {"out": "bn_cnn.pt2"}),
        ("shrink", ("simplenet",), {"amount": 0.5, "norm": "l2", "scope": "global", "out": "smaller.pt2"}),
        ("export", ("mlp",), {"recipe": RECIPE, "int8": "qdq", "out": "mlp.onnx"}),
    ],
)
def test_a_command_line_parses_back_to_the_options_it_was_built_from(command, arguments, options) -> None:
    line = command_line(command, *arguments, **options)
    program, module, package, *argv = shlex.split(line)
    assert (program, module, package) == ("python", "-m", "compression")
    parsed = vars(build_parser().parse_args(argv))
    assert parsed["command"] == command and parsed["model"] == arguments[0]
    assert {name: parsed[name] for name in options} == options


def test_a_command_line_leaves_out_none_and_gives_switches_for_true() -> None:
    assert command_line("fuse", "bn_cnn", out=None, data=None, json=True) == "python -m compression fuse bn_cnn --json"


def test_a_command_line_refuses_an_option_the_command_does_not_declare() -> None:
    with pytest.raises(ValueError, match="`fuse` has no option 'dense_out'"):
        command_line("fuse", "bn_cnn", dense_out="x.safetensors")
    with pytest.raises(ValueError, match="command must be one of"):
        command_line("compress", "mlp")


def test_family_overrides_the_detected_one_and_info_names_it(capsys) -> None:
    status, out, _ = run(capsys, "info", "tinylm", "--json")
    assert status == 0 and (json.loads(out)["family"], json.loads(out)["metric"]) == ("causal_lm", "perplexity")
    status, out, _ = run(capsys, "info", "tinylm", "--family", "text_encoder", "--json")
    assert status == 0 and (json.loads(out)["family"], json.loads(out)["metric"]) == ("text_encoder", "cosine_similarity")


def test_an_unknown_family_is_refused_in_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as refused:  # argparse's refusal
        main(["info", "mlp", "--family", "detector"])
    err = capsys.readouterr().err
    assert refused.value.code == EXIT_BAD_INPUT and len(err.strip().splitlines()) == 1 and "detector" in err
