"""Calibration data: the rows methods that look at data (Wanda, SparseGPT, GPTQ, AWQ) see never
overlap the rows a model is evaluated on; a recipe's ``calibration`` section draws them
deterministically; the bundled calibration corpus; the recipe section itself."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import compression
from compression.calibration import calibration_fingerprint, calibration_inputs
from compression.errors import DataError, RecipeError
from compression.io.calibration_sources import calibration_rows
from compression.io.zoo import zoo_names
from compression.model import LoadedModel
from compression.recipe import CalibrationSpec, Recipe
from sample_models import build_corpus, corpus
from tests.tiny_models import save_tiny_model

DEFAULT = CalibrationSpec()
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def zoo() -> dict[str, LoadedModel]:
    return {name: compression.load_model(name) for name in zoo_names()}


def row_keys(inputs: tuple[torch.Tensor, ...]) -> list[bytes]:
    """Each row as bytes; a text encoder's rows (input_ids, attention_mask) without padding,
    since the evaluation and the calibration corpus are padded to different lengths."""
    if len(inputs) == 2 and not inputs[0].is_floating_point() and set(inputs[1].unique().tolist()) <= {0, 1}:
        ids, mask = inputs
        return [row[keep.bool()].numpy().tobytes() for row, keep in zip(ids, mask)]
    flat = [tensor.reshape(len(tensor), -1) for tensor in inputs]
    return [b"".join(tensor[index].numpy().tobytes() for tensor in flat) for index in range(len(inputs[0]))]


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    """A .pt2 program: scored on seeded random inputs, so it has no calibration data of its own."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("pt2") / "linear.pt2"
    torch.export.save(torch.export.export(nn.Linear(4, 3).eval(), (torch.randn(2, 4),)), path)
    return path


# --- never the evaluation rows -------------------------------------------------------------


@pytest.mark.parametrize("name", ["simplenet", "mlp", "bn_cnn", "minilm", "tinylm"])
def test_no_calibration_row_of_a_zoo_model_is_an_evaluation_row(zoo, name: str) -> None:
    model = zoo[name]
    calibration = set(row_keys(model.calibration.inputs))
    assert len(calibration) > 0
    assert calibration.isdisjoint(row_keys(model.evaluation.inputs))


def test_every_zoo_model_has_calibration_data(zoo) -> None:
    assert all(zoo[name].calibration is not None for name in zoo_names())


def test_digits_models_calibrate_on_their_training_split(zoo) -> None:
    for name in ("simplenet", "mlp", "bn_cnn"):
        model = zoo[name]
        assert torch.equal(model.calibration.inputs[0], model.training.inputs)
        assert "training" in model.calibration.description


def test_the_sample_lm_calibrates_on_windows_of_its_training_text_as_long_as_its_evaluation_windows(zoo) -> None:
    model = zoo["tinylm"]
    (windows,) = model.calibration.inputs
    assert windows.shape[1] == model.evaluation.inputs[0].shape[1] == 128
    assert len(windows) > len(model.evaluation.inputs[0])
    assert "training text" in model.calibration.description


def test_no_run_of_32_tokens_of_the_sample_lms_calibration_is_in_its_evaluation(zoo) -> None:
    # Shorter runs do recur (16 tokens: phrases of the reference such as "the same as"); whole
    # passages never do, since no sentence of 6 words or more is in both texts.
    model, run = zoo["tinylm"], 32
    evaluated = {tuple(row[i : i + run].tolist()) for row in model.evaluation.inputs[0] for i in range(len(row) - run + 1)}
    assert not any(
        tuple(row[i : i + run].tolist()) in evaluated for row in model.calibration.inputs[0] for i in range(len(row) - run + 1)
    )


def test_the_text_embedder_calibrates_on_the_calibration_corpus_tokenized_like_its_evaluation(zoo) -> None:
    model = zoo["minilm"]
    ids, mask = model.calibration.inputs
    assert len(ids) == len(corpus.calibration_sentences())
    assert ids.dtype == model.evaluation.inputs[0].dtype and mask.dtype == model.evaluation.inputs[1].dtype
    assert ids.shape[1] <= 64 and bool((ids[:, 0] == model.evaluation.inputs[0][0, 0]).all())  # [CLS] first


