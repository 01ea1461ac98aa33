"""The verb: ``compress(model, recipe)`` prunes, then quantizes, a copy of the model.

The input model is never mutated: the result holds a new module whose compressed weights are
the decoded values of the packed encoding, the packed encoding itself, a report of sizes and
errors, and the view data (histograms, grids, sparsity maps) for the dashboard.

Pruning, quantization, encoding and sparsity maps see each weight with its output channels
as rows: a weight that keeps them on axis 1 (``LoadedModel.output_axes``) is rearranged
channels-first for that work and its values put back in its own layout after.

>>> import torch
>>> result = compress(torch.nn.Linear(64, 8), {"prune": {"method": "magnitude", "amount": 0.5}})
>>> result.report.sparsity
0.5
"""
from __future__ import annotations

import copy
import fnmatch
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

from compression.errors import RecipeError
from compression.model import LoadedModel, module_layer_types
from compression.output_axes import CHANNELS_ON_AXIS_0
from compression.packing import EncodedTensor, PackedModel, encode_tensor
from compression.pruning import PruneMask, compute_masks
from compression.quantization import QuantizedTensor, dequantize_tensor, quantize_tensor
from compression.recipe import QuantizeSpec, Recipe
from compression.stats import (
    Histogram,
    SparsityMap,
    ValueRange,
    display_limit,
    error_measures,
    histogram,
    pooled_mean_magnitude,
    mean_magnitude,
    sparsity_map,
    value_range,
)


@dataclass(frozen=True)
class LayerReport:
    """What happened to one compressible tensor, with its view data."""

    name: str
    layer_type: str
    shape: tuple[int, ...]
    parameters: int
    zeros: int  # exact zeros in the final tensor
    threshold: float | None  # the cut θ that pruning used, where it has one
    scheme: str
    bits: int
    encoding: str
    encoded_bytes: int
    mse: float
    sqnr_db: float
    non_finite: int  # values a low-precision float turned into NaN/inf
    histogram_before: Histogram = field(repr=False)
    histogram_after: Histogram = field(repr=False)
    levels: torch.Tensor | None = field(repr=False)
    sparsity_map: SparsityMap = field(repr=False)

    @property
    def sparsity(self) -> float:
        return self.zeros / self.parameters

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "layer_type": self.layer_type,
            "shape": list(self.shape),
            "parameters": self.parameters,
            "sparsity": self.sparsity,
            "threshold": _finite_or_none(self.threshold),
            "scheme": self.scheme,
            "bits": self.bits,
            "encoding": self.encoding,
            "encoded_bytes": self.encoded_bytes,
            "mse": self.mse,
            "sqnr_db": _finite_or_none(self.sqnr_db),
            "non_finite": self.non_finite,
        }


@dataclass(frozen=True)
class CompressionReport:
    """Sizes, sparsity and per-layer details of one compression.

    ``dense_fp32_bytes`` is nominal (4 bytes per float of the state dict); ``encoded_bytes``
    is the payload of the packed file; ``file_bytes`` is the whole packed file, header included.
    """

    model: str
    recipe: dict[str, Any]
    sparsity: float
    dense_fp32_bytes: int
    encoded_bytes: int
    file_bytes: int
    layers: tuple[LayerReport, ...]
    histogram_before: Histogram = field(repr=False)
    histogram_after: Histogram = field(repr=False)

    @property
    def compression_ratio(self) -> float:
        return self.dense_fp32_bytes / max(self.file_bytes, 1)

    def layer(self, name: str) -> LayerReport:
        return next(layer for layer in self.layers if layer.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "recipe": self.recipe,
            "sparsity": self.sparsity,
            "dense_fp32_bytes": self.dense_fp32_bytes,
            "encoded_bytes": self.encoded_bytes,
            "file_bytes": self.file_bytes,
            "compression_ratio": self.compression_ratio,
            "layers": [layer.to_dict() for layer in self.layers],
        }


@dataclass(frozen=True, eq=False)
class CompressionResult:
    """A compressed copy of the model: ``module`` to run, ``packed`` to save, ``report`` to read."""

    module: nn.Module
    report: CompressionReport
    packed: PackedModel


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def as_recipe(recipe: Recipe | Mapping[str, Any] | str | None) -> Recipe:
    """Accept a Recipe, its dict, or its JSON text."""
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, str):
        return Recipe.from_json(recipe)
    return Recipe.from_dict(recipe)


def _as_loaded(model: LoadedModel | nn.Module) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a LoadedModel or a torch.nn.Module; got {type(model).__name__}.")
    return LoadedModel(
        name=type(model).__name__,
        format="module",
        module=model,
        layer_types=module_layer_types(model),
        example_inputs=(),
        evaluation=None,
    )


