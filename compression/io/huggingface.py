"""Hugging Face model folders (``config.json`` plus weights, no custom code), loaded as the
family their config says (``compression.io.families``) and scored by that family's metric.

- text encoder: a sentence embedder (mean pooling, unit length) on the bundled corpus, cosine;
- causal LM: the model with its LM head, perplexity on held-out English text
  (``compression.io.text_data`` gives the protocol);
- seq2seq: teacher-forced perplexity on the same text;
- image classifier, and any other model taking images: generated images, top-1 agreement or
  the fidelity of every output (a folder of labelled images gives accuracy: ``--data``).
Without a tokenizer a text model is scored on seeded random token ids by agreement, and says so.
Text models with a tokenizer calibrate on bundled text their evaluation never sees
(``compression.io.calibration_sources``); models scored on generated inputs have no calibration data.

Weights are read from the files the safety scan inspected (one file, or the shards an index
names; ``compression.io.safety.huggingface``), and always as float32 (``dtype=torch.float32``:
transformers 5 would otherwise keep a checkpoint's own float16 or bfloat16); what the files
store is noted on the model (``LoadedModel.stored_weights``) and any upcast in its description.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compression.display_text import DisplayText
from compression.errors import ModelLoadError
from compression.io.checkpoints import stored_in_files, with_stored_weights
from compression.evaluation import model_outputs
from compression.io import calibration_sources, families, text_data, zoo
from compression.io.evaluation_data import InputSpec
from compression.io.image_data import DEFAULT_IMAGE_SIZE, ImageProtocol
from compression.io.limits import check_parameter_count
from compression.io.program import LOAD_ERRORS
from compression.io.safety import inspect_hf_folder, read_safetensors_header
from compression.io.safety.limits import checked_size, read_json
from compression.metrics import AGREEMENT, COSINE, NEXT_TOKEN_AGREEMENT, OUTPUT_COSINE
from compression.model import CalibrationData, EvaluationData, LoadedModel, module_layer_types
from compression.model_inputs import EXAMPLE, Dimension, ModelInput

RANDOM_TEXT_LENGTH = 32
GENERATED_IMAGES = 16
_MAX_PREPROCESSOR_BYTES = 1024**2
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "spiece.model", "vocab.json")
_OPTIONS = {"local_files_only": True, "trust_remote_code": False, "dtype": torch.float32}


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
        reason = _shape_mismatch(folder, auto_class) if "mismatch" in str(error) else None
        raise ModelLoadError(
            f"{folder.name}: transformers could not load it as {auto_class} ({reason or _first_line(error)})."
        ) from None


def _shape_mismatch(folder: Path, auto_class: str) -> str | None:
    """The first weight whose stored shape differs from the one config.json gives it, said
    in a line (transformers prints its whole report and raises "look at the above report")."""
    import transformers

    config = _config(folder)
    with torch.device("meta"):
        expected = getattr(transformers, auto_class).from_config(config).state_dict()
    for file in sorted(folder.glob("*.safetensors")):
        for name, entry in read_safetensors_header(file).items():
            if name in expected and tuple(entry["shape"]) != tuple(expected[name].shape):
                return (f"{name} is {tuple(entry['shape'])} in {file.name} but {tuple(expected[name].shape)} by "
                        "config.json; the config does not fit the weights")
    return None


def _loaded(folder: Path, module: nn.Module, family: str, evaluation: EvaluationData,
            spec: InputSpec, description: str, inputs: tuple[str, ...],
            calibration: CalibrationData | None = None) -> tuple[LoadedModel, InputSpec]:
    model = LoadedModel(
        name=folder.name, format="huggingface", module=module, layer_types=module_layer_types(module),
        example_inputs=spec.example, evaluation=evaluation, description=description, family=family,
        input_specs=_input_specs(inputs, evaluation), calibration=calibration,
    )
    return model, spec


def _input_specs(names: tuple[str, ...], evaluation: EvaluationData) -> tuple[ModelInput, ...]:
    """The inputs the family builder feeds, named as transformers names them: token inputs are
    batch × sequence at the lengths used (the model takes others), images batch × C × H × W as
    the preprocessing fixes them."""
    specs = []
    for name, tensor in zip(names, evaluation.inputs):
        axis = "decoder_sequence" if name.startswith("decoder_") else "sequence"
        rest = tuple(Dimension(size) if tensor.is_floating_point() else Dimension(size, EXAMPLE, axis)
                     for size in tensor.shape[1:])
        dtype = str(tensor.dtype).removeprefix("torch.")
        specs.append(ModelInput(name, dtype, (Dimension(evaluation.batch_size, EXAMPLE, "batch"), *rest)))
    return tuple(specs)


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
    text = calibration = None
    if tokenizer is not None:
        tokenize = functools.partial(text_data.sentence_inputs, tokenizer, max_length=zoo.TEXT_MAX_LENGTH)
        text = functools.partial(text_data.sentence_evaluation, tokenize=tokenize, batch_size=zoo.TEXT_BATCH_SIZE)
        evaluation = text(zoo.corpus_sentences(), DisplayText("corpus_sentences", "corpus sentences"))
        calibration = calibration_sources.sentence_calibration(zoo.calibration_sentences(), tokenize)
    else:
        if vocab_size is None:
            raise ModelLoadError(f"{folder.name} has neither a tokenizer nor a vocab_size in its config.json.")
        ids = text_data.random_token_ids(vocab_size, RANDOM_TEXT_LENGTH, 2 * zoo.TEXT_BATCH_SIZE)
        description = DisplayText("random_tokens_fidelity", f"{len(ids)} seeded random token sequences (no tokenizer) "
                                  "(fidelity to the original embeddings)", count=len(ids))
        evaluation = EvaluationData((ids, torch.ones_like(ids)), None, COSINE, description, zoo.TEXT_BATCH_SIZE)
    try:
        model_outputs(module, tuple(t[:2] for t in evaluation.inputs), 2)
    except LOAD_ERRORS as error:
        raise ModelLoadError(
            f"{folder.name}: a {type(transformer).__name__} gives no token embeddings from (input_ids, "
            f"attention_mask) ({_first_line(error)}); pass --family to load it as another family."
        ) from None
    spec = InputSpec(tuple(t[:2] for t in evaluation.inputs), zoo.TEXT_BATCH_SIZE, COSINE, vocab_size, text=text)
    summary = DisplayText("hf_sentence_embedder", f"{type(transformer).__name__} as a sentence embedder (mean pooling, "
                          "unit length)", architecture=type(transformer).__name__)
    return _loaded(folder, module, families.TEXT_ENCODER, evaluation, spec, summary, ("input_ids", "attention_mask"),
                   calibration)


def _causal_lm(folder: Path, config: Any, use_safetensors: bool) -> tuple[LoadedModel, InputSpec]:
    """The model with its LM head; perplexity of each next token of the held-out text."""
    module = _load(folder, "AutoModelForCausalLM", use_safetensors)
    module.config.use_cache = False  # scoring needs no cache of past keys and values
    context = min(_max_positions(config) or text_data.MAX_CONTEXT, text_data.MAX_CONTEXT)
    tokenizer = _tokenizer(folder)
    text = calibration = None
    if tokenizer is not None:
        text = functools.partial(text_data.causal_lm_evaluation, tokenizer=tokenizer, context=context,
                                 vocab_size=config.vocab_size)
        evaluation = text([zoo.heldout_text()], _heldout_source())
        calibration = calibration_sources.causal_lm_calibration(
            zoo.training_text(), zoo.TRAINING_TEXT_SOURCE, tokenizer=tokenizer, context=context)
    else:
        input_ids = text_data.random_token_ids(config.vocab_size, min(context, RANDOM_TEXT_LENGTH))
        description = DisplayText("random_tokens_agreement", f"{len(input_ids)} seeded random token sequences (no "
                                  "tokenizer): next-token agreement with the original", count=len(input_ids))
        evaluation = EvaluationData((input_ids,), None, NEXT_TOKEN_AGREEMENT, description,
                                    text_data.logit_batch(context, config.vocab_size))
    spec = InputSpec((evaluation.inputs[0][:2],), evaluation.batch_size, evaluation.metric, config.vocab_size, text=text)
    return _loaded(folder, module, families.CAUSAL_LM, evaluation, spec,
                   DisplayText("hf_causal_lm", f"{type(module).__name__} (causal LM, LM head included)",
                               architecture=type(module).__name__), ("input_ids",), calibration)


def _seq2seq(folder: Path, config: Any, use_safetensors: bool) -> tuple[LoadedModel, InputSpec]:
    """Encoder-decoder: teacher-forced perplexity of each window's second half given its first."""
    module = _load(folder, "AutoModelForSeq2SeqLM", use_safetensors)
    module.config.use_cache = False
    start = getattr(config, "decoder_start_token_id", None)
    start = start if start is not None else (getattr(config, "pad_token_id", None) or 0)
    context = min(_max_positions(config) or text_data.MAX_CONTEXT, text_data.MAX_CONTEXT)
    tokenizer = _tokenizer(folder)
    text = calibration = None
    if tokenizer is not None:
        text = functools.partial(text_data.seq2seq_evaluation, tokenizer=tokenizer, context=context,
                                 vocab_size=config.vocab_size, start_token=start)
        evaluation = text([zoo.heldout_text()], _heldout_source())
        calibration = calibration_sources.seq2seq_calibration(
            zoo.training_text(), zoo.TRAINING_TEXT_SOURCE, tokenizer=tokenizer, context=context, start_token=start)
    else:
        ids = text_data.random_token_ids(config.vocab_size, 2 * RANDOM_TEXT_LENGTH)
        source, decoder_inputs, _ = text_data.teacher_forcing(ids, start)
        description = DisplayText("random_tokens_agreement", f"{len(ids)} seeded random token sequences (no "
                                  "tokenizer): next-token agreement with the original", count=len(ids))
        evaluation = EvaluationData((source, torch.ones_like(source), decoder_inputs), None, NEXT_TOKEN_AGREEMENT,
                                    description, text_data.logit_batch(decoder_inputs.shape[1], config.vocab_size))
    spec = InputSpec(tuple(t[:2] for t in evaluation.inputs), evaluation.batch_size, evaluation.metric,
                     config.vocab_size, text=text)
    return _loaded(folder, module, families.SEQ2SEQ, evaluation, spec,
                   DisplayText("hf_seq2seq", f"{type(module).__name__} (encoder-decoder, teacher-forced)",
                               architecture=type(module).__name__),
                   ("input_ids", "attention_mask", "decoder_input_ids"), calibration)


