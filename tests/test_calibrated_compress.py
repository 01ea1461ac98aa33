"""Specification of Wanda, SparseGPT, GPTQ and AWQ in ``compress``: recipes, the calibration pass,
the packed format (version 4) and where these methods are refused.

Structure is checked on few calibration rows and, on the transformers, on their first block
only (the pass stops once the last calibrated layer has run); quality on whole models.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import compression
from compression.calibrated.watch import watch_layers
from compression.calibration import calibration_fingerprint, calibration_inputs
from compression.calibration_pass import token_mask
from compression.errors import CompressionError, DataError, RecipeError
from compression.io.program import program_bytes
from compression.model import weights_fingerprint
from compression.packing import load_packed, save_packed
from compression.recipe import CalibrationSpec, Recipe
from compression.workflows.sweep import sweep

FEW = {"samples": 8, "seed": 0}
METHODS = {
    "wanda": {"prune": {"method": "wanda", "amount": 0.5}},
    "sparsegpt": {"prune": {"method": "sparsegpt", "amount": 0.5}},
    "gptq": {"quantize": {"scheme": "gptq", "bits": 4}},
    "awq": {"quantize": {"scheme": "awq", "bits": 4}},
}
# The transformers' first block only: what the pass does is the same in every block.
FIRST_BLOCK = {
    "mlp": [],
    "simplenet": [],
    "minilm": ["transformer.encoder.layer.[1-5].*"],
    "tinylm": ["model.layers.[1-3].*", "model.embed_tokens.weight"],  # and its LM head
}
_CACHE: dict[tuple[str, str], compression.CompressionResult] = {}


@pytest.fixture(scope="module")
def models() -> dict[str, compression.LoadedModel]:
    return {name: compression.load_model(name) for name in FIRST_BLOCK}


@pytest.fixture(scope="module")
def loaded_weights(models) -> dict[str, str]:
    """Each model's weights fingerprint as loaded, before any compression."""
    return {name: weights_fingerprint(model.module) for name, model in models.items()}


def recipe_for(model: str, method: str, calibration: dict = FEW) -> dict:
    return {**METHODS[method], "calibration": calibration, "exclude": FIRST_BLOCK[model]}


def compressed(models: dict, model: str, method: str) -> compression.CompressionResult:
    if (model, method) not in _CACHE:
        _CACHE[model, method] = compression.compress(models[model], recipe_for(model, method))
    return _CACHE[model, method]


def reloaded(result: compression.CompressionResult, tmp_path: Path) -> tuple[dict, dict]:
    path = tmp_path / "model.packed"
    save_packed(result.packed, path)
    return load_packed(path)


CASES = [(model, method) for model in FIRST_BLOCK for method in METHODS]


# --- the recipe ----------------------------------------------------------------------------


def test_wanda_compares_within_rows_unless_told() -> None:
    assert Recipe.from_dict({"prune": {"method": "wanda", "amount": 0.5}}).prune.scope == "row"


def test_a_recipe_of_these_methods_gets_the_calibration_defaults_in_its_json() -> None:
    recipe = Recipe.from_dict({"quantize": {"scheme": "gptq", "bits": 4}})
    assert json.loads(recipe.to_json())["calibration"] == {"samples": 128, "seed": 0}


def test_an_override_that_uses_one_brings_the_calibration_defaults_too() -> None:
    recipe = Recipe.from_dict({"prune": {"amount": 0.5}, "overrides": {"fc1.*": {"prune": {"method": "sparsegpt"}}}})
    assert recipe.calibration is not None and recipe.specs_for("fc1.weight")[0].method == "sparsegpt"


def test_recipes_without_these_methods_keep_their_json() -> None:
    text = '{"prune": {"amount": 0.5, "method": "magnitude", "scope": "layer"}, "quantize": {"bits": 4, "granularity": "per_channel", "scheme": "linear", "symmetric": true}}'
    assert Recipe.from_json(text).to_json() == text


def test_act_order_is_written_for_gptq_only() -> None:
    gptq = Recipe.from_dict({"quantize": {"scheme": "gptq", "act_order": True, "granularity": "per_group", "group_size": 32}})
    awq = Recipe.from_dict({"quantize": {"scheme": "awq", "act_order": True}})
    assert gptq.to_dict()["quantize"]["act_order"] is True and "act_order" not in awq.to_dict()["quantize"]


