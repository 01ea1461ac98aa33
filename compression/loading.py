"""Every supported model source becomes one ``LoadedModel``.

Sources, told apart by content rather than extension (``compression.safety`` inspects every
file before anything deserialises it):

- a zoo name (``simplenet``, ``mlp``, ``bn_cnn``, ``minilm``), with its own evaluation data;
- a state_dict of a zoo architecture: ``.pt``/``.pth`` from ``torch.save`` or ``.safetensors``;
- files that carry their own architecture: torch.export programs (``.pt2``) and TorchScript;
- a Hugging Face model folder (``config.json`` plus weights), as a sentence embedder.

>>> model = load_model("mlp")
>>> model.evaluation.metric, model.layer_types["fc1.weight"]
('accuracy', 'Linear')
"""
from __future__ import annotations

import functools
import os
import pickle
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

import sample_models
from compression.errors import CompressionError, ModelLoadError
from compression.evaluation import model_outputs
from compression.evaluation_data import (
    DEFAULT_BATCH_SIZE,
    InputSpec,
    check_metric,
    evaluation_from_npz,
    random_evaluation,
    with_metric,
)
from compression.model import ACCURACY, COSINE, EvaluationData, LoadedModel, module_layer_types
from compression.safety import (
    DEFAULT_MAX_FILE_BYTES,
    ONNX,
    SAFETENSORS,
    TORCH_EXPORT,
    TORCH_SAVE,
    TORCHSCRIPT,
    inspect_file,
    inspect_hf_folder,
)

DEFAULT_MAX_PARAMETERS = 250_000_000
TEXT_BATCH_SIZE = 128
TEXT_MAX_LENGTH = 64
RANDOM_TEXT_LENGTH = 32
# Checkpoint dicts hold the state_dict under one of these keys (Lightning, tutorials, ...).
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network")
_LOAD_ERRORS = (RuntimeError, ValueError, AssertionError, KeyError, TypeError, AttributeError)


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
    _check_limit("max_parameters", max_parameters)
    _check_limit("max_file_bytes", max_file_bytes)
    model, spec = _read(source, max_parameters, max_file_bytes)
    _check_parameter_count(_count(model.module.parameters()), max_parameters, model.name)
    _check_finite(model.module, model.name)
    evaluation = model.evaluation
    if data is not None:
        evaluation = evaluation_from_npz(data, model.module, spec, max_file_bytes=max_file_bytes)
    return replace(model, evaluation=with_metric(evaluation, metric))


def _read(
    source: str | os.PathLike, max_parameters: int, max_file_bytes: int
) -> tuple[LoadedModel, InputSpec]:
    if isinstance(source, str) and source in sample_models.ZOO_NAMES:
        return _zoo_model(source, sample_models.load_trained(source), "zoo", source)
    path = Path(source)
    if path.is_dir():
        return _read_hf_folder(path, max_parameters, max_file_bytes)
    if not path.exists():
        zoo = ", ".join(repr(name) for name in sample_models.ZOO_NAMES)
        raise ModelLoadError(
            f"source must be a zoo model ({zoo}) or an existing model file or folder; "
            f"got {str(source)!r}."
        )
    report = inspect_file(path, max_file_bytes=max_file_bytes)
    exact = report.parameter_count is not None
    _check_parameter_count(report.minimum_parameters, max_parameters, path.name, at_least=not exact)
    if report.kind == TORCHSCRIPT:
        return _read_torchscript(path)
    if report.kind == TORCH_EXPORT:
        return _read_export(path)
    if report.kind == ONNX:
        return _read_onnx(path, max_file_bytes)
    if report.kind == SAFETENSORS:
        state_dict, source_format = _read_safetensors(path), "safetensors"
    else:
        state_dict, source_format = _read_torch_state_dict(path, report.kind), "state_dict"
    _check_parameter_count(_count(state_dict.values()), max_parameters, path.name)
    architecture, state_dict = _match_architecture(state_dict, path.name)
    if architecture == "minilm":
        from sample_models.minilm import load_embedder

        module = load_embedder()
    else:
        module = sample_models.build_architecture(architecture)
    module.load_state_dict(state_dict)
    return _zoo_model(architecture, module, source_format, path.name)


# --- zoo architectures ---------------------------------------------------------------------


