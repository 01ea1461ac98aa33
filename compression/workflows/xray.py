"""The error X-ray: where along a model's depth a recipe's error enters, and how it builds up.

For every compressible layer, in the order the model runs them, two errors of the layer's output
against the original model's output of the same layer, as SQNR (dB) and cosine:

- **local**: only this layer compressed, run on the inputs the original model gives it;
- **accumulated**: every layer compressed, measured at this layer's output.

A large local error marks the layer that does the damage; an accumulated curve falling far below
the local one is error carried in from the layers before. The rows measured are the first of the
model's evaluation data: as many as keep the recorded layer inputs and outputs within
``ACTIVATION_BUDGET_BYTES`` (MiniLM: 17 of its 512 sentences), or ``samples``.

Each layer's compressed weight is the one ``compress(model, recipe)`` gives it. What-ifs change one
layer's weight and measure again from the recorded inputs (the layer itself) and by one pass of
the whole model over the same rows (every accumulated error): keep it float, give it two more
bits, prune it half as much. The new weight is what ``compress`` gives that layer alone with the
changed section (``WhatIf.override``); every other layer keeps its weight.

>>> from compression.io.loading import load_model
>>> scan = xray(load_model("mlp"), {"quantize": {"scheme": "linear", "bits": 2}})
>>> [row.name for row in scan.rows]
['fc1.weight', 'fc2.weight', 'fc3.weight']
>>> what_if(scan, "fc2.weight", KEEP_FLOAT).layer("fc2.weight").local_sqnr_db
inf
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from compression.channel_stats import ChannelRanges, channel_kurtosis, channel_maxima, output_channel_ranges
from compression.compress import as_recipe, compress
from compression.display_text import DisplayText
from compression.errors import CompressionError, RecipeError
from compression.evaluation import evaluation_subset, require_evaluation
from compression.layer_calls import LayerOwner, Recording, compare, layer_owners, record, replay
from compression.model import ForeignRuntimeModule, LoadedModel
from compression.output_axes import CHANNELS_ON_AXIS_0
from compression.pruning import compute_masks
from compression.recipe import SCHEME_BITS, PruneSpec, Recipe
from compression.workflows.sweep import Progress

ACTIVATION_BUDGET_BYTES = 96 * 2**20  # recorded layer inputs and outputs; a what-if re-runs these rows
KEEP_FLOAT, MORE_BITS, LESS_PRUNING = "keep_float", "more_bits", "less_pruning"
WHAT_IFS = (KEEP_FLOAT, MORE_BITS, LESS_PRUNING)
BITS_ADDED = 2
# What a what-if can redo from a weight alone; methods that look at data need their inputs.
DATA_FREE_PRUNING = ("magnitude", "random", "structured", "n:m")
DATA_FREE_SCHEMES = (*SCHEME_BITS, "float")
_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


@dataclass(frozen=True)
class LayerError:
    """One layer's row: its place in the run and both errors (+inf dB: lossless; −inf: overflow)."""

    name: str
    order: int
    module: str
    compressed: bool  # whether its weight differs from the original
    local_sqnr_db: float
    local_cosine: float
    accumulated_sqnr_db: float
    accumulated_cosine: float


@dataclass(frozen=True)
class WhatIf:
    """A change to one layer, and the recipe override that gives it."""

    layer: str
    change: str
    override: dict[str, Any]


@dataclass(frozen=True)
class LayerDetail:
    """The outliers of one layer: per input channel max |x| and kurtosis of what it was given
    (None where its input is not a float tensor), and per output channel weight ranges."""

    name: str
    input_maxima: np.ndarray | None
    input_kurtosis: np.ndarray | None
    weight: ChannelRanges
    compressed_weight: ChannelRanges