@pytest.mark.parametrize("name", ["gpt2", "t5"])
def test_a_hugging_face_text_model_with_a_tokenizer_calibrates_on_the_training_text(tmp_path, name: str) -> None:
    model = compression.load_model(save_tiny_model(name, tmp_path / name, tokenizer=True))
    rows = calibration_inputs(model, CalibrationSpec(samples=8))
    assert [tuple(t.shape[1:]) for t in rows] == [tuple(t.shape[1:]) for t in model.evaluation.inputs]
    assert set(row_keys(model.calibration.inputs)).isdisjoint(row_keys(model.evaluation.inputs))


# --- a user's data file --------------------------------------------------------------------


def test_a_quarter_of_an_npzs_rows_calibrate_and_the_rest_are_evaluated(tmp_path) -> None:
    x = np.random.default_rng(0).normal(size=(40, 64)).astype(np.float32)
    model = compression.load_model("mlp", write_npz(tmp_path / "x.npz", x=x, y=np.arange(40) % 10))
    calibration, evaluated = row_keys(model.calibration.inputs), row_keys(model.evaluation.inputs)
    assert (len(calibration), len(evaluated)) == (10, 30)
    assert set(calibration).isdisjoint(evaluated)
    assert sorted(calibration + evaluated) == sorted(row_keys((torch.from_numpy(x),)))
    assert "30 evaluated, 10 set aside for calibration" in model.evaluation.description


def test_an_npzs_evaluated_rows_keep_their_file_order_and_labels(tmp_path) -> None:
    x = np.arange(40 * 64, dtype=np.float32).reshape(40, 64)
    model = compression.load_model("mlp", write_npz(tmp_path / "x.npz", x=x, y=np.arange(40) % 10))
    row_numbers = model.evaluation.inputs[0][:, 0].long() // 64
    assert torch.equal(row_numbers, row_numbers.sort().values)
    assert torch.equal(model.evaluation.labels, row_numbers % 10)


def test_the_split_depends_on_the_rows_not_on_their_order(tmp_path) -> None:
    x = np.random.default_rng(1).normal(size=(40, 64)).astype(np.float32)
    shuffled = x[np.random.default_rng(2).permutation(40)]
    first = compression.load_model("mlp", write_npz(tmp_path / "a.npz", x=x))
    second = compression.load_model("mlp", write_npz(tmp_path / "b.npz", x=shuffled))
    assert set(row_keys(first.calibration.inputs)) == set(row_keys(second.calibration.inputs))


def test_identical_rows_stay_together_on_the_evaluated_side() -> None:
    rows = torch.cat([torch.zeros(6, 3), torch.arange(6.0).reshape(6, 1).expand(6, 3) + 1])
    calibrating = calibration_rows((rows,))
    assert not calibrating[:6].any() or calibrating[:6].all()
    assert not calibration_rows((torch.zeros(8, 3),)).any()


def test_an_npz_of_fewer_than_four_rows_calibrates_nothing_and_says_what_to_give(tmp_path) -> None:
    model = compression.load_model("mlp", write_npz(tmp_path / "x.npz", x=np.ones((3, 64), np.float32)))
    assert model.evaluation.size == 3 and model.calibration is None
    with pytest.raises(DataError, match=r"no calibration data .*--data x\.npz") as caught:
        calibration_inputs(model, DEFAULT)
    assert "\n" not in str(caught.value)