def _zoo_model(
    architecture: str, module: nn.Module, source_format: str, name: str
) -> tuple[LoadedModel, InputSpec]:
    """A zoo architecture with the zoo's evaluation data: digits accuracy or corpus fidelity."""
    if architecture == "minilm":
        from sample_models import corpus, minilm  # transformers only when a text model is asked for

        inputs = minilm.tokenize(corpus.sentences(), max_length=TEXT_MAX_LENGTH)
        description = f"{len(inputs[0])} corpus sentences (fidelity to the original embeddings)"
        evaluation = EvaluationData(inputs, None, COSINE, description, TEXT_BATCH_SIZE)
        vocab_size = module.transformer.config.vocab_size
        spec = InputSpec(tuple(t[:2] for t in inputs), TEXT_BATCH_SIZE, COSINE, vocab_size)
    else:
        evaluation, spec = _digits_evaluation(architecture)
    if source_format == "zoo":
        description = f"zoo model {architecture} with its trained weights"
    else:
        description = f"zoo architecture {architecture} with the weights in {name}"
    model = LoadedModel(
        name=name, format=source_format, module=module.eval(),
        layer_types=module_layer_types(module), example_inputs=spec.example,
        evaluation=evaluation, description=description, architecture=architecture,
    )
    return model, spec


def _digits_evaluation(architecture: str) -> tuple[EvaluationData, InputSpec]:
    """The held-out digits of a digits architecture, shaped as it takes them, with labels."""
    split = sample_models.digits_split(architecture)
    description = f"{len(split.y_test)} held-out digits (scikit-learn's test split) with labels"
    evaluation = EvaluationData((split.x_test,), split.y_test, ACCURACY, description)
    return evaluation, InputSpec((split.x_test[:2],))


