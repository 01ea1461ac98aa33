"""Every supported model source becomes one ``LoadedModel``: the dispatch.

Sources, told apart by content rather than extension (``compression.io.safety`` inspects every
file before anything deserialises it):

- a zoo name (``simplenet``, ``mlp``, ``bn_cnn``, ``minilm``), with its own evaluation data;
- a state_dict of a zoo architecture: ``.pt``/``.pth`` from ``torch.save`` or ``.safetensors``;
- files that carry their own architecture: torch.export programs (``.pt2``) and TorchScript;
- ONNX graphs, run by onnxruntime with their weights as parameters;
- a Hugging Face model folder (``config.json`` plus weights), as a sentence embedder.

>>> model = load_model("mlp")
>>> model.evaluation.metric, model.layer_types["fc1.weight"]
('accuracy', 'Linear')
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from compression.display_text import DisplayText
from compression.errors import CompressionError, ModelLoadError
from compression.evaluation import model_outputs
from compression.io import families, zoo
from compression.io.checkpoints import with_stored_weights
from compression.io.families import check_family
from compression.io.data_files import data_from_file
from compression.io.evaluation_data import InputSpec, check_metric, with_metric
from compression.io.huggingface import read_hf_folder
from compression.io.input_specs import InputShapes
from compression.io.limits import (
    DEFAULT_MAX_PARAMETERS,
    check_finite,
    check_limit,
    check_parameter_count,
    value_count,
)
from compression.io.program import LOAD_ERRORS, read_export, read_torchscript
from compression.io.safety import (
    DEFAULT_MAX_FILE_BYTES,
    ONNX,
    SAFETENSORS,
    TORCH_EXPORT,
    TORCHSCRIPT,
    inspect_file,
)
from compression.io.state_dict import read_safetensors, read_torch_state_dict
from compression.model import LoadedModel
from compression.stored_weights import StoredWeights


def load_model(
    source: str | os.PathLike,
    data: str | os.PathLike | None = None,
    *,
    metric: str | None = None,
    family: str | None = None,
    max_parameters: int = DEFAULT_MAX_PARAMETERS,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    input_shapes: InputShapes | None = None,
) -> LoadedModel:
    """Load a zoo model, a model file or a Hugging Face folder, with its evaluation data.

    ``data`` optionally replaces the default evaluation data: an ``.npz`` (``x``, optional
    labels ``y``), text (``.txt``, ``.jsonl``) for a text model, or a folder or ``.zip`` of
    images in class subfolders for an image classifier (``compression.io.data_files``; a
    quarter of an ``.npz``'s rows calibrate instead of being evaluated);
    ``metric`` overrides the default metric; ``family`` (one of
    ``compression.io.families.FAMILIES``) overrides the family told from the file. Files over ``max_file_bytes``
    and models over ``max_parameters`` stored values are refused, before materialising
    where the format allows. ``input_shapes`` (``{input name: shape}``, the batch first; the
    name None for a model with one input) sets the sizes an ONNX or .pt2 file leaves open, and
    a TorchScript file's input sizes (it records none).
    """
    check_metric(metric)
    check_family(family)
    check_limit("max_parameters", max_parameters)
    check_limit("max_file_bytes", max_file_bytes)
    model, spec = _read(source, max_parameters, max_file_bytes, family, input_shapes)
    model = _with_family(model, family)
    check_parameter_count(value_count(model.module.parameters()), max_parameters, model.name)
    check_finite(model.module, model.name)
    evaluation, calibration = model.evaluation, model.calibration
    if data is not None:
        evaluation, calibration = data_from_file(data, model, spec, max_file_bytes=max_file_bytes)
    return replace(model, evaluation=with_metric(evaluation, metric), calibration=calibration)


def _read(
    source: str | os.PathLike, max_parameters: int, max_file_bytes: int, family: str | None,
    input_shapes: InputShapes | None = None,
) -> tuple[LoadedModel, InputSpec]:
    if input_shapes and not _takes_input_shapes(source, max_file_bytes):
        raise ModelLoadError(
            f"--input-shape sets the sizes an ONNX or .pt2 file leaves open, or a TorchScript file's; {Path(source).name} has "
            "its own inputs (give evaluation data with --data instead)."
        )
    if isinstance(source, str) and source in zoo.zoo_names():
        folder = zoo.model_folder(source)
        if folder is None:
            return zoo.zoo_model(source)
        model, spec = read_hf_folder(folder, max_parameters, max_file_bytes, family)
        description = DisplayText("zoo_folder_model", f"zoo model {source}: {model.description}",
                                  model=source, description=model.description)
        return replace(model, name=source, format="zoo", description=description), spec
    path = Path(source)
    if path.is_dir():
        return read_hf_folder(path, max_parameters, max_file_bytes, family)
    if not path.exists():
        names = ", ".join(repr(name) for name in zoo.zoo_names())
        raise ModelLoadError(
            f"source must be a zoo model ({names}) or an existing model file or folder; "
            f"got {str(source)!r}."
        )
    report = inspect_file(path, max_file_bytes=max_file_bytes)
    exact = report.parameter_count is not None
    check_parameter_count(report.minimum_parameters, max_parameters, path.name, at_least=not exact)
    if report.kind == TORCHSCRIPT:
        return read_torchscript(path, input_shapes)
    if report.kind == TORCH_EXPORT:
        return read_export(path, input_shapes)
    if report.kind == ONNX:
        return _read_onnx(path, max_file_bytes, input_shapes)
    if report.kind == SAFETENSORS:
        state_dict, source_format = read_safetensors(path), "safetensors"
    else:
        state_dict, source_format = read_torch_state_dict(path, report.kind), "state_dict"
    check_parameter_count(value_count(state_dict.values()), max_parameters, path.name)
    stored = StoredWeights.of_tensors(state_dict.values())
    model, spec = zoo.architecture_with_weights(state_dict, source_format, path.name)
    return with_stored_weights(model, stored), spec


def _with_family(model: LoadedModel, family: str | None) -> LoadedModel:
    """A graph's family, told from its example inputs and first output unless given, and the
    metric that family is scored by on generated inputs.

    A detected classifier keeps the metric the outputs suggest (agreement, or cosine for
    unit-length rows); language models and other graphs change to next-token agreement and
    the fidelity of every output. A family given by the caller always sets the metric.
    """
    detected = model.family or _graph_family(model)
    chosen = family or detected
    evaluation = model.evaluation
    if evaluation is not None and evaluation.labels is None and model.family != chosen:
        if family is not None or chosen in (families.CAUSAL_LM, families.OTHER):
            evaluation = replace(evaluation, metric=families.METRIC_WITHOUT_DATA[chosen])
    return replace(model, family=chosen, evaluation=evaluation)


def _graph_family(model: LoadedModel) -> str:
    if not model.example_inputs:
        return families.OTHER
    try:
        output = model_outputs(model.module, model.example_inputs, len(model.example_inputs[0]))
    except (*LOAD_ERRORS, CompressionError):  # it does not run on its example: family unknown
        return families.OTHER
    return families.graph_family(model.example_inputs, output)


def _takes_input_shapes(source: str | os.PathLike, max_file_bytes: int) -> bool:
    """Whether the source is a file whose inputs may have open sizes (ONNX, .pt2) or record
    none (TorchScript)."""
    path = Path(source)
    return path.is_file() and inspect_file(path, max_file_bytes=max_file_bytes).kind in (ONNX, TORCH_EXPORT, TORCHSCRIPT)


def _read_onnx(
    path: Path, max_file_bytes: int, input_shapes: InputShapes | None = None
) -> tuple[LoadedModel, InputSpec]:
    """An ONNX model; the digits sample models' weights are scored on the held-out digits."""
    from compression.io.onnx.importing import read_onnx  # onnx and onnxruntime only when an .onnx is read

    model, spec = read_onnx(path, max_file_bytes=max_file_bytes, input_shapes=input_shapes)
    return zoo.with_digits_data(model, spec), spec
