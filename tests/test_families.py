"""Model families: Hugging Face folders built at test time from transformers configs (random
init, tiny) load as their family and are scored by its metric; the sample LM by perplexity."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import compression
import sample_models
from compression.io import families
from compression.metrics import COSINE, PERPLEXITY
from tests.tiny_models import ARCHITECTURES, HALF_AND_4_BIT, TOKENIZER_FILES, TOKENIZER_VOCAB, save_tiny_model

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    return {name: save_tiny_model(name, tmp_path_factory.mktemp(name)) for name in ARCHITECTURES}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_a_folder_loads_as_its_family_and_is_scored_by_its_metric(folders, name: str) -> None:
    _, _, family, metric = ARCHITECTURES[name]
    model = compression.load_model(folders[name])
    assert (model.family, model.evaluation.metric) == (family, metric)
    baseline = compression.evaluate(model)
    result = compression.compress(model, HALF_AND_4_BIT)
    scored = compression.evaluate(model, result.module)
    assert scored.metric == metric and scored.baseline_value == baseline.value
    assert result.report.sparsity == pytest.approx(0.5, abs=0.01)
    assert 0 < result.report.encoded_bytes < result.report.dense_fp32_bytes


@pytest.mark.parametrize("name", ["gpt2", "llama", "t5"])
def test_a_text_model_with_a_tokenizer_is_scored_by_perplexity_on_held_out_text(folders, tmp_path, name) -> None:
    folder = tmp_path / name
    shutil.copytree(folders[name], folder)
    for file in TOKENIZER_FILES:
        shutil.copy(sample_models.TINYLM_DIR / file, folder / file)
    model = compression.load_model(folder)
    assert model.evaluation.metric == PERPLEXITY and "held-out English" in model.evaluation.description
    baseline = compression.evaluate(model)
    # Random weights spread their guesses over the vocabulary: near-uniform perplexity.
    assert TOKENIZER_VOCAB / 4 < baseline.value < TOKENIZER_VOCAB * 4


def test_the_sample_lm_scores_its_recorded_held_out_perplexity() -> None:
    model = compression.load_model("tinylm")
    assert (model.family, model.format) == (families.CAUSAL_LM, "zoo")
    recorded = 117.43080505207715  # sample_models/weights/tinylm/evaluation.json
    baseline = compression.evaluate(model)
    assert baseline.value == pytest.approx(recorded, rel=1e-5)
    scored = compression.evaluate(model, compression.compress(model, HALF_AND_4_BIT).module)
    assert scored.value > baseline.value and scored.drop == pytest.approx(scored.value - baseline.value)
    assert 0 < scored.extras["next_token_agreement"] < 1


def test_family_given_overrides_the_detected_one(folders) -> None:
    model = compression.load_model(folders["gpt2"], family="text_encoder")
    assert (model.family, model.evaluation.metric) == (families.TEXT_ENCODER, COSINE)


def test_an_unknown_family_is_refused_with_the_known_ones() -> None:
    with pytest.raises(compression.ModelLoadError, match="family must be one of text_encoder, causal_lm"):
        compression.load_model("mlp", family="detector")


@pytest.mark.parametrize(
    "inputs, output, family",
    [
        ((torch.zeros(2, 3, 8, 8),), torch.zeros(2, 10), families.IMAGE_CLASSIFIER),
        ((torch.zeros(2, 64),), torch.zeros(2, 10), families.CLASSIFIER),
        ((torch.zeros(2, 7, dtype=torch.int64),), torch.zeros(2, 7, 30), families.CAUSAL_LM),
        ((torch.zeros(2, 3, 64, 64),), torch.zeros(2, 100, 85), families.OTHER),
        ((torch.zeros(2, 16000), torch.zeros(2, 64)), torch.zeros(2, 10), families.OTHER),
    ],
)
def test_a_graph_family_is_told_from_its_inputs_and_output(inputs, output, family) -> None:
    assert families.graph_family(inputs, output) == family


def test_a_head_tied_to_the_embeddings_is_one_tensor_listed_and_stored_once(tmp_path) -> None:
    model = compression.load_model("tinylm")
    assert model.module.lm_head.weight is model.module.model.embed_tokens.weight
    assert model.layer_types["model.embed_tokens.weight"] == "Linear" and "lm_head.weight" not in model.layer_types
    result = compression.compress(model, HALF_AND_4_BIT)
    state = model.module.state_dict()
    assert result.report.dense_fp32_bytes == 4 * sum(t.numel() for name, t in state.items() if name != "lm_head.weight")
    written = compression.save_packed(result, tmp_path / "tinylm.packed")
    state, index = compression.load_packed(tmp_path / "tinylm.packed")
    assert written == result.report.file_bytes and index["aliases"] == {"lm_head.weight": "model.embed_tokens.weight"}
    assert torch.equal(state["lm_head.weight"], result.module.lm_head.weight)


def test_weights_that_do_not_fit_the_config_are_refused_in_a_line_naming_one_tensor(folders, tmp_path) -> None:
    folder = tmp_path / "misfit"
    shutil.copytree(folders["llama"], folder)
    config = (folder / "config.json").read_text().replace('"intermediate_size": 64', '"intermediate_size": 96')
    (folder / "config.json").write_text(config)
    with pytest.raises(compression.ModelLoadError) as refused:
        compression.load_model(folder)
    message = str(refused.value)
    assert "mlp." in message and "by config.json" in message and "\n" not in message and len(message) < 300