@dataclass(eq=False)
class _Probe:
    """What every measurement of one X-ray shares: the compressed copy, the recording, the weights."""

    model: LoadedModel
    recipe: Recipe
    module: nn.Module  # compress's copy, holding the compressed weights; passes swap weights in
    owners: dict[str, LayerOwner]
    recording: Recording
    originals: dict[str, torch.Tensor]
    compressed_names: tuple[str, ...]  # what the recipe compressed, in compress's order
    masks: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class XRay:
    """Rows in execution order, the model output's own error, the rows of data measured on, and
    the what-ifs applied (each replaces one layer's weight)."""

    rows: tuple[LayerError, ...]
    output_sqnr_db: float
    output_cosine: float
    samples: int
    data: str
    not_run: tuple[str, ...]  # compressible layers no hooked module ran
    changes: tuple[WhatIf, ...] = ()
    weights: Mapping[str, torch.Tensor] = field(default_factory=dict, repr=False)  # the what-ifs' weights
    probe: _Probe | None = field(default=None, repr=False)

    def layer(self, name: str) -> LayerError:
        return next(row for row in self.rows if row.name == name)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([row.__dict__ for row in self.rows])


def xray(
    model: LoadedModel, recipe: Recipe | Mapping[str, Any] | str | None, *, samples: int | None = None,
    progress: Progress | None = None,
) -> XRay:
    """Local and accumulated error of every compressible layer of ``model`` under ``recipe``."""
    recipe = as_recipe(recipe)
    refusal = hook_refusal(model)
    if refusal is not None:
        raise CompressionError(refusal)
    data = require_evaluation(model)
    progress = progress or (lambda done, total, label: None)
    progress(0, 1, "compress")
    result = compress(model, recipe)
    compressed_names = tuple(layer.name for layer in result.report.layers)
    state = model.module.state_dict(keep_vars=True)
    originals = {name: state[name].detach() for name in (*model.compressible, *compressed_names)}
    layer_types = {**{name: "included" for name in compressed_names}, **model.layer_types}
    owners = layer_owners(result.module, layer_types)
    progress(0, 1, "record")
    stand_ins = {name: originals[name] for name in compressed_names}  # the original model, run in the copy
    if samples is None:
        first = record(result.module, tuple(tensor[:1] for tensor in data.inputs), data.batch_size, stand_ins, owners)
        samples = max(1, ACTIVATION_BUDGET_BYTES // max(first.nbytes, 1))
    subset = evaluation_subset(data, samples)
    recording = record(result.module, subset.inputs, data.batch_size, stand_ins, owners)
    owners = {name: owner for name, owner in owners.items() if owner.module_name in recording.calls}
    if not owners:
        raise CompressionError(
            f"none of {model.name}'s layers ran as a module the X-ray can hook (a flat graph calls its "
            "weights directly); load the model's PyTorch version for an X-ray."
        )
    probe = _Probe(model, recipe, result.module, owners, recording, originals, compressed_names)
    empty = XRay((), math.nan, math.nan, recording.rows, subset.description,
                 tuple(name for name in model.compressible if name not in owners), probe=probe)
    return _measured(empty, {}, set(owners), progress)


def what_if(scan: XRay, layer: str, change: str) -> XRay:
    """``scan`` measured again with ``layer``'s weight changed: ``keep_float``, ``more_bits``
    (two more) or ``less_pruning`` (half the fraction it prunes)."""
    if change not in WHAT_IFS:
        raise RecipeError(f"change must be one of {', '.join(map(repr, WHAT_IFS))}; got {change!r}.")
    if layer not in scan.probe.owners:
        raise RecipeError(f"layer must be one of the X-ray's layers; got {layer!r}.")
    weight, override = _what_if_weight(scan.probe, layer, change)
    changed = XRay(scan.rows, scan.output_sqnr_db, scan.output_cosine, scan.samples, scan.data, scan.not_run,
                   (*scan.changes, WhatIf(layer, change, override)), scan.weights, scan.probe)
    return _measured(changed, {**scan.weights, layer: weight}, {layer})


def layer_detail(scan: XRay, layer: str) -> LayerDetail:
    """The input activations' per-channel max |x| and kurtosis of ``layer`` over the recorded
    rows, and its weight's per-output-channel ranges, original and as compressed."""
    probe = scan.probe
    owner = probe.owners[layer]
    axis = 1 if isinstance(owner.module, _CONVOLUTIONS) else -1
    inputs = [call.args[0] for call in probe.recording.calls[owner.module_name]
              if call.args and isinstance(call.args[0], torch.Tensor) and call.args[0].is_floating_point()]
    maxima = kurtosis = None
    if inputs:
        joined = torch.cat([tensor.movedim(axis, -1).reshape(-1, tensor.shape[axis]) for tensor in inputs])
        maxima, kurtosis = channel_maxima(joined, -1).numpy(), channel_kurtosis(joined, -1).numpy()
    output_axis = probe.model.output_axes.get(layer, CHANNELS_ON_AXIS_0)
    return LayerDetail(layer, maxima, kurtosis, output_channel_ranges(probe.originals[layer], output_axis),
                       output_channel_ranges(_weight(scan, scan.weights, layer), output_axis))


# --- measuring ----------------------------------------------------------------------------------


def _measured(scan: XRay, weights: Mapping[str, torch.Tensor], local: set[str], progress: Progress | None = None) -> XRay:
    """``scan`` with the local errors of ``local`` and every accumulated error measured anew."""
    probe = scan.probe
    progress = progress or (lambda done, total, label: None)
    previous = {row.name: row for row in scan.rows}
    progress(0, len(local) + 1, "accumulated")
    errors, output_error = compare(probe.module, probe.recording, weights, probe.owners)
    order = {module: index for index, module in enumerate(probe.recording.order)}
    rows = []
    for position, name in enumerate(sorted(probe.owners, key=lambda name: order[probe.owners[name].module_name])):
        owner = probe.owners[name]
        weight = _weight(scan, weights, name)
        lossless = torch.equal(weight, probe.originals[name])
        if name in local:
            progress(len(rows) + 1, len(local) + 1, name)
            measured = None if lossless else replay(owner, probe.recording.calls[owner.module_name], weight)
            sqnr, cosine = (math.inf, 1.0) if measured is None else (measured.sqnr_db, measured.cosine)
        else:
            sqnr, cosine = previous[name].local_sqnr_db, previous[name].local_cosine
        error = errors[owner.module_name]
        rows.append(LayerError(name, position, owner.module_name, not lossless, sqnr, cosine, error.sqnr_db, error.cosine))
    return XRay(tuple(rows), output_error.sqnr_db, output_error.cosine, scan.samples, scan.data, scan.not_run,
                scan.changes, weights, probe)


def _weight(scan: XRay, weights: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
    """The weight ``name`` has in this X-ray: a what-if's, else the compressed copy's."""
    if name in weights:
        return weights[name]
    owner = scan.probe.owners[name]
    return getattr(owner.module, owner.attribute).detach()


def hook_refusal(model: LoadedModel) -> str | None:
    """Why the X-ray cannot watch ``model``'s layers (None where it can): it needs module hooks."""
    if isinstance(model.module, torch.jit.ScriptModule):
        return DisplayText("xray_torchscript", f"{model.name} is a TorchScript module: its layers take no hooks, which "
                           "the X-ray needs.", model=model.name)
    if isinstance(model.module, ForeignRuntimeModule):
        return DisplayText("xray_foreign_runtime", f"{model.name} runs in {model.module.runtime}: its layers take no "
                           "hooks, which the X-ray needs.", model=model.name, runtime=model.module.runtime)
    if model.format == "torch_export":
        return DisplayText("xray_export_program", f"{model.name} is a torch.export program: it calls its weights "
                           "directly, so its layers take no hooks, which the X-ray needs.", model=model.name)
    return None


# --- what-ifs -----------------------------------------------------------------------------------


def _what_if_weight(probe: _Probe, name: str, change: str) -> tuple[torch.Tensor, dict[str, Any]]:
    """The weight ``change`` gives ``name``, and the recipe override it stands for."""
    original = probe.originals[name]
    if change == KEEP_FLOAT:
        return original, {"prune": None, "quantize": None}
    prune, quantize = probe.recipe.specs_for(name) if name in probe.compressed_names else (None, None)
    for method in ([prune.method] if prune else []) + ([quantize.scheme] if quantize else []):
        if method not in DATA_FREE_PRUNING + DATA_FREE_SCHEMES:
            raise RecipeError(f"{name} is compressed by {method!r}, which looks at data: only keeping it float is a "
                              "what-if here; change the recipe and run the X-ray again for the others.")
    if change == MORE_BITS:
        if quantize is None:
            raise RecipeError(f"{name} is not quantized by the recipe: there are no bits to add.")
        if quantize.scheme == "float":
            raise RecipeError(f"{name} is cast to {quantize.format}, a float format of fixed width: there are no bits to add.")
        bits = min(quantize.bits + BITS_ADDED, SCHEME_BITS[quantize.scheme][1])
        if bits == quantize.bits:
            raise RecipeError(f"{name} already has the most bits {quantize.scheme} takes ({bits}).")
        kept = original if prune is None else original.where(_kept(probe, name, prune), torch.zeros((), dtype=original.dtype))
        fields = {**quantize.to_dict(), "bits": bits}
        return _compressed_alone(probe, name, kept, {"quantize": fields}), {"quantize": {"bits": bits}}
    if prune is None:
        raise RecipeError(f"{name} is not pruned by the recipe: there is no pruning to lessen.")
    fields = _halved(probe, name, prune)
    sections = {"prune": fields, **({"quantize": quantize.to_dict()} if quantize is not None else {})}
    return _compressed_alone(probe, name, original, sections), {"prune": fields}


def _halved(probe: _Probe, name: str, prune: PruneSpec) -> dict[str, Any]:
    """A prune section for ``name`` alone that removes half the fraction ``prune`` removes there
    (n:m: keeps n + ⌈(m − n) / 2⌉ of every m)."""
    fields = prune.to_dict()
    if prune.method == "n:m":
        return {**fields, "n": prune.n + (prune.m - prune.n + 1) // 2}
    if prune.scope == "layer" and prune.amount is not None:
        fraction = prune.amount
    else:  # a global cut or a threshold removes its own fraction in each layer: measure it
        fraction = 1.0 - float(_kept(probe, name, prune).double().mean())
    fields.pop("threshold", None)
    return {**fields, "amount": fraction / 2, "scope": "layer"}


def _kept(probe: _Probe, name: str, prune: PruneSpec) -> torch.Tensor:
    """The keep-mask the recipe's pruning gives ``name``: computed over every layer that shares a
    global cut with it, in compress's order, as compress does."""
    if name not in probe.masks:
        pooled = prune.scope == "global" and prune.method != "n:m"
        names = [other for other in probe.compressed_names
                 if other == name or (pooled and probe.recipe.specs_for(other)[0] == prune)]
        masks = compute_masks({other: probe.originals[other] for other in names}, {other: prune for other in names},
                              output_axes=probe.model.output_axes)
        probe.masks.update({other: mask.keep for other, mask in masks.items()})
    return probe.masks[name]


def _compressed_alone(probe: _Probe, name: str, weight: torch.Tensor, sections: dict[str, Any]) -> torch.Tensor:
    """``compress`` of one weight as its layer type, output axis and all, with ``sections``."""
    holder = nn.Module()
    holder.register_parameter("weight", nn.Parameter(weight.detach(), requires_grad=False))
    alone = LoadedModel(
        name=f"{probe.model.name}:{name}", format="module", module=holder,
        layer_types={"weight": probe.model.layer_types.get(name, "included")}, example_inputs=(), evaluation=None,
        output_axes={"weight": probe.model.output_axes.get(name, CHANNELS_ON_AXIS_0)},
    )
    return compress(alone, sections).module.weight.detach()