def test_a_text_file_leaves_the_models_own_calibration_data(zoo, tmp_path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("A short note about compression.\nAnother line of plain English text.\n")
    model = compression.load_model("minilm", notes)
    assert model.calibration.description == zoo["minilm"].calibration.description


def test_a_program_scored_on_random_inputs_has_no_calibration_data(program) -> None:
    model = compression.load_model(program)
    with pytest.raises(DataError, match=r"linear\.pt2 has no calibration data \(its evaluation inputs are .*random.*--data x\.npz"):
        calibration_inputs(model, DEFAULT)


def test_a_program_given_an_npz_calibrates_on_a_quarter_of_it(program, tmp_path) -> None:
    data = write_npz(tmp_path / "x.npz", x=np.random.default_rng(3).normal(size=(20, 4)).astype(np.float32))
    model = compression.load_model(program, data)
    assert (model.evaluation.size, model.calibration.size) == (15, 5)


def test_a_bare_module_has_no_calibration_data() -> None:
    bare = LoadedModel("bare", "module", nn.Linear(2, 2), {}, (), None)
    with pytest.raises(DataError, match="bare has no calibration data"):
        calibration_inputs(bare, DEFAULT)


# --- the draw ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["simplenet", "mlp", "bn_cnn", "minilm", "tinylm"])
def test_the_sample_count_is_honoured(zoo, name: str) -> None:
    rows = calibration_inputs(zoo[name], CalibrationSpec(samples=37, seed=5))
    assert {len(tensor) for tensor in rows} == {37}
    assert set(row_keys(rows)) <= set(row_keys(zoo[name].calibration.inputs))


def test_the_same_seed_gives_the_same_rows_on_a_fresh_load(zoo) -> None:
    spec = CalibrationSpec(samples=64, seed=7)
    for name in ("mlp", "tinylm"):
        again = calibration_inputs(compression.load_model(name), spec)
        assert calibration_fingerprint(again) == calibration_fingerprint(calibration_inputs(zoo[name], spec))


@pytest.mark.parametrize("name", ["mlp", "minilm", "tinylm"])
def test_another_seed_draws_other_rows(zoo, name: str) -> None:
    first, second = (calibration_inputs(zoo[name], CalibrationSpec(samples=32, seed=seed)) for seed in (0, 1))
    assert calibration_fingerprint(first) != calibration_fingerprint(second)
    assert set(row_keys(first)) != set(row_keys(second))


def test_rows_are_drawn_without_repeats_in_source_order(zoo) -> None:
    pool = zoo["mlp"].calibration.inputs[0]
    (rows,) = calibration_inputs(zoo["mlp"], CalibrationSpec(samples=200, seed=3))
    positions = [int((pool == row).all(dim=1).nonzero()[0]) for row in rows]
    assert positions == sorted(set(positions))


def test_asking_for_more_rows_than_there_are_gives_all_of_them_whatever_the_seed(zoo) -> None:
    model = zoo["mlp"]
    available = model.calibration.size
    assert available == 1347
    rows = [calibration_inputs(model, CalibrationSpec(samples=4096, seed=seed)) for seed in (0, 9)]
    assert len(rows[0][0]) == available
    assert calibration_fingerprint(rows[0]) == calibration_fingerprint(rows[1])


def test_the_fingerprint_is_16_hex_digits_that_change_with_any_value() -> None:
    rows = (torch.arange(12.0).reshape(4, 3), torch.ones(4, 3, dtype=torch.int64))
    fingerprint = calibration_fingerprint(rows)
    assert len(fingerprint) == 16 and int(fingerprint, 16) >= 0
    changed = (rows[0].clone(), rows[1])
    changed[0][3, 2] += 1
    assert calibration_fingerprint(changed) != fingerprint
    assert calibration_fingerprint((rows[0].to(torch.float64), rows[1])) != fingerprint


# --- the bundled calibration corpus --------------------------------------------------------


def test_the_calibration_corpus_holds_at_least_1024_distinct_sentences_none_in_the_evaluation_corpus() -> None:
    sentences = corpus.calibration_sentences()
    assert len(sentences) >= 1024 and len(set(sentences)) == len(sentences)
    assert set(sentences).isdisjoint(corpus.sentences())
    assert len(corpus.sentences()) == 512
    assert all(build_corpus.is_prose(sentence) for sentence in sentences)


def test_the_builder_rewrites_both_committed_corpora_exactly() -> None:
    # In a fresh process, as `python -m sample_models.build_corpus` runs: libraries imported
    # by other tests add documented functions to standard-library modules.
    program = (
        "import json; from sample_models import build_corpus as b; e = b.select(b.candidate_sentences()); "
        "print(json.dumps([e, b.select(b.calibration_candidates(set(e)), b.CALIBRATION_SIZE)]))"
    )
    built = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, check=True)
    evaluation, calibration = json.loads(built.stdout)
    assert evaluation == corpus.sentences()
    assert calibration == corpus.calibration_sentences()