def _nominal_fp32_bytes(state: Mapping[str, torch.Tensor]) -> int:
    return sum(t.numel() * 4 if t.is_floating_point() else t.numel() * t.element_size() for t in state.values())


def tied_names(state: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """Each state-dict name whose tensor is an earlier name's (tied weights), mapped to that name.

    >>> shared = torch.zeros(2)
    >>> tied_names({"a": shared, "b": torch.zeros(2), "c": shared})
    {'c': 'a'}
    """
    first: dict[tuple, str] = {}
    tied = {}
    for name, tensor in state.items():
        if tensor.numel() == 0:
            continue
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride(), tensor.dtype)
        tied[name] = first.setdefault(key, name)
    return {name: primary for name, primary in tied.items() if name != primary}


def _targets(loaded: LoadedModel, state: Mapping[str, torch.Tensor], recipe: Recipe, tied: Mapping[str, str]) -> list[str]:
    # A tied tensor is compressed once, under its first name; its other names follow it.
    names = [
        name
        for name, tensor in state.items()
        if name not in tied
        and recipe.selects(name, name in loaded.layer_types)
        and tensor.is_floating_point()
        and tensor.numel() > 0
    ]
    for pattern in recipe.include:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in state):
            raise RecipeError(f"recipe.include pattern {pattern!r} matches no parameter of {loaded.name}.")
    return names


def _compress_tensor(
    weight: torch.Tensor, mask: PruneMask | None, spec: QuantizeSpec | None
) -> tuple[torch.Tensor, QuantizedTensor | None]:
    """Final float32 values and their codes, output channels first as ``weight`` has them;
    values come only from decoding the codes."""
    pruned = torch.where(mask.keep, weight, torch.zeros((), dtype=weight.dtype)) if mask is not None else weight
    pruned = pruned.float()
    if spec is None:
        return pruned.masked_fill(pruned == 0, 0.0), None
    quantized = quantize_tensor(pruned, spec)
    values = dequantize_tensor(quantized.codes, quantized.params, spec, weight.shape)
    if not quantized.represents_zero:  # binary, k-means: zero comes from the positions
        values.masked_fill_(pruned == 0, 0.0)
    if spec.scheme == "float" or not quantized.represents_zero:
        # One canonical zero (+0.0): a float cast keeps -0.0 and underflows to it. Integer
        # codes decode zero to +0.0 already, and a pruned weight's code is the zero code.
        values.masked_fill_(values == 0, 0.0)
    return values, quantized


def _layer_report(
    name: str,
    layer_type: str,
    original: torch.Tensor,
    values: torch.Tensor,
    mask: PruneMask | None,
    quantized: QuantizedTensor | None,
    encoded: EncodedTensor,
    before: ValueRange,
    after: ValueRange,
    mean: float,
    zeros_map: SparsityMap,
) -> LayerReport:
    # Quantization may round the largest |w| up; outliers far beyond the bulk go to the end bins.
    limit = display_limit(max(before.magnitude, after.magnitude), mean)
    errors = error_measures(original, values)
    zeros = values.numel() - encoded.entry["nonzero"]  # counted by encode_tensor (values != 0)
    return LayerReport(
        name=name,
        layer_type=layer_type,
        shape=tuple(original.shape),
        parameters=original.numel(),
        zeros=zeros,
        threshold=mask.threshold if mask is not None else None,
        scheme=encoded.entry["scheme"],
        bits=encoded.entry["bits"],
        encoding=encoded.entry["encoding"],
        encoded_bytes=encoded.encoded_bytes,
        mse=errors.mse,
        sqnr_db=errors.sqnr_db,
        non_finite=0 if after.all_finite else int((~torch.isfinite(values)).sum()),
        histogram_before=histogram(original, limit, extremes=before),
        histogram_after=histogram(values, limit, extremes=after),
        levels=quantized.levels if quantized is not None else None,
        sparsity_map=zeros_map,
    )


def _rebuilt_module(module: nn.Module, replacements: dict[str, torch.Tensor]) -> nn.Module:
    """A deep copy of ``module`` whose named tensors hold the ``replacements``' values.

    The replacements go into deepcopy's memo, so compressed weights are not copied twice.
    TorchScript modules ignore the memo (their copy is made in C++): their fresh copies are
    overwritten in place instead.
    """
    memo: dict[int, Any] = {}
    originals = dict(module.named_parameters(remove_duplicate=False))
    originals.update(dict(module.named_buffers(remove_duplicate=False)))
    for name, values in replacements.items():
        original = originals.get(name)
        if original is not None:
            values = values.to(original.dtype)
            memo[id(original)] = nn.Parameter(values, requires_grad=False) if isinstance(original, nn.Parameter) else values
    copied = copy.deepcopy(module, memo)
    state = copied.state_dict(keep_vars=True)
    with torch.no_grad():
        for name, values in replacements.items():
            target = state[name]
            if target.data_ptr() != values.data_ptr():
                target.copy_(values)
    return copied.eval()