@functools.cache
def _expected_shapes(architecture: str) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of a zoo architecture's state_dict (MiniLM's read from the real embedder)."""
    if architecture == "minilm":
        from sample_models.minilm import load_embedder

        module = load_embedder()
    else:
        with torch.device("meta"):
            module = sample_models.build_architecture(architecture)
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _match_architecture(
    state_dict: dict[str, torch.Tensor], where: str
) -> tuple[str, dict[str, torch.Tensor]]:
    """The zoo architecture whose state_dict has exactly these keys and shapes."""
    expected = {name: _expected_shapes(name) for name in sample_models.ZOO_NAMES}
    for name, shapes in expected.items():
        candidate = _as_embedder_state_dict(state_dict, shapes) if name == "minilm" else state_dict
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
    closest = max(expected, key=lambda name: len(shapes.keys() & expected[name].keys()))
    wanted = expected[closest]
    reshaped = sorted(k for k in shapes.keys() & wanted.keys() if shapes[k] != wanted[k])
    differences = {
        "missing": sorted(wanted.keys() - shapes.keys()),
        "unexpected": sorted(shapes.keys() - wanted.keys()),
        "shapes differ": [f"{k} {shapes[k]} instead of {wanted[k]}" for k in reshaped],
    }
    closest_summary = "; ".join(
        f"{label}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
        for label, items in differences.items() if items
    )
    architectures = "; ".join(
        f"{name} ({len(keys)} tensors: {', '.join(list(keys)[:3])}, ...)" for name, keys in expected.items()
    )
    return (
        f"{where}: the state_dict ({len(shapes)} tensors) matches none of the zoo architectures. "
        f"Expected one of: {architectures}. Closest is {closest!r} ({closest_summary}). For any "
        "other architecture upload a torch.export program (.pt2, torch.export.save) or a "
        "TorchScript file (torch.jit.save), which carry their own code."
    )


# --- state_dict files ----------------------------------------------------------------------


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, RuntimeError, ValueError) as error:
        raise ModelLoadError(f"{path.name} is not a readable safetensors file ({error}).") from None


def _read_torch_state_dict(path: Path, kind: str) -> dict[str, torch.Tensor]:
    try:
        # mmap: tensors stay in the file until copied into the module (zip format only).
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=kind == TORCH_SAVE)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, OSError) as error:
        raise ModelLoadError(f"{path.name} could not be read by torch.load ({error}).") from None
    return _unwrap_state_dict(loaded, path.name)


def _unwrap_state_dict(loaded: object, where: str) -> dict[str, torch.Tensor]:
    """The state_dict inside a checkpoint: as is, or under a key such as 'state_dict'."""
    if isinstance(loaded, Mapping) and not _is_state_dict(loaded):
        for key in _WRAPPER_KEYS:
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping) or not _is_state_dict(loaded):
        if isinstance(loaded, Mapping):
            found = f"a dict with keys {sorted(map(str, loaded))[:6]}"
        else:
            found = type(loaded).__name__
        raise ModelLoadError(
            f"{where} holds {found}, not a state_dict: expected a mapping of parameter names to "
            "tensors (torch.save(model.state_dict(), path)), or a checkpoint dict holding one "
            f"under one of {', '.join(map(repr, _WRAPPER_KEYS))}."
        )
    state_dict = dict(loaded)
    if all(key.startswith("module.") for key in state_dict):  # saved from DataParallel
        state_dict = {key.removeprefix("module."): value for key, value in state_dict.items()}
    return state_dict


def _is_state_dict(mapping: Mapping) -> bool:
    items = mapping.items()
    return bool(mapping) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in items)


# --- files that carry their own architecture -----------------------------------------------


def _read_torchscript(path: Path) -> tuple[LoadedModel, InputSpec]:
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except _LOAD_ERRORS as error:
        raise ModelLoadError(f"{path.name} could not be loaded by torch.jit.load ({error}).") from None
    module.eval()
    model = LoadedModel(
        name=path.name, format="torchscript", module=module,
        layer_types=module_layer_types(module), example_inputs=(), evaluation=None,
        description="TorchScript module (it records no input shape)",
    )
    return model, InputSpec()


def _read_export(path: Path) -> tuple[LoadedModel, InputSpec]:
    try:
        program = torch.export.load(path)
        module = program.module()
    except (*_LOAD_ERRORS, NotImplementedError) as error:
        raise ModelLoadError(f"{path.name} could not be loaded by torch.export.load ({error}).") from None
    args, kwargs = program.example_inputs or ((), {})
    if kwargs:
        raise ModelLoadError(
            f"{path.name} takes keyword inputs ({', '.join(kwargs)}); export the model with "
            "positional tensor inputs only."
        )
    if not all(isinstance(arg, torch.Tensor) for arg in args):
        raise ModelLoadError(f"{path.name} takes inputs that are not tensors; export it with tensors only.")
    spec = InputSpec(tuple(args), _static_batch_size(program) or DEFAULT_BATCH_SIZE)
    # No .eval(): the program's train/eval behaviour was fixed at export and its module refuses it.
    model = LoadedModel(
        name=path.name, format="torch_export", module=module,
        layer_types=export_layer_types(program), example_inputs=spec.example,
        evaluation=random_evaluation(module, spec) if args else None,
        description="torch.export program",
    )
    return model, spec


def _static_batch_size(program: torch.export.ExportedProgram) -> int | None:
    """The batch size the program was exported with, when its batch dimension is not dynamic."""
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        value = node.meta.get("val")
        if node.op != "placeholder" or node.name not in user_inputs or not isinstance(value, torch.Tensor):
            continue
        size = value.shape[0] if value.ndim else None
        return size if isinstance(size, int) else None
    return None


def _read_onnx(path: Path, max_file_bytes: int) -> tuple[LoadedModel, InputSpec]:
    """An ONNX model; one whose weights are a digits sample architecture's (names and shapes, as
    ``export_onnx`` writes them) is scored on the held-out digits instead of random inputs."""
    from compression.onnx_import import read_onnx  # onnx and onnxruntime only when an .onnx is read

    model, spec = read_onnx(path, max_file_bytes=max_file_bytes)
    shapes = _shapes(model.module.state_dict())
    for architecture in sample_models.ZOO_NAMES:
        if architecture != "minilm" and shapes == _expected_shapes(architecture):
            evaluation, digits_spec = _digits_evaluation(architecture)
            if digits_spec.example[0].shape[1:] == spec.example[0].shape[1:]:
                description = f"{model.description}; weights of the sample {architecture}, scored on its digits"
                return replace(model, evaluation=evaluation, description=description), spec
    return model, spec


# --- Hugging Face folders ------------------------------------------------------------------


def _read_hf_folder(
    folder: Path, max_parameters: int, max_file_bytes: int
) -> tuple[LoadedModel, InputSpec]:
    if not (folder / "config.json").is_file():
        raise ModelLoadError(
            f"folder {folder.name} is not a Hugging Face model folder: it has no config.json."
        )
    minimum = inspect_hf_folder(folder, max_file_bytes=max_file_bytes)
    _check_parameter_count(minimum, max_parameters, folder.name, at_least=True)
    from sample_models.minilm import SentenceEmbedder

    transformer = _load_transformer(folder)
    module = SentenceEmbedder(transformer).eval()
    vocab_size = getattr(transformer.config, "vocab_size", None)
    inputs, source = _text_inputs(folder, vocab_size)
    try:
        model_outputs(module, tuple(t[:2] for t in inputs), 2)
    except _LOAD_ERRORS as error:
        raise ModelLoadError(
            f"{folder.name}: a {type(transformer).__name__} does not give token embeddings from "
            f"(input_ids, attention_mask) ({error}); only encoder models are supported."
        ) from None
    description = f"{len(inputs[0])} {source} (fidelity to the original embeddings)"
    evaluation = EvaluationData(inputs, None, COSINE, description, TEXT_BATCH_SIZE)
    spec = InputSpec(tuple(t[:2] for t in inputs), TEXT_BATCH_SIZE, COSINE, vocab_size)
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
    except (OSError, *_LOAD_ERRORS) as error:
        raise ModelLoadError(f"transformers could not load {folder.name} ({error}).") from None


def _text_inputs(folder: Path, vocab_size: int | None) -> tuple[tuple[torch.Tensor, torch.Tensor], str]:
    """Corpus sentences through the folder's tokenizer, or seeded random token ids without one."""
    if any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")):
        from transformers import AutoTokenizer

        from sample_models import corpus

        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
            if tokenizer.pad_token is None:  # decoder tokenizers (GPT-2) have none
                tokenizer.pad_token = tokenizer.eos_token
            encoded = tokenizer(
                corpus.sentences(), padding=True, truncation=True, max_length=TEXT_MAX_LENGTH,
                return_tensors="pt",
            )
        except (OSError, *_LOAD_ERRORS) as error:
            raise ModelLoadError(
                f"{folder.name}: its tokenizer could not be loaded or used ({error}); without "
                "tokenizer files the model is evaluated on random token ids."
            ) from None
        inputs = (encoded["input_ids"].to(torch.int64), encoded["attention_mask"].to(torch.int64))
        return inputs, "corpus sentences"
    if vocab_size is None:
        raise ModelLoadError(f"{folder.name} has neither a tokenizer nor a vocab_size in its config.json.")
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, vocab_size, (2 * TEXT_BATCH_SIZE, RANDOM_TEXT_LENGTH), generator=generator)
    return (input_ids, torch.ones_like(input_ids)), "seeded random token sequences (no tokenizer)"


