"""The calibration pass ``compress`` runs for a recipe with Wanda, SparseGPT, GPTQ or AWQ.

One forward pass of the recipe's calibration rows, in one batch, through the compressed copy:
when a calibrated layer first runs, its inputs, which already come from the layers compressed
before it, are read, the layer is compressed on them (``calibrated.recipe_layer``) and runs on
with its new weight (``calibrated.watch``), so each layer sees what the compressed model feeds
it, as the papers' reference code does. Layers that need no data are compressed before the pass.
A program exported with a static batch takes its rows in batches of that size instead, a round
of them per layer. Padding tokens (where an attention mask says so) are left out of the inputs.

Wanda with ``"scope": "global"`` cuts once over every such layer's scores |W_ij|·‖X_j‖₂: a first
pass reads their inputs on the copy with only the data-free compressions in place (no calibrated
layer changed yet), the cut is taken over all their scores at once (``compute_masks``, as a
global magnitude cut over the scores), and the masks are applied in the sequential pass, where
what else the recipe does to those layers (rounding) still sees the compressed layers before.

GPTQ and AWQ leave the LM head in float, as llm-compressor does (its ``ignore=["lm_head"]``):
the head is the tensor named ``lm_head.weight`` (under any prefix), or the one it is tied to.
A recipe asks for it by a pattern, in ``include`` or an override with a quantize section, that
matches the head and no other compressed tensor (``"lm_head.weight"``, not ``"*"``).
"""
from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from compression.calibrated.hessian import InputStatistics
from compression.calibrated.recipe_layer import CompressedLayer, compress_layer
from compression.calibrated.wanda import wanda_scores
from compression.calibrated.watch import Batch, watch_in_rounds, watch_layers
from compression.calibration import calibration_fingerprint, calibration_inputs
from compression.errors import CompressionError
from compression.model import ForeignRuntimeModule, LoadedModel
from compression.model_inputs import STATIC
from compression.output_axes import CHANNELS_ON_AXIS_0
from compression.pruning import PruneMask, compute_masks
from compression.recipe import PruneSpec, QuantizeSpec, Recipe

Sections = tuple[PruneSpec | None, QuantizeSpec | None]
WATCHED_LAYERS = ("Linear", "Conv1d", "Conv2d")  # what calibrated.layer_inputs unfolds
LM_HEAD = "lm_head.weight"


@dataclass(frozen=True)
class CalibrationRecord:
    """Which rows calibrated a compression: the recipe's settings, how many rows the source gave,
    their fingerprint (``compression.calibration``) and where they came from."""

    samples: int
    seed: int
    rows: int
    fingerprint: str
    source: str

    def to_dict(self) -> dict[str, object]:
        return {"samples": self.samples, "seed": self.seed, "rows": self.rows, "fingerprint": self.fingerprint,
                "source": self.source}


def methods(section_pairs: list[Sections]) -> list[str]:
    """The calibrated methods among ``section_pairs``, sorted."""
    return sorted({spec.method if isinstance(spec, PruneSpec) else spec.scheme
                   for pair in section_pairs for spec in pair if spec is not None and spec.calibrated})


def _head_names(targets: list[str], tied: Mapping[str, str]) -> dict[str, set[str]]:
    """Each target that is an LM head, with every name it goes by."""
    names = {target: {target} for target in targets}
    for alias, primary in tied.items():
        if primary in names:
            names[primary].add(alias)
    return {target: all_names for target, all_names in names.items()
            if any(name == LM_HEAD or name.endswith("." + LM_HEAD) for name in all_names)}


def _asks_for(recipe: Recipe, names: set[str], others: list[str]) -> bool:
    patterns = [*recipe.include, *(o.pattern for o in recipe.overrides if o.sets_quantize and o.quantize_fields)]
    return any(
        any(fnmatch.fnmatchcase(name, pattern) for name in names)
        and not any(fnmatch.fnmatchcase(other, pattern) for other in others)
        for pattern in patterns
    )


def layer_sections(recipe: Recipe, targets: list[str], tied: Mapping[str, str]) -> dict[str, Sections]:
    """Each target's prune and quantize sections, GPTQ and AWQ taken off an LM head not asked for."""
    sections = {name: recipe.specs_for(name) for name in targets}
    for head, names in _head_names(targets, tied).items():
        prune, quantize = sections[head]
        if quantize is not None and quantize.calibrated:
            if not _asks_for(recipe, names, [name for name in targets if name != head]):
                sections[head] = (prune, None)
    return sections