def compress(model: LoadedModel | nn.Module, recipe: Recipe | Mapping[str, Any] | str | None = None) -> CompressionResult:
    """Prune, then quantize, a copy of ``model`` as ``recipe`` says; ``model`` is not changed.

    >>> import torch
    >>> layer = torch.nn.Linear(16, 4)
    >>> result = compress(layer, {"quantize": {"scheme": "linear", "bits": 2}})
    >>> len(torch.unique(result.module.weight[0])) <= 3
    True
    """
    recipe = as_recipe(recipe)
    loaded = _as_loaded(model)
    state = loaded.module.state_dict()
    tied = tied_names(state)
    targets = _targets(loaded, state, recipe, tied)
    axes = {name: loaded.output_axes.get(name, CHANNELS_ON_AXIS_0) for name in targets}
    weights = {name: axes[name].channels_first(state[name]) for name in targets}  # axis 0: no copy
    prune_specs = {name: spec for name in targets if (spec := recipe.specs_for(name)[0]) is not None}
    masks = compute_masks({name: weights[name] for name in prune_specs}, prune_specs)

    replacements: dict[str, torch.Tensor] = {}
    encoded: dict[str, EncodedTensor] = {}
    layers = []
    ranges: dict[str, tuple[ValueRange, ValueRange]] = {}
    spreads: dict[str, float] = {}  # mean |w| of each original tensor
    for name in targets:
        original = state[name]
        quantize_spec = recipe.specs_for(name)[1]
        mask = masks.pop(name, None)  # each mask freed once used: a quarter copy less at the peak
        rows, quantized = _compress_tensor(weights.pop(name), mask, quantize_spec)
        encoded[name] = encode_tensor(rows, quantized, quantize_spec, axes[name])
        values = replacements[name] = axes[name].restored(rows)
        layer_type = loaded.layer_types.get(name, "included")
        ranges[name] = (value_range(original), value_range(values))
        spreads[name] = mean_magnitude(original)
        layers.append(_layer_report(
            name, layer_type, original, values, mask, quantized, encoded[name], *ranges[name], spreads[name],
            sparsity_map(rows),
        ))
        del mask, quantized, rows  # the codes are packed by now: not alive while the next tensor is worked on

    # A tied tensor is stored once; its other names are recorded as aliases of that name.
    raw = {name: tensor for name, tensor in state.items() if name not in encoded and name not in tied}
    packed = PackedModel(encoded=encoded, raw=raw, recipe_json=recipe.to_json(), model_name=loaded.name,
                         aliases=dict(tied))
    report = _report(loaded, recipe, state, layers, packed, replacements, ranges, spreads)
    return CompressionResult(module=_rebuilt_module(loaded.module, replacements), report=report, packed=packed)


def _report(
    loaded: LoadedModel,
    recipe: Recipe,
    state: Mapping[str, torch.Tensor],
    layers: list[LayerReport],
    packed: PackedModel,
    replacements: Mapping[str, torch.Tensor],
    ranges: Mapping[str, tuple[ValueRange, ValueRange]],
    spreads: Mapping[str, float],
) -> CompressionReport:
    parameters = sum(layer.parameters for layer in layers)
    zeros = sum(layer.zeros for layer in layers)
    magnitude = max((max(before.magnitude, after.magnitude) for before, after in ranges.values()), default=0.0)
    limit = display_limit(magnitude, pooled_mean_magnitude([(spreads[name], state[name].numel()) for name in replacements]))
    before = _summed_histogram([(state[name], ranges[name][0]) for name in replacements], limit)
    after = _summed_histogram([(values, ranges[name][1]) for name, values in replacements.items()], limit)
    return CompressionReport(
        model=loaded.name,
        recipe=json.loads(recipe.to_json()),
        sparsity=zeros / parameters if parameters else 0.0,
        dense_fp32_bytes=_nominal_fp32_bytes({name: t for name, t in state.items() if name not in packed.aliases}),
        encoded_bytes=packed.encoded_bytes,
        file_bytes=packed.file_bytes,  # exact, without serialising the file
        layers=tuple(layers),
        histogram_before=before,
        histogram_after=after,
    )


def _summed_histogram(tensors: list[tuple[torch.Tensor, ValueRange]], limit: float) -> Histogram:
    parts = [histogram(tensor, limit, extremes=extremes) for tensor, extremes in tensors]
    if not parts:
        return histogram(torch.zeros(0), limit)
    return Histogram(sum(part.counts for part in parts), parts[0].edges, sum(part.outside for part in parts))
