"""Hugging Face model folders (``config.json`` plus weights, no custom code) as sentence
embedders, evaluated on the bundled corpus through their own tokenizer, or on seeded random
token ids without one."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from compression.errors import ModelLoadError
from compression.evaluation import model_outputs
from compression.io import zoo
from compression.io.evaluation_data import InputSpec
from compression.io.limits import check_parameter_count
from compression.io.program import LOAD_ERRORS
from compression.io.safety import inspect_hf_folder
from compression.metrics import COSINE
from compression.model import EvaluationData, LoadedModel, module_layer_types

RANDOM_TEXT_LENGTH = 32


def read_hf_folder(folder: Path, max_parameters: int, max_file_bytes: int) -> tuple[LoadedModel, InputSpec]:
    """The folder's model as a sentence embedder, refused over ``max_parameters`` before loading."""
    if not (folder / "config.json").is_file():
        raise ModelLoadError(
            f"folder {folder.name} is not a Hugging Face model folder: it has no config.json."
        )
    minimum = inspect_hf_folder(folder, max_file_bytes=max_file_bytes)
    check_parameter_count(minimum, max_parameters, folder.name, at_least=True)
    transformer = _load_transformer(folder)
    module = zoo.sentence_embedder(transformer).eval()
    vocab_size = getattr(transformer.config, "vocab_size", None)
    inputs, source = _text_inputs(folder, vocab_size)
    try:
        model_outputs(module, tuple(t[:2] for t in inputs), 2)
    except LOAD_ERRORS as error:
        raise ModelLoadError(
            f"{folder.name}: a {type(transformer).__name__} does not give token embeddings from "
            f"(input_ids, attention_mask) ({error}); only encoder models are supported."
        ) from None
    description = f"{len(inputs[0])} {source} (fidelity to the original embeddings)"
    evaluation = EvaluationData(inputs, None, COSINE, description, zoo.TEXT_BATCH_SIZE)
    spec = InputSpec(tuple(t[:2] for t in inputs), zoo.TEXT_BATCH_SIZE, COSINE, vocab_size)
    model = LoadedModel(
        name=folder.name, format="huggingface", module=module,
        layer_types=module_layer_types(module), example_inputs=spec.example, evaluation=evaluation,
        description=f"{type(transformer).__name__} as a sentence embedder (mean pooling, unit length)",
    )
    return model, spec


def _load_transformer(folder: Path) -> nn.Module:
    """The folder's base model, without BERT-style poolers where the class allows.

    Mean-pooled embeddings never use the pooler; listing its weights as compressible would
    flatter every result (as in ``sample_models.minilm.load_embedder``).
    """
    from transformers import AutoModel

    options = {"local_files_only": True, "trust_remote_code": False}
    try:
        try:
            return AutoModel.from_pretrained(folder, add_pooling_layer=False, **options)
        except TypeError:  # the class has no pooler option
            return AutoModel.from_pretrained(folder, **options)
    except (OSError, *LOAD_ERRORS) as error:
        raise ModelLoadError(f"transformers could not load {folder.name} ({error}).") from None


def _text_inputs(folder: Path, vocab_size: int | None) -> tuple[tuple[torch.Tensor, torch.Tensor], str]:
    """Corpus sentences through the folder's tokenizer, or seeded random token ids without one."""
    if any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")):
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
            if tokenizer.pad_token is None:  # decoder tokenizers (GPT-2) have none
                tokenizer.pad_token = tokenizer.eos_token
            encoded = tokenizer(
                zoo.corpus_sentences(), padding=True, truncation=True, max_length=zoo.TEXT_MAX_LENGTH,
                return_tensors="pt",
            )
        except (OSError, *LOAD_ERRORS) as error:
            raise ModelLoadError(
                f"{folder.name}: its tokenizer could not be loaded or used ({error}); without "
                "tokenizer files the model is evaluated on random token ids."
            ) from None
        inputs = (encoded["input_ids"].to(torch.int64), encoded["attention_mask"].to(torch.int64))
        return inputs, "corpus sentences"
    if vocab_size is None:
        raise ModelLoadError(f"{folder.name} has neither a tokenizer nor a vocab_size in its config.json.")
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, vocab_size, (2 * zoo.TEXT_BATCH_SIZE, RANDOM_TEXT_LENGTH), generator=generator)
    return (input_ids, torch.ones_like(input_ids)), "seeded random token sequences (no tokenizer)"