@pytest.mark.parametrize(("section", "message"), [
    ({"prune": {"method": "wanda"}}, "prune.method 'wanda' needs an amount"),
    ({"prune": {"method": "wanda", "threshold": 0.1}}, "not a threshold"),
    ({"prune": {"method": "sparsegpt", "amount": 0.5, "n": 2, "m": 4}}, "either an amount or both n and m"),
    ({"prune": {"method": "sparsegpt", "amount": 0.5, "scope": "global"}}, "prune.scope must be one of 'layer' for method 'sparsegpt'"),
    ({"prune": {"method": "magnitude", "amount": 0.5, "scope": "row"}}, "prune.scope must be one of 'layer', 'global'"),
    ({"quantize": {"scheme": "gptq", "bits": 1}}, "quantize.bits must be an integer between 2 and 16"),
    ({"quantize": {"scheme": "awq", "granularity": "per_tensor"}}, "quantize.granularity for 'awq' must be"),
    ({"quantize": {"scheme": "gptq", "act_order": "yes"}}, "quantize.act_order must be true or false"),
])
def test_a_bad_field_is_refused_in_one_line(section: dict, message: str) -> None:
    with pytest.raises(RecipeError, match=message) as error:
        Recipe.from_dict(section)
    assert "\n" not in str(error.value)


# --- each method on each model ---------------------------------------------------------------


@pytest.mark.parametrize(("model", "method"), CASES)
def test_each_method_compresses_each_model_and_says_so(models, model: str, method: str) -> None:
    result = compressed(models, model, method)
    assert result.report.layers and {layer.method for layer in result.report.layers} == {method}


@pytest.mark.parametrize(("model", "method"), CASES)
def test_the_given_model_is_never_changed(models, loaded_weights, model: str, method: str) -> None:
    compressed(models, model, method)
    assert weights_fingerprint(models[model].module) == loaded_weights[model]


@pytest.mark.parametrize(("model", "method"), CASES)
def test_the_packed_file_records_the_calibration_rows(models, model: str, method: str, tmp_path: Path) -> None:
    _, index = reloaded(compressed(models, model, method), tmp_path)
    rows = calibration_inputs(models[model], Recipe.from_dict(recipe_for(model, method)).calibration)
    assert index["version"] == 4
    assert index["calibration"]["fingerprint"] == calibration_fingerprint(rows)
    assert (index["calibration"]["samples"], index["calibration"]["seed"], index["calibration"]["rows"]) == (8, 0, 8)


@pytest.mark.parametrize(("model", "method"), CASES)
def test_the_packed_file_loads_bit_for_bit_and_has_the_reported_size(models, model: str, method: str, tmp_path: Path) -> None:
    result = compressed(models, model, method)
    state, _ = reloaded(result, tmp_path)
    assert result.report.file_bytes == len(result.packed.to_bytes())
    for name, tensor in result.module.state_dict().items():
        assert torch.equal(state[name], tensor), name


def test_padding_tokens_never_reach_a_layers_inputs(models) -> None:
    minilm = models["minilm"]
    rows = calibration_inputs(minilm, CalibrationSpec(samples=4))
    name = "transformer.encoder.layer.0.attention.self.query.weight"
    seen: dict[str, int] = {}
    watch_layers(minilm.module, rows, {name: minilm.module.get_parameter(name)},
                 lambda layer, inputs: seen.setdefault(layer, inputs.shape[0]), token_mask(minilm, rows))
    assert seen[name] == int(rows[1].sum()) < rows[1].numel()


def test_pruning_methods_prune_the_amount_asked(models) -> None:
    for method in ("wanda", "sparsegpt"):
        for layer in compressed(models, "mlp", method).report.layers:
            assert layer.sparsity == pytest.approx(0.5, abs=0.01)


def test_the_same_seed_gives_the_same_weights_and_another_seed_others(models) -> None:
    recipe = {"prune": {"method": "sparsegpt", "amount": 0.5}, "calibration": {"samples": 16, "seed": 1}}
    first, again = (compression.compress(models["mlp"], recipe).module.state_dict() for _ in range(2))
    other = compression.compress(models["mlp"], {**recipe, "calibration": {"samples": 16, "seed": 2}})
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not torch.equal(first["fc1.weight"], other.module.state_dict()["fc1.weight"])


def test_wanda_global_scope_makes_one_cut_across_layers(models) -> None:
    result = compression.compress(models["mlp"], {"prune": {"method": "wanda", "amount": 0.5, "scope": "global"},
                                                  "calibration": FEW})
    layers = result.report.layers
    assert result.report.sparsity == pytest.approx(0.5, abs=1e-3)
    assert len({layer.threshold for layer in layers}) == 1 and len({round(layer.sparsity, 3) for layer in layers}) > 1


