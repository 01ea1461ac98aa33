"""The loaded-model object: what every supported format becomes before the engine sees it."""
from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Mapping

import torch
from torch import nn

from compression.display_text import DisplayText
from compression.model_inputs import ModelInput
from compression.output_axes import OutputAxis
from compression.stored_weights import StoredWeights

# Layer classes whose weights are compressible by default (subclasses included), by the name
# reported; transformers' Conv1D is matched by name, to leave transformers unimported.
_LAYER_CLASSES = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.LSTM, nn.GRU, nn.RNN, nn.LSTMCell, nn.GRUCell, nn.RNNCell, nn.MultiheadAttention,
)
DEFAULT_COMPRESSIBLE_TYPES = (*(cls.__name__ for cls in _LAYER_CLASSES), "Conv1D")
# TorchScript keeps each module's own class name: MultiheadAttention's out_proj is a Linear.
_SCRIPTED_NAMES = {"NonDynamicallyQuantizableLinear": "Linear"}


@dataclass(frozen=True)
class EvaluationData:
    """Held-out inputs (positional arguments of ``module``), optional labels, and the metric.

    ``inputs`` is a tuple of tensors sharing their first (batch) dimension; the evaluator
    slices them into batches. ``labels`` is given exactly when ``metric`` is accuracy.
    """

    inputs: tuple[torch.Tensor, ...]
    labels: torch.Tensor | None
    metric: str
    description: str
    batch_size: int = 256  # programs exported with a static batch need exactly their own

    @property
    def size(self) -> int:
        return int(self.inputs[0].shape[0])


@dataclass(frozen=True)
class TrainingData:
    """Labelled training rows (a classifier's inputs and integer classes): what fine-tuning,
    distillation and int8 calibration use, never the held-out evaluation rows."""

    inputs: torch.Tensor
    labels: torch.Tensor
    description: str


@dataclass(frozen=True)
class CalibrationData:
    """Rows the methods that look at data (Wanda, SparseGPT, GPTQ, AWQ) measure activations
    on, from a source that shares no row with the evaluation data.

    ``build`` makes the rows (a tuple of tensors sharing their first dimension, the model's
    positional inputs) on first use: tokenizing a corpus costs a quarter of a second that
    loading a model should not pay when nothing calibrates.
    """

    build: Callable[[], tuple[torch.Tensor, ...]]
    description: str

    @functools.cached_property
    def inputs(self) -> tuple[torch.Tensor, ...]:
        return self.build()

    @property
    def size(self) -> int:
        return int(self.inputs[0].shape[0])


class ForeignRuntimeModule(nn.Module):
    """A module whose forward runs another runtime (onnxruntime) over the weights it holds.

    Its weights compress like any module's, but it has no torch layers: rewrites that follow
    a torch graph (fusion, channel removal) refuse it, naming ``runtime``.
    """

    runtime = "another runtime"


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """One model ready to compress: read-only module, its compressible parameters and data.

    ``module`` is in eval mode and shared read-only: the engine never mutates it.
    ``layer_types`` maps each parameter name of the default compressible set to the type of
    the layer that owns it ("Linear", "Conv2d", "LSTM", ...). ``output_axes`` gives each of
    them the axis of its output channels: what the loader read from a graph (an ONNX LSTM's
    directions, a .pt2 weight multiplied as ``x @ W``), else what its layer type and module say.
    """

    name: str
    format: str
    module: nn.Module
    layer_types: dict[str, str]
    example_inputs: tuple[torch.Tensor, ...]
    evaluation: EvaluationData | None  # None where the format carries no input shape
    description: str = ""
    architecture: str | None = None  # the sample architecture it is, where it is one
    training: TrainingData | None = None  # labelled training rows, where the source brings them
    calibration: CalibrationData | None = None  # rows for calibration-based methods, never evaluated
    family: str | None = None  # what kind of model (compression.io.families), which decides the metric
    cache: dict = field(default_factory=dict, repr=False)  # per-model memo (baseline outputs)
    output_axes: dict[str, OutputAxis] = field(default_factory=dict)
    input_specs: tuple[ModelInput, ...] = ()  # each input as the file records it (compression.model_inputs)
    stored_weights: StoredWeights | None = None  # what the checkpoint file(s) hold, where one was read

    def __post_init__(self) -> None:
        derived = module_output_axes(self.module, self.layer_types)
        object.__setattr__(self, "output_axes", {**derived, **self.output_axes})

    @property
    def compressible(self) -> tuple[str, ...]:
        return tuple(self.layer_types)

    def with_module(self, module: nn.Module, note: str) -> LoadedModel:
        """This model's data and inputs around another module (fused, pruned, fine-tuned):
        compressible layers listed anew, ``note`` added to the description, and an empty
        cache (the base outputs memoised there are the old module's)."""
        return replace(
            self,
            module=module,
            layer_types=module_layer_types(module),
            description=DisplayText("noted", f"{self.description}; {note}", description=self.description, note=note)
            if self.description else note,
            cache={},
            output_axes={},
        )


