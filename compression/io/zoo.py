"""The sample zoo as the engine sees it: the only engine module that imports ``sample_models``.

The zoo fills the fields of a ``LoadedModel`` (held-out evaluation data, training rows,
calibration rows, a description) so that nothing else in the engine branches on a sample model's name. Loaders
ask it three questions: is this a zoo name, which zoo architecture has these weights, and is
this imported graph a digits model in disguise (then it is scored on the digits).
``sample_models`` is imported when first needed: scikit-learn (the digits) and transformers
(MiniLM) are slow to import.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from compression.display_text import DisplayText
from compression.errors import ModelLoadError
from compression.io import families, text_data
from compression.io.calibration_sources import sentence_calibration
from compression.io.evaluation_data import InputSpec
from compression.metrics import ACCURACY, COSINE
from compression.model import CalibrationData, EvaluationData, LoadedModel, TrainingData, module_layer_types

TEXT_EMBEDDER = "minilm"
TEXT_BATCH_SIZE = 128
TEXT_MAX_LENGTH = 64
HELDOUT_TEXT_SOURCE = "topics of CPython's language reference that the sample LM was not trained on"
TRAINING_TEXT_SOURCE = DisplayText("lm_training_text",
                                   "the sample LM's training text (the language reference topics not held out)")


def zoo_names() -> tuple[str, ...]:
    """The sample models' names, in the order the CLI and the dashboard list them."""
    import sample_models

    return sample_models.ZOO_NAMES


def digits_models() -> tuple[str, ...]:
    """The zoo models trained on the digits (they carry labelled training rows)."""
    import sample_models

    return sample_models.DIGITS_MODELS


def describe(name: str) -> str:
    """One line on a zoo model, with its held-out metric."""
    import sample_models

    return sample_models.describe(name)


def model_folder(name: str) -> Path | None:
    """The Hugging Face folder of a zoo model that is one (the causal LM), else None."""
    import sample_models

    return sample_models.FOLDER_MODELS.get(name)


def heldout_text() -> str:
    """English text no sample model was trained on: language models are scored on it."""
    import sample_models

    return sample_models.lm_heldout_text()


def training_text() -> str:
    """The sample LM's training text, which shares no sentence with ``heldout_text``: language
    models calibrate on it."""
    import sample_models

    return sample_models.lm_training_text()


def zoo_model(name: str) -> tuple[LoadedModel, InputSpec]:
    """A zoo model with its committed weights and its evaluation and training data."""
    import sample_models

    return _zoo_model(name, sample_models.load_trained(name), "zoo", name)


def architecture_with_weights(
    state_dict: dict[str, torch.Tensor], source_format: str, where: str
) -> tuple[LoadedModel, InputSpec]:
    """The zoo architecture whose state_dict has exactly these keys and shapes, with these weights."""
    architecture, state_dict = _match_architecture(state_dict, where)
    module = _build(architecture)
    module.load_state_dict(state_dict)
    return _zoo_model(architecture, module, source_format, where)


def with_digits_data(model: LoadedModel, spec: InputSpec) -> LoadedModel:
    """An imported graph whose weights are a digits architecture's (names and shapes, as
    ``export_onnx`` writes them), scored on that architecture's held-out digits; any other
    model unchanged."""
    shapes = _shapes(model.module.state_dict())
    for architecture in digits_models():
        if shapes == _expected_shapes(architecture):
            evaluation, training, digits_spec = _digits_data(architecture)
            if digits_spec.example[0].shape[1:] == spec.example[0].shape[1:]:
                description = DisplayText(
                    "sample_weights", f"{model.description}; weights of the sample {architecture}, scored on its digits",
                    description=model.description, architecture=architecture,
                )
                return replace(model, evaluation=evaluation, training=training, calibration=_calibration(training),
                               description=description)
    return model


def sentence_embedder(transformer: nn.Module) -> nn.Module:
    """A Hugging Face encoder as a sentence embedder (mean pooling, unit length), as MiniLM is."""
    from sample_models.minilm import SentenceEmbedder

    return SentenceEmbedder(transformer)


def corpus_sentences() -> list[str]:
    """The bundled English sentences text models are evaluated on."""
    from sample_models import corpus

    return corpus.sentences()


def calibration_sentences() -> list[str]:
    """The bundled English sentences text encoders calibrate on: none is a ``corpus_sentences`` one."""
    from sample_models import corpus

    return corpus.calibration_sentences()


# --- building the LoadedModel ---------------------------------------------------------------


def _build(architecture: str) -> nn.Module:
    import sample_models

    if architecture == TEXT_EMBEDDER:
        from sample_models.minilm import load_embedder

        return load_embedder()
    return sample_models.build_architecture(architecture)