def test_gptq_keeps_what_sparsegpt_pruned(models) -> None:
    result = compression.compress(models["mlp"], {"prune": {"method": "sparsegpt", "amount": 0.5},
                                                  "quantize": {"scheme": "gptq", "bits": 4, "symmetric": False},
                                                  "calibration": FEW})
    assert all(layer.sparsity >= 0.5 and layer.method == "sparsegpt + gptq" for layer in result.report.layers)


def test_wanda_combines_with_round_to_nearest_and_gptq_with_act_order(models, tmp_path: Path) -> None:
    recipe = {"prune": {"method": "wanda", "n": 2, "m": 4}, "quantize": {"scheme": "linear", "bits": 4},
              "overrides": {"fc2.*": {"prune": {"method": "magnitude", "amount": 0.3},
                                      "quantize": {"scheme": "gptq", "act_order": True, "granularity": "per_group",
                                                   "group_size": 16}}},
              "calibration": FEW}
    result = compression.compress(models["mlp"], recipe)
    state, index = reloaded(result, tmp_path)
    assert [layer.method for layer in result.report.layers] == ["wanda + linear", "magnitude + gptq", "wanda + linear"]
    assert "fc2.weight::group_index" in result.packed.tensors()
    assert all(torch.equal(state[name], tensor) for name, tensor in result.module.state_dict().items())


# --- older files, other formats ---------------------------------------------------------------


@pytest.mark.parametrize(("model", "recipe", "version"), [
    ("mlp", {"prune": {"amount": 0.5}, "quantize": {"bits": 4}}, 1),
    ("tinylm", {"quantize": {"bits": 8}, "exclude": ["model.layers.*"]}, 3),  # its LM head is tied
])
def test_files_without_calibration_keep_their_older_version_and_load(models, model, recipe, version, tmp_path: Path) -> None:
    result = compression.compress(models[model], recipe)
    state, index = reloaded(result, tmp_path)
    assert index["version"] == version and "calibration" not in index
    assert all(torch.equal(state[name], tensor) for name, tensor in result.module.state_dict().items())


def test_a_version_2_file_still_loads(tmp_path: Path) -> None:
    module = torch.nn.Sequential(torch.nn.ConvTranspose2d(3, 4, 2))  # output channels on axis 1
    result = compression.compress(module, {"quantize": {"bits": 4}})
    state, index = reloaded(result, tmp_path)
    assert index["version"] == 2 and torch.equal(state["0.weight"], result.module[0].weight)


def test_a_torchscript_model_is_refused_in_one_line(models, tmp_path: Path) -> None:
    path = tmp_path / "mlp.pt"
    torch.jit.save(torch.jit.script(models["mlp"].module), str(path))
    with pytest.raises(CompressionError, match=r"^gptq must watch each layer run on calibration rows, .*TorchScript") as error:
        compression.compress(compression.load_model(str(path)), METHODS["gptq"])
    assert "\n" not in str(error.value)


def test_an_onnx_model_is_refused_in_one_line(models, tmp_path: Path) -> None:
    path = tmp_path / "mlp.onnx"
    path.write_bytes(compression.export_onnx(models["mlp"], models["mlp"].module))
    with pytest.raises(CompressionError, match=r"^wanda must watch each layer run .*onnxruntime") as error:
        compression.compress(compression.load_model(str(path)), METHODS["wanda"])
    assert "\n" not in str(error.value)


def test_a_module_without_calibration_data_says_how_to_give_some() -> None:
    with pytest.raises(DataError, match="has no calibration data"):
        compression.compress(torch.nn.Linear(4, 4), METHODS["wanda"])


def test_a_layer_type_these_methods_cannot_read_is_refused_in_one_line() -> None:
    with pytest.raises(CompressionError, match=r"'0\.weight_ih_l0' is a LSTM's: exclude it"):
        compression.compress(torch.nn.Sequential(torch.nn.LSTM(4, 4)), METHODS["gptq"])