def _refuse_unwatchable(loaded: LoadedModel, asked: list[str]) -> None:
    module = loaded.module
    if isinstance(module, torch.jit.ScriptModule):
        what = "a TorchScript module"
    elif isinstance(module, ForeignRuntimeModule):
        what = f"a model run by {module.runtime}"
    else:
        return
    raise CompressionError(
        f"{' and '.join(asked)} must watch each layer run on calibration rows, which {loaded.name} ({what}) "
        "does not allow: compress the eager PyTorch model or a .pt2 program of it."
    )


def _check_layers(loaded: LoadedModel, names: list[str], sections: Mapping[str, Sections]) -> None:
    for name in names:
        kind = loaded.layer_types.get(name, "included")
        if kind not in WATCHED_LAYERS or loaded.output_axes.get(name, CHANNELS_ON_AXIS_0) != CHANNELS_ON_AXIS_0:
            raise CompressionError(
                f"{' and '.join(methods([sections[name]]))} compress the weights of Linear, Conv1d and Conv2d "
                f"layers by their inputs; {name!r} is a {kind}'s: exclude it or give it a method that needs no "
                "data in an override."
            )


def token_mask(loaded: LoadedModel, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor | None:
    """Which tokens are real (True) where the second input is an attention mask: 0s and 1s of
    the token ids' shape, as text models take ``(input_ids, attention_mask)``, and not named
    otherwise by the model's file. None where every token counts."""
    if len(inputs) < 2 or inputs[1].shape != inputs[0].shape or inputs[1].is_floating_point():
        return None
    if len(loaded.input_specs) > 1 and loaded.input_specs[1].name != "attention_mask":
        return None
    mask = inputs[1]
    if not bool(((mask == 0) | (mask == 1)).all()) or bool((mask == 1).all()):
        return None
    return mask == 1


def _without_trailing_padding(
    inputs: tuple[torch.Tensor, ...], mask: torch.Tensor | None
) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None]:
    """The token inputs cut after the longest row's last real token, where every row is padded
    on the right: the pass then computes no column that is padding in every row."""
    if mask is None or mask.ndim != 2 or bool((mask[:, 1:] > mask[:, :-1]).any()):
        return inputs, mask
    length = int(mask.sum(dim=1).max())
    shape = mask.shape
    return tuple(tensor[:, :length] if tensor.shape == shape else tensor for tensor in inputs), mask[:, :length]