def module_layer_types(module: nn.Module) -> dict[str, str]:
    """``{"<layer>.weight": "Linear" | "Conv2d" | "LSTM" | ...}`` for the compressible weights of a module.

    Covers the ``weight`` of nn.Linear, Conv1d/2d/3d and ConvTranspose1d/2d/3d (subclasses
    included) and of transformers' Conv1D; every weight of LSTM/GRU/RNN (``weight_ih_l0``,
    ``weight_hh_l1_reverse``, ``weight_hr_l0``) and of their cells (``weight_ih``,
    ``weight_hh``); MultiheadAttention's input projection (``in_proj_weight``, or
    ``q/k/v_proj_weight``: its ``out_proj`` is a Linear); TorchScript submodules by their
    ``original_name``. Biases are left out, and a tied weight is listed once, under its canonical
    name: a Llama's LM head tied to its embeddings is ``model.embed_tokens.weight`` ("Linear").

    >>> module_layer_types(nn.Sequential(nn.Linear(4, 4), nn.LSTMCell(4, 2)))
    {'0.weight': 'Linear', '1.weight_ih': 'LSTMCell', '1.weight_hh': 'LSTMCell'}
    """
    # A tied weight (an LM head sharing the embedding matrix) is one tensor: it is listed once,
    # under its canonical name, the first that named_parameters gives it.
    canonical = {id(parameter): name for name, parameter in module.named_parameters()}
    types = {}
    for name, layer in module.named_modules():
        kind = _layer_kind(layer)
        if kind is None:
            continue
        for own, parameter in layer.named_parameters(recurse=False):
            if _is_weight(own) and id(parameter) in canonical:
                types[canonical[id(parameter)]] = kind
    return types


def _is_weight(name: str) -> bool:
    """``weight``, ``weight_ih_l0``, ``in_proj_weight``: not a bias (nor attention's ``bias_k``)."""
    return name == "weight" or name.startswith("weight_") or name.endswith("_weight")


def _layer_kind(layer: nn.Module) -> str | None:
    for cls in _LAYER_CLASSES:
        if isinstance(layer, cls):
            return cls.__name__
    if isinstance(layer, torch.jit.ScriptModule):
        name = _SCRIPTED_NAMES.get(layer.original_name, layer.original_name)
        return name if name in DEFAULT_COMPRESSIBLE_TYPES else None
    if type(layer).__name__ == "Conv1D" and type(layer).__module__.startswith("transformers."):
        return "Conv1D"  # GPT-2's linear layer, weight stored (in, out)
    return None


def module_output_axes(module: nn.Module, layer_types: Mapping[str, str]) -> dict[str, OutputAxis]:
    """The output axis of each weight in ``layer_types``: its layer type's, in the groups of
    its module where it has them (a grouped ConvTranspose, eager or TorchScript).

    >>> module_output_axes(nn.ConvTranspose2d(4, 6, 3, groups=2), {"weight": "ConvTranspose2d"})
    {'weight': OutputAxis(axis=1, groups=2)}
    """
    axes = {key: OutputAxis.of_layer(kind) for key, kind in layer_types.items()}
    if any(axis.axis == 1 for axis in axes.values()):
        owners = dict(module.named_modules())  # TorchScript modules have no get_submodule
        for key, axis in axes.items():
            # A graph module's parameter may have no layer module owning it: no groups then.
            groups = getattr(owners.get(key.rpartition(".")[0]), "groups", 1) if axis.axis == 1 else 1
            if isinstance(groups, int) and groups > 1:
                axes[key] = OutputAxis.of_layer(layer_types[key], groups)
    return axes


def named_module(model: LoadedModel | nn.Module) -> tuple[str, nn.Module, tuple[torch.Tensor, ...]]:
    """Name, module and example inputs of a loaded model, or of a bare module (no inputs known)."""
    if isinstance(model, LoadedModel):
        return model.name, model.module, model.example_inputs
    if isinstance(model, nn.Module):
        return type(model).__name__, model, ()
    raise TypeError(f"model must be a LoadedModel or a torch.nn.Module; got {type(model).__name__}.")


def weights_fingerprint(module: nn.Module) -> str:
    """The first 16 hex digits of the SHA-256 of ``module``'s state dict: each entry's name,
    dtype, shape and bytes, in order.

    Equal fingerprints mean the same values bit for bit. Why: a result can name exactly which
    weights it came from (reproducibility), and the dashboard's base models are cached and
    shared by every session, so the same fingerprint before and after any number of sessions
    have compressed one proves that none of them wrote into it.

    >>> layer = nn.Linear(2, 2)
    >>> twin = nn.Linear(2, 2)
    >>> _ = twin.load_state_dict(layer.state_dict())
    >>> weights_fingerprint(layer) == weights_fingerprint(twin)
    True
    >>> with torch.no_grad():
    ...     _ = twin.bias.add_(1.0)
    >>> weights_fingerprint(layer) == weights_fingerprint(twin)
    False
    """
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        values = tensor.detach().cpu().contiguous().reshape(-1)
        # A length-prefixed header per entry: no two different state dicts give the same stream.
        header = f"{name}\0{values.dtype}\0{tuple(tensor.shape)}\0{values.numel() * values.element_size()}\n".encode()
        digest.update(len(header).to_bytes(8, "little") + header)
        if values.numel():
            digest.update(memoryview(values.view(torch.uint8).numpy()))  # no copy of contiguous weights
    return digest.hexdigest()[:16]
