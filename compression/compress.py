"""The verb: ``compress(model, recipe)`` prunes, then quantizes, a copy of the model.

The input model is never mutated: the result holds a new module whose compressed weights are
the decoded values of the packed encoding, the packed encoding itself, a report of sizes and
errors, and the view data (histograms, grids, sparsity maps) for the dashboard.

Pruning, quantization, encoding and sparsity maps see each weight with its output channels
as rows: a weight that keeps them on axis 1 (``LoadedModel.output_axes``) is rearranged
channels-first for that work and its values put back in its own layout after.

Methods that look at data (Wanda, SparseGPT, GPTQ, AWQ) run in ``compression.calibration_pass``
on the copy, after the tensors that need no data are compressed: one pass of the recipe's
calibration rows in which each such layer is compressed on the inputs the compressed layers
before it give it. The packed file records the rows (settings and fingerprint).

>>> import torch
>>> result = compress(torch.nn.Linear(64, 8), {"prune": {"method": "magnitude", "amount": 0.5}})
>>> result.report.sparsity
0.5
"""
from __future__ import annotations

import copy
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

from compression.calibration_pass import CalibrationRecord, Sections, calibrate, layer_sections
from compression.compression_report import (
    CompressionReport,
    LayerReport,
    compression_report,
    layer_report,
    method_label,
)
from compression.errors import RecipeError
from compression.model import LoadedModel, module_layer_types
from compression.original_weights import OriginalWeights, original_weights
from compression.output_axes import CHANNELS_ON_AXIS_0, OutputAxis
from compression.packing import EncodedTensor, PackedModel, encode_tensor
from compression.pruning import compute_masks
from compression.quantization import QuantizedTensor
from compression.recipe import Recipe
from compression.stats import ValueRange, sparsity_map, value_range
from compression.tensor_codes import compress_tensor

__all__ = ["CompressionReport", "CompressionResult", "LayerReport", "as_recipe", "compress", "tied_names"]


@dataclass(frozen=True, eq=False)
class CompressionResult:
    """A compressed copy of the model: ``module`` to run, ``packed`` to save, ``report`` to read."""

    module: nn.Module
    report: CompressionReport
    packed: PackedModel


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


@dataclass
class _Compressed:
    """What compress gathers tensor by tensor: encodings, final values, reports."""

    loaded: LoadedModel
    state: Mapping[str, torch.Tensor]
    encoded: dict[str, EncodedTensor] = field(default_factory=dict)
    replacements: dict[str, torch.Tensor] = field(default_factory=dict)
    layers: dict[str, LayerReport] = field(default_factory=dict)
    after: dict[str, ValueRange] = field(default_factory=dict)  # each final tensor's range
    originals: OriginalWeights = field(default_factory=OriginalWeights)  # the model's memo, in compress

    def add(self, name: str, axis: OutputAxis, rows: torch.Tensor, quantized: QuantizedTensor | None,
            sections: Sections, threshold: float | None) -> None:
        """One tensor's final values, output channels first (``rows``), and their codes."""
        original = self.state[name]
        encoded = self.encoded[name] = encode_tensor(rows, quantized, sections[1], axis)
        values = self.replacements[name] = axis.restored(rows)
        self.after[name] = value_range(values)
        self.layers[name] = layer_report(
            name, self.loaded.layer_types.get(name, "included"), method_label(*sections), original, values,
            threshold, quantized, encoded, self.after[name], sparsity_map(rows), self.originals,
        )


def compress(
    model: LoadedModel | nn.Module, recipe: Recipe | Mapping[str, Any] | str | None = None,
    progress: Callable[[float], None] | None = None,
) -> CompressionResult:
    """Prune, then quantize, a copy of ``model`` as ``recipe`` says; ``model`` is not changed.

    ``progress``, where given, hears the fraction (0 to 1) of the calibrated layers (Wanda,
    SparseGPT, GPTQ, AWQ) compressed so far; a recipe without them calls it never.

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
    sections = layer_sections(recipe, targets, tied)
    calibrated = {name: sections[name] for name in targets if any(s is not None and s.calibrated for s in sections[name])}
    axes = {name: loaded.output_axes.get(name, CHANNELS_ON_AXIS_0) for name in targets}
    weights = {name: axes[name].channels_first(state[name]) for name in targets}  # axis 0: no copy
    prune_specs = {name: spec for name in targets if (spec := sections[name][0]) is not None and not spec.calibrated}
    masks = compute_masks({name: weights[name] for name in prune_specs}, prune_specs)

    done = _Compressed(loaded, state, originals=original_weights(loaded))
    for name in targets:
        if name in calibrated:
            continue
        mask = masks.pop(name, None)  # each mask freed once used: a quarter copy less at the peak
        rows, quantized = compress_tensor(weights.pop(name), mask.keep if mask is not None else None, sections[name][1])
        done.add(name, axes[name], rows, quantized, sections[name], mask.threshold if mask is not None else None)
        del mask, quantized, rows  # the codes are packed by now: not alive while the next tensor is worked on
    module = _rebuilt_module(loaded.module, done.replacements)
    record: CalibrationRecord | None = None
    if calibrated:  # the copy's data-free tensors are compressed: the pass runs on them
        layers, thresholds, record = calibrate(loaded, recipe, module, calibrated, masks, progress)
        for name in calibrated:
            layer = layers.pop(name)
            threshold = masks[name].threshold if name in masks else thresholds.get(name)
            done.add(name, axes[name], layer.values, layer.quantized, calibrated[name], threshold)
    order = {name: index for index, name in enumerate(targets)}
    layers_in_order = sorted(done.layers.values(), key=lambda layer: order[layer.name])
    # A tied tensor is stored once; its other names are recorded as aliases of that name.
    raw = {name: tensor for name, tensor in state.items() if name not in done.encoded and name not in tied}
    packed = PackedModel(encoded=done.encoded, raw=raw, recipe_json=recipe.to_json(), model_name=loaded.name,
                         aliases=dict(tied), calibration=record.to_dict() if record is not None else None)
    report = compression_report(loaded, recipe, state, layers_in_order, packed, done.replacements, done.after,
                                done.originals)
    return CompressionResult(module=module, report=report, packed=packed)
