"""Specification of the sample causal LM: its texts, its split, its folder, its perplexity."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

import sample_models
from sample_models import corpus
from sample_models.lm_perplexity import perplexity, unigram_perplexity
from sample_models.lm_text import heldout_topics, sentences, training_topics
from sample_models.train_lm import (
    CONTEXT_LENGTH, EVALUATION_FILE, encode, model_config, train_tokenizer,
)

SLICE_TOKENS = 2048


@pytest.fixture(scope="module")
def evaluation() -> dict:
    return json.loads((sample_models.TINYLM_DIR / EVALUATION_FILE).read_text())


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(sample_models.TINYLM_DIR, local_files_only=True)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(sample_models.TINYLM_DIR, local_files_only=True)


def test_training_and_heldout_topics_are_disjoint_and_non_empty() -> None:
    assert training_topics() and heldout_topics()
    assert set(training_topics()).isdisjoint(heldout_topics())


def test_heldout_text_shares_no_sentence_with_the_training_text() -> None:
    heldout = sentences(sample_models.lm_heldout_text())
    assert heldout and heldout.isdisjoint(sentences(sample_models.lm_training_text()))


def test_lm_texts_contain_no_sentence_of_the_embedder_corpus() -> None:
    texts = sample_models.lm_training_text() + "\n" + sample_models.lm_heldout_text()
    assert not [sentence for sentence in corpus.sentences() if sentence in texts]


def test_split_and_texts_are_the_ones_the_model_was_trained_on(evaluation: dict) -> None:
    assert list(training_topics()) == evaluation["training_topics"]
    assert list(heldout_topics()) == evaluation["heldout_topics"]
    for text, name in ((sample_models.lm_training_text(), "training"),
                       (sample_models.lm_heldout_text(), "heldout")):
        assert hashlib.sha256(text.encode("utf-8")).hexdigest() == evaluation[f"{name}_text_sha256"]


def test_folder_loads_offline_as_a_llama_with_its_head_tied_to_the_embeddings(
    model: torch.nn.Module, evaluation: dict,
) -> None:
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert sum(p.numel() for p in model.parameters()) == evaluation["parameters"]
    assert model.config.max_position_embeddings == CONTEXT_LENGTH


def test_tokenizer_round_trips_text_without_adding_special_tokens(tokenizer) -> None:
    text = sample_models.lm_heldout_text()[:2000] + " naïve “quotes” — 3.11\n\ttab"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.eos_token_id not in ids
    assert tokenizer.decode(ids) == text


def test_rebuilt_tokenizer_and_config_are_byte_identical_to_the_committed_files(
    tmp_path: Path,
) -> None:
    rebuilt = train_tokenizer(sample_models.lm_training_text())
    rebuilt.save_pretrained(tmp_path)
    model_config(rebuilt).save_pretrained(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json"):
        committed = sample_models.TINYLM_DIR / name
        assert (tmp_path / name).read_bytes() == committed.read_bytes(), name


def test_heldout_perplexity_is_under_a_quarter_of_the_unigram_baseline(
    model: torch.nn.Module, tokenizer,
) -> None:
    heldout_ids = encode(tokenizer, sample_models.lm_heldout_text())[:SLICE_TOKENS]
    training_ids = encode(tokenizer, sample_models.lm_training_text())
    measured = perplexity(model, heldout_ids, CONTEXT_LENGTH)
    baseline = unigram_perplexity(training_ids, heldout_ids, len(tokenizer), CONTEXT_LENGTH)
    assert measured < baseline / 4