def test_a_pt2_program_with_a_static_batch_is_calibrated_in_rounds(models, tmp_path: Path) -> None:
    simplenet = models["simplenet"]
    program = tmp_path / "simplenet.pt2"
    program.write_bytes(program_bytes(simplenet.module, simplenet))  # exported at batch 2
    data = tmp_path / "digits.npz"
    np.savez(data, x=simplenet.evaluation.inputs[0][:60].numpy(), y=simplenet.evaluation.labels[:60].numpy())
    loaded = compression.load_model(str(program), data=str(data))
    result = compression.compress(loaded, {**METHODS["gptq"], "calibration": {"samples": 5}})
    state, index = reloaded(result, tmp_path)
    assert [layer.method for layer in result.report.layers] == ["gptq"] * 3 and index["calibration"]["rows"] == 5
    assert all(torch.equal(state[name], tensor) for name, tensor in result.module.state_dict().items())


# --- the LM head --------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["gptq", "awq"])
def test_gptq_and_awq_leave_the_lm_head_in_float(models, scheme: str) -> None:
    result = compression.compress(models["tinylm"], {"quantize": {"scheme": scheme, "bits": 4}, "calibration": FEW,
                                                     "exclude": ["model.layers.*"]})
    head = result.report.layer("model.embed_tokens.weight")  # tied to lm_head.weight
    assert (head.scheme, head.method, result.report.calibration) == ("fp32", "none", None)


def test_a_pattern_naming_the_lm_head_asks_for_it(models) -> None:
    result = compression.compress(models["tinylm"], {"quantize": {"scheme": "gptq", "bits": 4}, "calibration": FEW,
                                                     "exclude": ["model.layers.*"], "include": ["lm_head.weight"]})
    assert result.report.layer("model.embed_tokens.weight").method == "gptq"


def test_a_pattern_matching_every_layer_does_not_ask_for_the_lm_head(models) -> None:
    result = compression.compress(models["tinylm"], {"quantize": {"scheme": "gptq", "bits": 4}, "calibration": FEW,
                                                     "exclude": ["model.layers.[1-3].*"],
                                                     "overrides": {"*": {"quantize": {"bits": 3}}}})
    assert result.report.layer("model.embed_tokens.weight").method == "none"


# --- better than without data ------------------------------------------------------------------


def test_gptq_beats_round_to_nearest_on_the_small_lm_at_3_bits(models) -> None:
    # The first two of its four blocks, the LM head in float for both (as GPTQ leaves it).
    kept = {"exclude": ["model.layers.[23].*", "model.embed_tokens.weight"]}
    gptq = compression.compress(models["tinylm"], {"quantize": {"scheme": "gptq", "bits": 3},
                                                   "calibration": {"samples": 16, "seed": 0}, **kept})
    rtn = compression.compress(models["tinylm"], {"quantize": {"scheme": "linear", "bits": 3}, **kept})
    perplexity = {name: compression.evaluate(models["tinylm"], result.module, samples=64).value
                  for name, result in (("gptq", gptq), ("rtn", rtn))}
    assert perplexity["gptq"] < perplexity["rtn"]  # measured: 103.5 and 105.6 (102.4 unquantized)


def test_wanda_at_half_beats_magnitude_on_minilm(models) -> None:
    minilm, first_half = models["minilm"], {"exclude": ["transformer.encoder.layer.[3-5].*"]}
    wanda = compression.compress(minilm, {**METHODS["wanda"], "calibration": {"samples": 16, "seed": 0}, **first_half})
    magnitude = compression.compress(minilm, {"prune": {"method": "magnitude", "amount": 0.5}, **first_half})
    fidelity = {name: compression.evaluate(minilm, result.module, samples=32).value
                for name, result in (("wanda", wanda), ("magnitude", magnitude))}
    assert fidelity["wanda"] > fidelity["magnitude"] + 0.03  # measured: 0.953 and 0.899


# --- workflows and the command line ---------------------------------------------------------


def test_the_sweep_takes_gptq_and_awq(models) -> None:
    frame = sweep(models["mlp"], amounts=[0.0], bits=[4], schemes=["gptq", "awq"],
                  base={"calibration": FEW})
    assert sorted(frame["scheme"]) == ["awq", "gptq"] and (frame["value"] > 0.9).all()


def test_the_cli_applies_a_calibrated_recipe_and_says_the_method(capsys, tmp_path: Path) -> None:
    from compression.cli import main

    recipe = json.dumps({**METHODS["wanda"], **METHODS["gptq"], "calibration": FEW})
    status = main(["apply", "mlp", "--recipe", recipe, "--out", str(tmp_path / "mlp.packed"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0 and {layer["method"] for layer in report["layers"]} == {"wanda + gptq"}
    assert report["calibration"]["rows"] == 8