# --- the recipe section --------------------------------------------------------------------


def test_a_calibration_section_round_trips_through_canonical_json() -> None:
    recipe = Recipe.from_dict({"prune": {"amount": 0.5}, "calibration": {"seed": 3, "samples": 64}})
    assert recipe.calibration == CalibrationSpec(samples=64, seed=3)
    text = recipe.to_json()
    assert json.loads(text)["calibration"] == {"samples": 64, "seed": 3}
    assert Recipe.from_json(text).to_json() == text


def test_an_empty_calibration_section_spells_out_its_defaults() -> None:
    assert Recipe.from_dict({"calibration": {}}).to_json() == '{"calibration": {"samples": 128, "seed": 0}}'


def test_calibration_alone_compresses_nothing() -> None:
    assert Recipe.from_dict({"calibration": {"samples": 8}}).is_empty
    assert Recipe.from_dict({"calibration": None}).to_json() == "{}"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"samples": 0}, "calibration.samples must be an integer between 1 and 4096; got 0."),
        ({"samples": 5000}, "calibration.samples must be an integer between 1 and 4096; got 5000."),
        ({"samples": "128"}, "calibration.samples must be an integer between 1 and 4096; got '128'."),
        ({"samples": 12.0}, "calibration.samples must be an integer between 1 and 4096; got 12.0."),
        ({"samples": True}, "calibration.samples must be an integer between 1 and 4096; got True."),
        ({"seed": -1}, "calibration.seed must be an integer between 0 and 4294967295; got -1."),
        ({"seed": 2**32}, "calibration.seed must be an integer between 0 and 4294967295; got 4294967296."),
        ({"sample": 64}, "calibration has unknown key(s) 'sample'; allowed keys: samples, seed."),
        (128, "calibration must be a JSON object; got 128."),
    ],
)
def test_a_bad_calibration_section_is_refused_in_one_line_naming_the_field(section, message: str) -> None:
    with pytest.raises(RecipeError) as caught:
        Recipe.from_dict({"calibration": section})
    assert str(caught.value) == message


def test_the_top_level_keys_named_on_a_typo_include_calibration() -> None:
    with pytest.raises(RecipeError, match="allowed keys: prune, quantize, overrides, include, exclude, calibration"):
        Recipe.from_dict({"calibrate": {}})


@pytest.mark.parametrize(
    ("recipe", "canonical"),
    [
        ({}, "{}"),
        ({"prune": {"method": "magnitude", "amount": 0.5, "scope": "global"}},
         '{"prune": {"amount": 0.5, "method": "magnitude", "scope": "global"}}'),
        ({"quantize": {"bits": 4}},
         '{"quantize": {"bits": 4, "granularity": "per_channel", "scheme": "linear", "symmetric": true}}'),
        ({"prune": {"method": "n:m"}, "quantize": {"scheme": "float", "format": "fp8_e4m3"},
          "overrides": {"fc1.*": {"quantize": {"bits": 8}}, "conv1.weight": {"prune": None}},
          "include": ["emb.weight"], "exclude": ["*.bias"]},
         '{"exclude": ["*.bias"], "include": ["emb.weight"], "overrides": {"fc1.*": {"quantize": {"bits": 8}}, '
         '"conv1.weight": {"prune": null}}, "prune": {"m": 4, "method": "n:m", "n": 2}, '
         '"quantize": {"format": "fp8_e4m3", "scheme": "float"}}'),
    ],
)
def test_recipes_without_calibration_keep_their_json_byte_for_byte(recipe: dict, canonical: str) -> None:
    assert Recipe.from_dict(recipe).to_json() == canonical