def _parameters(module: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    state = module.state_dict(keep_vars=True)  # the tensors themselves, as the layers are called with them
    return {name: state[name] for name in names}


class _Rows:
    """The calibration rows and how they run through the model: in one batch, or, for a model
    that takes a fixed batch, in rounds over batches of it (``watch.watch_in_rounds``)."""

    def __init__(self, loaded: LoadedModel, rows: tuple[torch.Tensor, ...], mask: torch.Tensor | None) -> None:
        self.batch = _static_batch(loaded)
        if self.batch is None:
            self.rows, self.mask = _without_trailing_padding(rows, mask)
        else:
            self.batches = _batches(rows, mask, self.batch)

    def watch(self, module: nn.Module, weights: Mapping[str, torch.Tensor],
              on_layers: Callable[[list[str], torch.Tensor | InputStatistics], None]) -> set[str]:
        """Call ``on_layers(names, inputs)`` as the layers of ``weights`` first run; the names reached."""
        if self.batch is None:
            return watch_layers(module, self.rows, weights, lambda name, x: on_layers([name], x), self.mask)
        return watch_in_rounds(module, self.batches, weights, on_layers)


def _static_batch(loaded: LoadedModel) -> int | None:
    """The batch a program was exported with, where its file fixes it."""
    for spec in loaded.input_specs:
        if spec.batch_axis is not None:
            dim = spec.dims[spec.batch_axis]
            return dim.size if dim.origin == STATIC else None
    return None


def _batches(rows: tuple[torch.Tensor, ...], mask: torch.Tensor | None, batch: int) -> list[Batch]:
    """``rows`` in batches of exactly ``batch``, a short last one filled by repeating its rows, which
    its mask leaves out (as the evaluation pads, ``compression.evaluation``)."""
    count = int(rows[0].shape[0])
    out = []
    for start in range(0, count, batch):
        index = torch.arange(start, min(start + batch, count))
        real = torch.arange(batch) < index.numel()
        index = index[torch.arange(batch) % index.numel()]
        part = mask[index] if mask is not None else None
        if part is not None:
            part = part & real.reshape(-1, *[1] * (part.ndim - 1))
        elif not bool(real.all()):
            part = real
        out.append((tuple(tensor[index] for tensor in rows), part))
    return out


class _SharedStatistics:
    """XᵀX of the last input matrix, kept for the next layer fed the very same one (an attention's
    key and value after its query): one product instead of three."""

    def __init__(self) -> None:
        self.inputs: torch.Tensor | None = None
        self.statistics: InputStatistics | None = None

    def of(self, inputs: torch.Tensor | InputStatistics) -> InputStatistics:
        if isinstance(inputs, InputStatistics):
            return inputs
        if inputs is not self.inputs:
            self.inputs, self.statistics = inputs, InputStatistics(inputs.shape[1]).add(inputs)
        return self.statistics


def _wanda_global_masks(rows: _Rows, working: nn.Module, sections: Mapping[str, Sections]) -> dict[str, PruneMask]:
    """One cut over the Wanda scores of every layer whose section prunes with scope global."""
    specs = {name: prune for name, (prune, _) in sections.items()
             if prune is not None and prune.method == "wanda" and prune.scope == "global" and prune.amount is not None}
    if not specs:
        return {}
    weights = _parameters(working, list(specs))
    scores: dict[str, torch.Tensor] = {}

    def read(names: list[str], inputs: torch.Tensor | InputStatistics) -> None:
        for name in names:
            scores[name] = wanda_scores(weights[name], inputs)

    rows.watch(working, weights, read)
    cut = {name: PruneSpec("magnitude", amount=spec.amount, scope="global") for name, spec in specs.items() if name in scores}
    return compute_masks({name: scores[name] for name in cut}, cut)


def calibrate(
    loaded: LoadedModel, recipe: Recipe, working: nn.Module, sections: Mapping[str, Sections],
    masks: Mapping[str, PruneMask], progress: Callable[[float], None] | None = None,
) -> tuple[dict[str, CompressedLayer], dict[str, float | None], CalibrationRecord]:
    """Compress the calibrated layers of ``working`` in place, in the order the model runs them.

    ``sections`` holds the calibrated layers' sections, ``masks`` the masks chosen without data
    for some of them; ``progress`` hears the fraction of those layers done after each one (a
    dashboard's progress bar: SparseGPT on MiniLM takes half a minute). Returns each layer's
    values and codes, the cut θ of Wanda's global scope, and the record of the rows.
    """
    names = list(sections)
    asked = methods(list(sections.values()))
    _refuse_unwatchable(loaded, asked)
    _check_layers(loaded, names, sections)
    drawn = calibration_inputs(loaded, recipe.calibration)
    record = CalibrationRecord(recipe.calibration.samples, recipe.calibration.seed, int(drawn[0].shape[0]),
                               calibration_fingerprint(drawn), str(loaded.calibration.description))
    rows = _Rows(loaded, drawn, token_mask(loaded, drawn))
    keeps = {name: mask.keep for name, mask in masks.items()}
    global_masks = _wanda_global_masks(rows, working, sections)
    keeps.update({name: mask.keep for name, mask in global_masks.items()})
    weights = _parameters(working, names)
    results: dict[str, CompressedLayer] = {}
    shared = _SharedStatistics()

    def compress_on(group: list[str], inputs: torch.Tensor | InputStatistics) -> None:
        for name in group:
            prune, quantize = sections[name]
            # Wanda reads column norms only: no XᵀX where nothing else needs it.
            hessian = (prune is not None and prune.method == "sparsegpt") or (quantize is not None and quantize.calibrated)
            layer = compress_layer(weights[name].detach(), shared.of(inputs) if hessian else inputs, prune, quantize, keeps.get(name))
            with torch.no_grad():
                weights[name].copy_(layer.values.to(weights[name].dtype))
            results[name] = layer
            if progress is not None:
                progress(len(results) / len(names))

    reached = rows.watch(working, weights, compress_on)
    missing = [name for name in names if name not in reached]
    if missing:
        raise CompressionError(
            f"{' and '.join(asked)} need each layer's inputs, but {', '.join(map(repr, missing[:3]))}"
            f"{' and others' if len(missing) > 3 else ''} never ran as a linear layer or convolution on the "
            "calibration rows: exclude them or give them a method that needs no data in an override."
        )
    thresholds = {name: mask.threshold for name, mask in global_masks.items()}
    return results, thresholds, record
