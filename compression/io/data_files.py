"""A user's evaluation data file, by kind, for the loaded model: what ``--data`` and
``load_model(source, data=...)`` take.

- ``.npz``: arrays, one per input (``compression.io.evaluation_data``), for any model; a
  quarter of its rows, chosen by their content, calibrate instead of being evaluated
  (``compression.io.calibration_sources``);
- ``.txt`` (one document per line) or ``.jsonl`` (a ``text`` field per line): for text models
  with a tokenizer, scored by their family's protocol (``compression.io.text_data``): perplexity
  for causal LMs and seq2seq models, embedding fidelity on the lines as sentences for encoders;
- a folder or a ``.zip`` of PNG/JPEG images in class subfolders: for image classifiers
  (Hugging Face ones, and graphs whose input spec gives channels, height and width), accuracy
  on the labels the folders name (``compression.io.image_files``, ``compression.io.image_data``).

Data a model cannot take is refused in one line that names the model's family and what to give.
Text and image files leave the model's own calibration data (bundled text) as it is.

>>> load_model("tinylm", "notes.txt").evaluation.metric  # doctest: +SKIP
'perplexity'
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from compression.display_text import DisplayText
from compression.errors import DataError
from compression.evaluation import model_outputs
from compression.io import families
from compression.io.calibration_sources import split_off_calibration
from compression.io.evaluation_data import InputSpec, evaluation_from_npz
from compression.io.image_data import ImageProtocol, class_indices
from compression.io.image_files import is_image_collection, read_labelled_images
from compression.io.text_files import is_text_file, read_documents
from compression.metrics import ACCURACY
from compression.model import CalibrationData, EvaluationData, LoadedModel

MAX_IMAGES = 256  # labelled images scored at most, taken in turn from each class
TEXT_FAMILIES = (families.CAUSAL_LM, families.SEQ2SEQ, families.TEXT_ENCODER)
_RUN_ERRORS = (RuntimeError, ValueError, TypeError, IndexError, AssertionError)


def data_from_file(
    path: str | os.PathLike, model: LoadedModel, spec: InputSpec, *, max_file_bytes: int
) -> tuple[EvaluationData, CalibrationData | None]:
    """The evaluation data in ``path`` (kind told by its suffix, or a folder), checked against
    the model, and the calibration data that goes with it."""
    path = Path(path)
    if is_text_file(path):
        return _text_evaluation(path, model, spec, max_file_bytes), model.calibration
    if is_image_collection(path):
        return _image_evaluation(path, model, spec, max_file_bytes), model.calibration
    rows = evaluation_from_npz(path, model.module, spec, max_file_bytes=max_file_bytes, inputs=model.input_specs)
    return split_off_calibration(rows, path.name)


def _text_evaluation(path: Path, model: LoadedModel, spec: InputSpec, max_file_bytes: int) -> EvaluationData:
    if spec.text is None and model.family in TEXT_FAMILIES:
        raise DataError(
            f"{path.name} is text, but {model.name} has no tokenizer to turn it into token ids; add its "
            "tokenizer files (tokenizer.json, tokenizer_config.json) to the model folder, or give token ids in an .npz."
        )
    if spec.text is None:
        raise DataError(
            f"{path.name} is text, but {model.name} is a {model.family} model; text is for text models "
            f"({', '.join(TEXT_FAMILIES)}): {_what_to_give(model.family)}."
        )
    documents = read_documents(path, max_file_bytes=max_file_bytes)
    if model.family == families.TEXT_ENCODER:
        source = f"sentences from {path.name}"
    else:
        source = f"{path.name} ({len(documents)} documents joined by end-of-text tokens)" if len(documents) > 1 else path.name
    return spec.text(documents, source)


def _image_evaluation(path: Path, model: LoadedModel, spec: InputSpec, max_file_bytes: int) -> EvaluationData:
    protocol = spec.images or _graph_image_protocol(model)
    if protocol is None and model.family == families.IMAGE_CLASSIFIER:
        raise DataError(
            f"{path.name}: {model.name} records no input size (channels, height, width) to prepare images "
            "for; give them as an .npz (x shaped n×C×H×W, labels y)."
        )
    if protocol is None:
        raise DataError(
            f"{path.name} is taken as labelled images, but {model.name} is a {model.family} model; labelled "
            f"images are for image classifiers: {_what_to_give(model.family)}."
        )
    if protocol.channels not in (1, 3):
        raise DataError(
            f"{model.name} takes {protocol.channels}-channel images; PNG/JPEG folders give 1 (grayscale) or 3 "
            "(RGB): give the images as an .npz (x shaped n×C×H×W, labels y)."
        )
    images, total = read_labelled_images(path, max_file_bytes=max_file_bytes, limit=MAX_IMAGES)
    pixels = torch.stack([protocol.pixels(image.content, f"{path.name}: {image.name}") for image in images])
    if spec.example:
        pixels = pixels.to(spec.example[0].dtype)
    classes = _class_count(model, pixels[: spec.batch_size], spec.batch_size, path.name)
    indices = class_indices({image.label for image in images}, protocol.label_names, classes=classes, where=path.name)
    labels = torch.tensor([indices[image.label] for image in images], dtype=torch.int64)
    shape = "×".join(map(str, pixels.shape[1:]))
    what = f"labelled images from {path.name} ({len(indices)} classes, {shape} after preprocessing)"
    description = (DisplayText("labelled_images_of", f"{len(images)} of {total} {what}", count=len(images), total=total,
                               file=path.name, classes=len(indices), shape=shape) if total > len(images) else
                   DisplayText("labelled_images", f"{total} {what}", count=total, file=path.name, classes=len(indices),
                               shape=shape))
    return EvaluationData((pixels,), labels, ACCURACY, description, spec.batch_size)


def _graph_image_protocol(model: LoadedModel) -> ImageProtocol | None:
    """Default preprocessing for a graph image classifier whose one input spec is N×C×H×W."""
    if model.family != families.IMAGE_CLASSIFIER or len(model.input_specs) != 1:
        return None
    shape = model.input_specs[0].shape
    if len(shape) != 4 or any(size is None for size in shape[1:]):
        return None
    return ImageProtocol.for_input(shape[1], (shape[2], shape[3]))


def _class_count(model: LoadedModel, first_batch: torch.Tensor, batch_size: int, where: str) -> int:
    """How many classes the model scores, from its output on the first batch of images."""
    try:
        output = model_outputs(model.module, (first_batch,), batch_size)
    except _RUN_ERRORS as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"{where}: the model could not run on the images ({tuple(first_batch.shape[1:])}): {reason}") from None
    if output.ndim != 2 or output.shape[1] < 2:
        raise DataError(
            f"{where}: labelled images need a classifier giving scores shaped (n, classes); "
            f"{model.name} gives {tuple(output.shape)}."
        )
    return int(output.shape[1])


def _what_to_give(family: str | None) -> str:
    if family == families.IMAGE_CLASSIFIER:
        return "give a folder or .zip of images in class subfolders, or an .npz"
    if family in TEXT_FAMILIES:
        return "give a .txt or .jsonl file, or an .npz of token ids"
    return "give an .npz with one array per input"