def _heldout_source() -> str:
    return DisplayText("heldout_english", f"held-out English text ({zoo.HELDOUT_TEXT_SOURCE})")


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


# --- images --------------------------------------------------------------------------------


def _image_model(folder: Path, config: Any, use_safetensors: bool, family: str) -> tuple[LoadedModel, InputSpec]:
    """An image classifier (its head included) or another image model, on generated images."""
    classifier = family == families.IMAGE_CLASSIFIER
    module = _load(folder, "AutoModelForImageClassification" if classifier else "AutoModel", use_safetensors)
    images = _image_protocol(folder, config)
    channels, (height, width) = images.channels, images.size
    generator = torch.Generator().manual_seed(text_data.RANDOM_SEED)
    pixels = torch.randn(GENERATED_IMAGES, channels, height, width, generator=generator)
    metric = AGREEMENT if classifier else OUTPUT_COSINE
    shape = f"{channels}×{height}×{width}"
    description = DisplayText(
        "generated_images_agreement" if classifier else "generated_images_fidelity",
        f"{GENERATED_IMAGES} generated images ({shape}, seeded normal noise; no labelled images given): "
        + ("top-1 agreement with the original" if classifier else "fidelity of every output to the original"),
        count=GENERATED_IMAGES, shape=shape)
    evaluation = EvaluationData((pixels,), None, metric, description, GENERATED_IMAGES)
    spec = InputSpec((pixels[:2],), GENERATED_IMAGES, metric, images=images if classifier else None)
    architecture = type(module).__name__
    summary = (DisplayText("hf_image_classifier", f"{architecture} (image classifier)", architecture=architecture)
               if classifier else DisplayText("hf_image_model", f"{architecture} (model on images)", architecture=architecture))
    return _loaded(folder, module, family, evaluation, spec, summary, ("pixel_values",))


