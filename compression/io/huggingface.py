"""Hugging Face model folders (``config.json`` plus weights, no custom code), loaded as the
family their config says (``compression.io.families``) and scored by that family's metric.

- text encoder: a sentence embedder (mean pooling, unit length) on the bundled corpus, cosine;
- causal LM: the model with its LM head, perplexity on held-out English text
  (``compression.io.text_data`` gives the protocol);
- seq2seq: teacher-forced perplexity on the same text;
- image classifier, and any other model taking images: generated images, top-1 agreement or
  the fidelity of every output (a folder of labelled images gives accuracy: ``--data``).
Without a tokenizer a text model is scored on seeded random token ids by agreement, and says so.

Weights are read from the files the safety scan inspected (one file, or the shards an index
names; ``compression.io.safety.huggingface``), and always as float32 (``dtype=torch.float32``:
transformers 5 would otherwise keep a checkpoint's own float16 or bfloat16); what the files
store is noted on the model (``LoadedModel.stored_weights``) and any upcast in its description.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compression.errors import ModelLoadError
from compression.io.checkpoints import stored_in_files, with_stored_weights
from compression.evaluation import model_outputs
from compression.io import families, text_data, zoo
from compression.io.evaluation_data import InputSpec
from compression.io.limits import check_parameter_count
from compression.io.program import LOAD_ERRORS
from compression.io.safety import inspect_hf_folder
from compression.metrics import AGREEMENT, COSINE, NEXT_TOKEN_AGREEMENT, OUTPUT_COSINE, PERPLEXITY
from compression.model import EvaluationData, LoadedModel, module_layer_types

RANDOM_TEXT_LENGTH = 32
GENERATED_IMAGES = 16
DEFAULT_IMAGE_SIZE = 224
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "spiece.model", "vocab.json")
_OPTIONS = {"local_files_only": True, "trust_remote_code": False, "dtype": torch.float32}
_LOGIT_BYTES = 1 << 26  # logits of one batch at most (64 MiB): how many windows go together


def read_hf_folder(
    folder: Path, max_parameters: int, max_file_bytes: int, family: str | None = None
) -> tuple[LoadedModel, InputSpec]:
    """The folder's model as its family (detected unless given), refused over
    ``max_parameters`` before anything is loaded."""
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"folder {folder.name} is not a Hugging Face model folder: it has no config.json.")
    weights = inspect_hf_folder(folder, max_file_bytes=max_file_bytes)
    check_parameter_count(weights.minimum_parameters, max_parameters, folder.name, at_least=not weights.exact)
    stored = stored_in_files(weights.files, weights.reports)
    config = _config(folder)
    family = family or families.hf_family(config)
    model, spec = _BUILDERS[family](folder, config, weights.use_safetensors)
    return with_stored_weights(model, stored), spec


def _config(folder: Path) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(folder, **_OPTIONS)
    except (OSError, *LOAD_ERRORS) as error:
        raise ModelLoadError(f"{folder.name}: transformers could not read config.json ({_first_line(error)}).") from None


def _load(folder: Path, auto_class: str, use_safetensors: bool, **options: Any) -> nn.Module:
    """The model as ``auto_class`` in float32, from the weights format the scan inspected."""
    import transformers

    try:
        return getattr(transformers, auto_class).from_pretrained(
            folder, **_OPTIONS, use_safetensors=use_safetensors, **options).eval()
    except (OSError, *LOAD_ERRORS) as error:
        raise ModelLoadError(f"{folder.name}: transformers could not load it as {auto_class} ({_first_line(error)}).") from None


def _loaded(folder: Path, module: nn.Module, family: str, evaluation: EvaluationData | None,
            spec: InputSpec, description: str) -> tuple[LoadedModel, InputSpec]:
    model = LoadedModel(
        name=folder.name, format="huggingface", module=module, layer_types=module_layer_types(module),
        example_inputs=spec.example, evaluation=evaluation, description=description, family=family,
    )
    return model, spec


# --- text ----------------------------------------------------------------------------------


def _text_encoder(folder: Path, config: Any, use_safetensors: bool) -> tuple[LoadedModel, InputSpec]:
    """A sentence embedder (as MiniLM): the base model without a pooler, mean-pooled."""
    try:
        transformer = _load(folder, "AutoModel", use_safetensors, add_pooling_layer=False)
    except ModelLoadError:  # the class has no pooler option
        transformer = _load(folder, "AutoModel", use_safetensors)
    module = zoo.sentence_embedder(transformer).eval()
    vocab_size = getattr(config, "vocab_size", None)
    tokenizer = _tokenizer(folder)
    if tokenizer is not None:
        if tokenizer.pad_token is None:  # decoder tokenizers (GPT-2) have none
            tokenizer.pad_token = tokenizer.eos_token
        encoded = tokenizer(zoo.corpus_sentences(), padding=True, truncation=True,
                            max_length=zoo.TEXT_MAX_LENGTH, return_tensors="pt")
        inputs = (encoded["input_ids"].to(torch.int64), encoded["attention_mask"].to(torch.int64))
        source = "corpus sentences"
    else:
        if vocab_size is None:
            raise ModelLoadError(f"{folder.name} has neither a tokenizer nor a vocab_size in its config.json.")
        ids = text_data.random_token_ids(vocab_size, RANDOM_TEXT_LENGTH, 2 * zoo.TEXT_BATCH_SIZE)
        inputs, source = (ids, torch.ones_like(ids)), "seeded random token sequences (no tokenizer)"
    try:
        model_outputs(module, tuple(t[:2] for t in inputs), 2)
    except LOAD_ERRORS as error:
        raise ModelLoadError(
            f"{folder.name}: a {type(transformer).__name__} gives no token embeddings from (input_ids, "
            f"attention_mask) ({_first_line(error)}); pass --family to load it as another family."
        ) from None
    description = f"{len(inputs[0])} {source} (fidelity to the original embeddings)"
    evaluation = EvaluationData(inputs, None, COSINE, description, zoo.TEXT_BATCH_SIZE)
    spec = InputSpec(tuple(t[:2] for t in inputs), zoo.TEXT_BATCH_SIZE, COSINE, vocab_size)
    summary = f"{type(transformer).__name__} as a sentence embedder (mean pooling, unit length)"
    return _loaded(folder, module, families.TEXT_ENCODER, evaluation, spec, summary)


def _causal_lm(folder: Path, config: Any, use_safetensors: bool) -> tuple[LoadedModel, InputSpec]:
    """The model with its LM head; perplexity of each next token of the held-out text."""
    module = _load(folder, "AutoModelForCausalLM", use_safetensors)
    module.config.use_cache = False  # scoring needs no cache of past keys and values
    context = min(_max_positions(config) or text_data.MAX_CONTEXT, text_data.MAX_CONTEXT)
    tokenizer = _tokenizer(folder)
    if tokenizer is not None:
        input_ids = text_data.windows(text_data.encode(tokenizer, zoo.heldout_text()), context)
        labels, metric = text_data.next_token_targets(input_ids), PERPLEXITY
        description = (f"{len(input_ids)} windows of {context} tokens of held-out English text "
                       f"({zoo.HELDOUT_TEXT_SOURCE}), every next token scored")
    else:
        input_ids = text_data.random_token_ids(config.vocab_size, min(context, RANDOM_TEXT_LENGTH))
        labels, metric = None, NEXT_TOKEN_AGREEMENT
        description = f"{len(input_ids)} seeded random token sequences (no tokenizer): next-token agreement with the original"
    batch = _logit_batch(context, config.vocab_size)
    evaluation = EvaluationData((input_ids,), labels, metric, description, batch)
    spec = InputSpec((input_ids[:2],), batch, metric, config.vocab_size)
    return _loaded(folder, module, families.CAUSAL_LM, evaluation, spec,
                   f"{type(module).__name__} (causal LM, LM head included)")


def _seq2seq(folder: Path, config: Any, use_safetensors: bool) -> tuple[LoadedModel, InputSpec]:
    """Encoder-decoder: teacher-forced perplexity of each window's second half given its first."""
    module = _load(folder, "AutoModelForSeq2SeqLM", use_safetensors)
    module.config.use_cache = False
    start = getattr(config, "decoder_start_token_id", None)
    start = start if start is not None else (getattr(config, "pad_token_id", None) or 0)
    context = min(_max_positions(config) or text_data.MAX_CONTEXT, text_data.MAX_CONTEXT)
    tokenizer = _tokenizer(folder)
    if tokenizer is not None:
        ids = text_data.windows(text_data.encode(tokenizer, zoo.heldout_text()), context)
        source, decoder_inputs, target = text_data.teacher_forcing(ids, start)
        labels, metric = target, PERPLEXITY
        description = (f"{len(ids)} held-out English passages ({zoo.HELDOUT_TEXT_SOURCE}): the second half "
                       "of each, teacher-forced from its first half")
    else:
        ids = text_data.random_token_ids(config.vocab_size, 2 * RANDOM_TEXT_LENGTH)
        source, decoder_inputs, _ = text_data.teacher_forcing(ids, start)
        labels, metric = None, NEXT_TOKEN_AGREEMENT
        description = f"{len(ids)} seeded random token sequences (no tokenizer): next-token agreement with the original"
    inputs = (source, torch.ones_like(source), decoder_inputs)
    batch = _logit_batch(decoder_inputs.shape[1], config.vocab_size)
    evaluation = EvaluationData(inputs, labels, metric, description, batch)
    spec = InputSpec(tuple(t[:2] for t in inputs), batch, metric, config.vocab_size)
    return _loaded(folder, module, families.SEQ2SEQ, evaluation, spec,
                   f"{type(module).__name__} (encoder-decoder, teacher-forced)")