def _zoo_model(
    architecture: str, module: nn.Module, source_format: str, name: str
) -> tuple[LoadedModel, InputSpec]:
    """A zoo architecture with the zoo's data: digits accuracy (training rows calibrate) or corpus
    fidelity (the calibration corpus calibrates)."""
    training = None
    if architecture == TEXT_EMBEDDER:
        from sample_models import minilm  # transformers only when a text model is asked for

        tokenize = functools.partial(minilm.tokenize, max_length=TEXT_MAX_LENGTH)
        text = functools.partial(text_data.sentence_evaluation, tokenize=tokenize, batch_size=TEXT_BATCH_SIZE)
        evaluation = text(corpus_sentences(), DisplayText("corpus_sentences", "corpus sentences"))
        vocab_size = module.transformer.config.vocab_size
        spec = InputSpec(tuple(t[:2] for t in evaluation.inputs), TEXT_BATCH_SIZE, COSINE, vocab_size, text=text)
        calibration = sentence_calibration(calibration_sentences(), tokenize)
    else:
        evaluation, training, spec = _digits_data(architecture)
        calibration = _calibration(training)
    if architecture == TEXT_EMBEDDER:
        family = families.TEXT_ENCODER
    else:
        family = families.IMAGE_CLASSIFIER if spec.example[0].ndim == 4 else families.CLASSIFIER
    if source_format == "zoo":
        description = DisplayText("zoo_model", f"zoo model {architecture} with its trained weights", model=architecture)
    else:
        description = DisplayText("zoo_architecture", f"zoo architecture {architecture} with the weights in {name}",
                                  architecture=architecture, file=name)
    model = LoadedModel(
        name=name, format=source_format, module=module.eval(),
        layer_types=module_layer_types(module), example_inputs=spec.example,
        evaluation=evaluation, description=description, architecture=architecture, training=training,
        calibration=calibration, family=family,
    )
    return model, spec


def _digits_data(architecture: str) -> tuple[EvaluationData, TrainingData, InputSpec]:
    """The held-out digits (with labels) and the training digits, shaped as the architecture takes them."""
    import sample_models

    split = sample_models.digits_split(architecture)
    description = DisplayText("heldout_digits", f"{len(split.y_test)} held-out digits (scikit-learn's test split) with labels",
                              count=len(split.y_test))
    evaluation = EvaluationData((split.x_test,), split.y_test, ACCURACY, description)
    training = TrainingData(split.x_train, split.y_train,
                            DisplayText("training_digits", f"{len(split.y_train)} training digits", count=len(split.y_train)))
    return evaluation, training, InputSpec((split.x_test[:2],))


def _calibration(training: TrainingData) -> CalibrationData:
    """A digits model calibrates on its training split, never on the held-out digits."""
    return CalibrationData(lambda: (training.inputs,), DisplayText(
        "digits_training_split", f"{training.description} (scikit-learn's training split)", data=training.description))


# --- which architecture --------------------------------------------------------------------


@functools.cache
def _expected_shapes(architecture: str) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of a zoo architecture's state_dict (MiniLM's read from the real embedder)."""
    if architecture == TEXT_EMBEDDER:
        return _shapes(_build(architecture).state_dict())
    with torch.device("meta"):
        return _shapes(_build(architecture).state_dict())


def _match_architecture(
    state_dict: dict[str, torch.Tensor], where: str
) -> tuple[str, dict[str, torch.Tensor]]:
    expected = {name: _expected_shapes(name) for name in zoo_names() if model_folder(name) is None}
    for name, shapes in expected.items():
        candidate = _as_embedder_state_dict(state_dict, shapes) if name == TEXT_EMBEDDER else state_dict
        if _shapes(candidate) == shapes:
            return name, candidate
    raise ModelLoadError(_no_match_message(_shapes(state_dict), expected, where))


def _as_embedder_state_dict(state_dict: dict[str, torch.Tensor], expected: dict) -> dict[str, torch.Tensor]:
    """A bare BertModel state_dict (as in MiniLM's own model.safetensors) under the embedder's names.

    BERT checkpoints also carry position_ids and a pooler, which the mean-pooling embedder has
    no use for.
    """
    if not all(k.startswith("transformer.") for k in state_dict):
        state_dict = {f"transformer.{k}": v for k, v in state_dict.items()}
    unused = ("transformer.pooler.", "transformer.embeddings.position_ids")
    return {k: v for k, v in state_dict.items() if k in expected or not k.startswith(unused)}


def _shapes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state_dict.items()}


def _no_match_message(shapes: dict[str, tuple], expected: dict[str, dict], where: str) -> str:
    """Why a state_dict is refused, in two lines at most: the closest architecture and one
    difference from it by example, never the list of tensors."""
    closest = max(expected, key=lambda name: len(shapes.keys() & expected[name].keys()))
    wanted = expected[closest]
    differences = {
        "reshaped": [f"{k} {shapes[k]} instead of {wanted[k]}" for k in sorted(shapes.keys() & wanted.keys())
                     if shapes[k] != wanted[k]],
        "missing": [f"{k} missing" for k in sorted(wanted.keys() - shapes.keys())],
        "unexpected": [f"{k} unexpected" for k in sorted(shapes.keys() - wanted.keys())],
    }
    if shapes.keys() & wanted.keys():
        counts = ", ".join(f"{len(items)} {label}" for label, items in differences.items() if items)
        closest_text = f"Closest is {closest!r}: {counts}, e.g. {next(i[0] for i in differences.values() if i)}."
    else:
        closest_text = f"No tensor name matches theirs (this file has e.g. {min(shapes, default='none')!r})."
    return (
        f"{where}: its {len(shapes)} tensors match no zoo architecture ({', '.join(expected)}). "
        f"{closest_text} Load a torch.export program (.pt2), a TorchScript file or a Hugging "
        "Face folder instead: they carry their own architecture."
    )
