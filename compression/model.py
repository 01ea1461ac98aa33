"""The loaded-model object: what every supported format becomes before the engine sees it."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import torch
from torch import nn

# Module types whose ``weight`` is compressible by default.
DEFAULT_COMPRESSIBLE_TYPES = ("Linear", "Conv1d", "Conv2d", "Conv3d")
_LAYER_CLASSES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


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
    the layer that owns it ("Linear", "Conv2d", ...).
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
    cache: dict = field(default_factory=dict, repr=False)  # per-model memo (baseline outputs)

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
            description=f"{self.description}; {note}" if self.description else note,
            cache={},
        )


def module_layer_types(module: nn.Module) -> dict[str, str]:
    """``{"<layer>.weight": "Linear" | "Conv2d" | ...}`` for the compressible layers of a module.

    Covers nn.Linear and nn.Conv1d/2d/3d (subclasses included), transformers' Conv1D, and
    TorchScript submodules by their ``original_name``. Tied weights are listed once.
    """
    parameters = dict(module.named_parameters())
    types = {}
    for name, layer in module.named_modules():
        key = f"{name}.weight" if name else "weight"
        kind = _layer_kind(layer)
        if kind is not None and key in parameters:
            types[key] = kind
    return types


def _layer_kind(layer: nn.Module) -> str | None:
    for cls in _LAYER_CLASSES:
        if isinstance(layer, cls):
            return cls.__name__
    if isinstance(layer, torch.jit.ScriptModule):
        name = layer.original_name
        return name if name in DEFAULT_COMPRESSIBLE_TYPES else None
    if type(layer).__name__ == "Conv1D" and type(layer).__module__.startswith("transformers."):
        return "Conv1D"  # GPT-2's linear layer, weight stored (in, out)
    return None


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