def _tokenizer(folder: Path):
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, **_OPTIONS)
    except (OSError, *LOAD_ERRORS) as error:
        raise ModelLoadError(
            f"{folder.name}: its tokenizer could not be loaded ({_first_line(error)}); remove the "
            "tokenizer files to score it on random token ids."
        ) from None


def _max_positions(config: Any) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 1:
            return value
    return None


def _logit_batch(length: int, vocab_size: int) -> int:
    return max(1, min(16, _LOGIT_BYTES // (4 * length * vocab_size)))


# --- images --------------------------------------------------------------------------------


def _image_model(folder: Path, config: Any, use_safetensors: bool, family: str) -> tuple[LoadedModel, InputSpec]:
    """An image classifier (its head included) or another image model, on generated images."""
    classifier = family == families.IMAGE_CLASSIFIER
    module = _load(folder, "AutoModelForImageClassification" if classifier else "AutoModel", use_safetensors)
    channels = getattr(config, "num_channels", None) or 3
    height, width = _image_size(folder, config)
    generator = torch.Generator().manual_seed(text_data.RANDOM_SEED)
    pixels = torch.randn(GENERATED_IMAGES, channels, height, width, generator=generator)
    metric = AGREEMENT if classifier else OUTPUT_COSINE
    what = "top-1 agreement with the original" if classifier else "fidelity of every output to the original"
    description = (f"{GENERATED_IMAGES} generated images ({channels}×{height}×{width}, seeded normal noise; "
                   f"no labelled images given): {what}")
    evaluation = EvaluationData((pixels,), None, metric, description, GENERATED_IMAGES)
    spec = InputSpec((pixels[:2],), GENERATED_IMAGES, metric)
    kind = "image classifier" if classifier else "model on images"
    return _loaded(folder, module, family, evaluation, spec, f"{type(module).__name__} ({kind})")


def _image_size(folder: Path, config: Any) -> tuple[int, int]:
    """From preprocessor_config.json, else the config's image_size, else 224."""
    preprocessor = folder / "preprocessor_config.json"
    if preprocessor.is_file():
        size = json.loads(preprocessor.read_text()).get("crop_size") or json.loads(preprocessor.read_text()).get("size")
        if isinstance(size, dict) and "height" in size:
            return int(size["height"]), int(size["width"])
        if isinstance(size, dict) and "shortest_edge" in size:
            return int(size["shortest_edge"]), int(size["shortest_edge"])
        if isinstance(size, int):
            return size, size
    size = getattr(config, "image_size", None)
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return int(size[0]), int(size[1])
    return (int(size), int(size)) if isinstance(size, int) else (DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE)


def _other(folder: Path, config: Any, use_safetensors: bool) -> tuple[LoadedModel, InputSpec]:
    if getattr(config, "vocab_size", None) is not None:
        return _text_encoder(folder, config, use_safetensors)
    return _image_model(folder, config, use_safetensors, families.OTHER)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


_BUILDERS = {
    families.TEXT_ENCODER: _text_encoder,
    families.CAUSAL_LM: _causal_lm,
    families.SEQ2SEQ: _seq2seq,
    families.IMAGE_CLASSIFIER: functools.partial(_image_model, family=families.IMAGE_CLASSIFIER),
    families.CLASSIFIER: functools.partial(_image_model, family=families.IMAGE_CLASSIFIER),
    families.OTHER: _other,
}