def _image_protocol(folder: Path, config: Any) -> ImageProtocol:
    """The folder's preprocessing (preprocessor_config.json, else the config's image_size, else
    224) and its labels (the config's id2label)."""
    channels = getattr(config, "num_channels", None) or 3
    size = getattr(config, "image_size", None)
    if isinstance(size, (list, tuple)) and len(size) == 2:
        fallback = int(size[0]), int(size[1])
    else:
        fallback = (int(size), int(size)) if isinstance(size, int) else (DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE)
    id2label = getattr(config, "id2label", None) or {}
    labels = tuple(str(id2label[i]) for i in range(len(id2label))) if set(id2label) == set(range(len(id2label))) else ()
    preprocessor = folder / "preprocessor_config.json"
    if not preprocessor.is_file():
        return ImageProtocol.for_input(channels, fallback, labels)
    checked_size(preprocessor, _MAX_PREPROCESSOR_BYTES, "preprocessor_config.json")
    settings = read_json(preprocessor.read_bytes(), f"{folder.name}/preprocessor_config.json")
    return ImageProtocol.from_preprocessor_config(settings if isinstance(settings, dict) else {}, channels, fallback, labels)


def _other(folder: Path, config: Any, use_safetensors: bool) -> tuple[LoadedModel, InputSpec]:
    if getattr(config, "vocab_size", None) is not None:
        return _text_encoder(folder, config, use_safetensors)
    return _image_model(folder, config, use_safetensors, families.OTHER)


def _first_line(error: BaseException) -> str:
    """The first sentence of a library's message (they run over many lines), at most 200 characters."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    sentence = text.splitlines()[0].split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= 200 else sentence[:199] + "…"


_BUILDERS = {
    families.TEXT_ENCODER: _text_encoder,
    families.CAUSAL_LM: _causal_lm,
    families.SEQ2SEQ: _seq2seq,
    families.IMAGE_CLASSIFIER: functools.partial(_image_model, family=families.IMAGE_CLASSIFIER),
    families.CLASSIFIER: functools.partial(_image_model, family=families.IMAGE_CLASSIFIER),
    families.OTHER: _other,
}