# --- layer tables --------------------------------------------------------------------------


# Graph operators that multiply by a weight, with the position of the weight argument.
_WEIGHT_ARGUMENT = {
    "linear": 1, "mm": 1, "addmm": 2, "conv1d": 1, "conv2d": 1, "conv3d": 1, "convolution": 1,
}
_VIEW_OPERATORS = {"t", "permute", "transpose", "view", "reshape", "_reshape_alias", "alias"}


def export_layer_types(program: torch.export.ExportedProgram) -> dict[str, str]:
    """Compressible weights of an exported program, found from its graph.

    A parameter counts when it feeds (possibly through a transpose or view) the weight argument
    of aten.linear/mm/addmm ("Linear") or aten.conv*/convolution ("Conv<n>d", not transposed).
    """
    parameters = program.graph_signature.inputs_to_parameters
    types = {}
    for node in program.graph.nodes:
        operator = _operator_name(node)
        if node.op != "call_function" or operator not in _WEIGHT_ARGUMENT:
            continue
        position = _WEIGHT_ARGUMENT[operator]
        source = _through_views(node.args[position]) if len(node.args) > position else None
        if source is None or source.name not in parameters:
            continue
        if operator in ("linear", "mm", "addmm"):
            types[parameters[source.name]] = "Linear"
            continue
        transposed = operator == "convolution" and len(node.args) > 6 and node.args[6]
        dims = source.meta["val"].ndim - 2
        if not transposed and 1 <= dims <= 3:
            types[parameters[source.name]] = f"Conv{dims}d"
    return types


def _operator_name(node: torch.fx.Node) -> str | None:
    """``"linear"`` for a node calling aten.linear.default, and so on."""
    return getattr(getattr(node.target, "overloadpacket", None), "__name__", None)


def _through_views(argument: object) -> torch.fx.Node | None:
    """The placeholder an argument comes from, following single-input view operators."""
    node = argument
    while isinstance(node, torch.fx.Node) and node.op == "call_function":
        if _operator_name(node) not in _VIEW_OPERATORS:
            return None
        node = node.args[0]
    return node if isinstance(node, torch.fx.Node) and node.op == "placeholder" else None


# --- checks --------------------------------------------------------------------------------


def _check_limit(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CompressionError(f"{name} must be a positive integer; got {value!r}.")


def _count(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() for t in tensors)


def _check_parameter_count(count: int, max_parameters: int, where: str, *, at_least: bool = False) -> None:
    if count > max_parameters:
        raise ModelLoadError(
            f"{where} holds {'at least ' if at_least else ''}{count:,} parameters, over the "
            f"limit max_parameters={max_parameters:,}."
        )


def _check_finite(module: nn.Module, where: str) -> None:
    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ModelLoadError(
                f"{where}: tensor {name!r} holds NaN or infinite values; the model cannot be "
                "evaluated or compressed."
            )
