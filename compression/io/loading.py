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

from compression.errors import ModelLoadError
from compression.io import zoo
from compression.io.evaluation_data import InputSpec, check_metric, evaluation_from_npz, with_metric
from compression.io.huggingface import read_hf_folder
from compression.io.limits import (
    DEFAULT_MAX_PARAMETERS,
    check_finite,
    check_limit,
    check_parameter_count,
    value_count,
)
from compression.io.program import read_export, read_torchscript
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


def load_model(
    source: str | os.PathLike,
    data: str | os.PathLike | None = None,
    *,
    metric: str | None = None,
    max_parameters: int = DEFAULT_MAX_PARAMETERS,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> LoadedModel:
    """Load a zoo model, a model file or a Hugging Face folder, with its evaluation data.

    ``data`` is an optional ``.npz`` (``x``, optional labels ``y``) that replaces the default
    evaluation data; ``metric`` overrides the default metric. Files over ``max_file_bytes``
    and models over ``max_parameters`` stored values are refused, before materialising
    where the format allows.
    """
    check_metric(metric)
    check_limit("max_parameters", max_parameters)
    check_limit("max_file_bytes", max_file_bytes)
    model, spec = _read(source, max_parameters, max_file_bytes)
    check_parameter_count(value_count(model.module.parameters()), max_parameters, model.name)
    check_finite(model.module, model.name)
    evaluation = model.evaluation
    if data is not None:
        evaluation = evaluation_from_npz(data, model.module, spec, max_file_bytes=max_file_bytes)
    return replace(model, evaluation=with_metric(evaluation, metric))


def _read(
    source: str | os.PathLike, max_parameters: int, max_file_bytes: int
) -> tuple[LoadedModel, InputSpec]:
    if isinstance(source, str) and source in zoo.zoo_names():
        return zoo.zoo_model(source)
    path = Path(source)
    if path.is_dir():
        return read_hf_folder(path, max_parameters, max_file_bytes)
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
        return read_torchscript(path)
    if report.kind == TORCH_EXPORT:
        return read_export(path)
    if report.kind == ONNX:
        return _read_onnx(path, max_file_bytes)
    if report.kind == SAFETENSORS:
        state_dict, source_format = read_safetensors(path), "safetensors"
    else:
        state_dict, source_format = read_torch_state_dict(path, report.kind), "state_dict"
    check_parameter_count(value_count(state_dict.values()), max_parameters, path.name)
    return zoo.architecture_with_weights(state_dict, source_format, path.name)


def _read_onnx(path: Path, max_file_bytes: int) -> tuple[LoadedModel, InputSpec]:
    """An ONNX model; the digits sample models' weights are scored on the held-out digits."""
    from compression.io.onnx.importing import read_onnx  # onnx and onnxruntime only when an .onnx is read

    model, spec = read_onnx(path, max_file_bytes=max_file_bytes)
    return zoo.with_digits_data(model, spec), spec
