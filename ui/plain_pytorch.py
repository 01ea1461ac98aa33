"""A recipe written out in plain PyTorch: ``torch.nn.utils.prune`` and ``torch.fake_quantize_*``.

The snippet is for reading and running beside the engine, not instead of it: it reproduces the
engine's zeros and values where torch has a function that means the same thing, and names the
rest (N:M, Wanda, power of two, k-means, …) as missing rather than guessing. Where the two
agree the test suite executes the snippet and compares every weight with ``compress``'s.

What makes them agree (``compression/pruning.py``, ``compression/quantization/linear.py``):

- by amount, torch prunes ``round(amount · n)`` entries, the engine the same count (fewer only
  where scores tie with the cut); ``global_unstructured`` pools tensors as the global scope does;
- structured scores are mean |w| (L1) or RMS (L2) per output channel; within one tensor they
  rank channels as torch's L1 / L2 norms do, so ``ln_structured`` matches per layer;
- the symmetric grid is ``-(2^(b-1) - 1) … 2^(b-1) - 1`` (no ``-2^(b-1)`` code), the asymmetric
  range always holds 0, and an all-zero group keeps scale 1: the snippet computes the same
  scales and zero points and hands them to ``fake_quantize``.

>>> snippet = pruning_snippet({"prune": {"method": "magnitude", "amount": 0.5, "scope": "global"}}, ["fc.weight"])
>>> "prune.global_unstructured" in snippet.code, snippet.missing
(True, ())
>>> quantization_snippet({"quantize": {"scheme": "pow2", "bits": 4}}, ["fc.weight"]).missing
('pow2',)
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from compression.output_axes import CHANNELS_ON_AXIS_0, OutputAxis
from compression.recipe import PruneSpec, QuantizeSpec, Recipe

MODEL_NOTE = "# model: the torch.nn.Module to compress (torch works in place: use a fresh copy)"
INDENT = "    "


@dataclass(frozen=True)
class Snippet:
    """Runnable code (None where no part of the section can be written) and what it leaves out:
    codes such as ``"n_m"`` or ``"pow2"`` that the page explains (``teaching.missing.<code>``)."""

    code: str | None
    missing: tuple[str, ...]


def pruning_snippet(recipe: Mapping, parameters: Sequence[str], output_axes: Mapping[str, OutputAxis] | None = None,
                    source: str | None = None) -> Snippet:
    """The recipe's prune section with ``torch.nn.utils.prune``, over ``parameters`` (the
    model's compressible weights); ``source`` names a sample model to load, else ``model`` is given."""
    lines, missing = _prune_lines(Recipe.from_dict(recipe), parameters, output_axes or {})
    return _snippet(["import torch", "from torch.nn.utils import prune"], lines, missing, recipe, source)


def quantization_snippet(recipe: Mapping, parameters: Sequence[str], output_axes: Mapping[str, OutputAxis] | None = None,
                         source: str | None = None) -> Snippet:
    """The recipe's quantize section with ``torch.fake_quantize_*`` (or a float cast), after its
    prune section where it has one: the engine prunes first, then rounds what is left."""
    parsed, axes = Recipe.from_dict(recipe), output_axes or {}
    prune_lines, prune_missing = _prune_lines(parsed, parameters, axes)
    quantize_lines, quantize_missing = _quantize_lines(parsed, parameters, axes)
    imports = ["import torch"]
    if prune_lines:
        imports.append("from torch.nn.utils import prune")
    return _snippet(imports, prune_lines + quantize_lines, prune_missing + quantize_missing, recipe, source,
                    nothing_written=not quantize_lines)


def _snippet(imports: list[str], lines: list[str], missing: tuple[str, ...], recipe: Mapping, source: str | None,
             nothing_written: bool = False) -> Snippet:
    if "include" in recipe:
        missing += ("include",)
    if not lines or nothing_written:
        return Snippet(None, missing)
    if any("math." in line for line in lines):  # the RMS of structured pruning by θ
        imports = ["import math", *imports]
    model = ["import compression", "", f"model = compression.load_model({source!r}).module  # a fresh copy"] \
        if source else ["", MODEL_NOTE]
    return Snippet("\n".join(imports + model + lines), missing)


def _targets(recipe: Recipe, parameters: Sequence[str], section: int) -> dict[str, PruneSpec | QuantizeSpec]:
    """Each selected parameter's spec for one section (0: prune, 1: quantize), where it has one."""
    specs = {name: recipe.specs_for(name)[section] for name in parameters if recipe.selects(name, True)}
    return {name: spec for name, spec in specs.items() if spec is not None}


def _grouped(specs: Mapping[str, PruneSpec | QuantizeSpec]) -> dict:
    """Parameters by spec, in model order: tensors that share a spec share a block of code."""
    groups: dict = {}
    for name, spec in specs.items():
        groups.setdefault(spec, []).append(name)
    return groups


def _module_list(names: Sequence[str]) -> list[str]:
    """``parameters = [(module, "weight"), …]`` as torch's pruning functions take them."""
    pairs = []
    for name in names:
        module, _, attribute = name.rpartition(".")
        pairs.append(f"{INDENT}(model.get_submodule({module!r}), {attribute!r}),")
    return ["parameters = [", *pairs, "]"]


def _axis(output_axes: Mapping[str, OutputAxis], names: Sequence[str]) -> int | None:
    """The output axis the group's tensors share, as a dim torch takes; None where it is one a
    plain call cannot take (a grouped ConvTranspose, or tensors that differ)."""
    axes = {output_axes.get(name, CHANNELS_ON_AXIS_0) for name in names}
    if len(axes) != 1:
        return None
    (axis,) = axes
    return axis.axis if axis.groups == 1 else None


# --- pruning ---------------------------------------------------------------------------------


def _prune_lines(recipe: Recipe, parameters: Sequence[str], output_axes: Mapping[str, OutputAxis]) -> tuple[list[str], tuple[str, ...]]:
    lines: list[str] = []
    missing: list[str] = []
    for spec, names in _grouped(_targets(recipe, parameters, 0)).items():
        block = _prune_block(spec, _axis(output_axes, names))
        if isinstance(block, str):
            missing.append(block)
            continue
        lines += ["", *_module_list(names), *block,
                  "for module, name in parameters:",
                  f"{INDENT}prune.remove(module, name)  # the zeros made permanent: weight = weight_orig * weight_mask"]
    return lines, tuple(dict.fromkeys(missing))


def _prune_block(spec: PruneSpec, axis: int | None) -> list[str] | str:
    """The calls for one group of tensors, or the code of why there is none."""
    if spec.method == "n:m":
        return "n_m"
    if spec.method in ("wanda", "sparsegpt"):
        return spec.method
    if spec.method == "structured":
        return _structured_block(spec, axis)
    if spec.method == "random":
        method, single = "prune.RandomUnstructured", "prune.random_unstructured"
        seeded = [f"torch.manual_seed({spec.seed})  # the engine draws its own seeded scores: as many zeros, other positions"]
    else:
        method, single, seeded = "prune.L1Unstructured", "prune.l1_unstructured", []
    if spec.threshold is not None:
        return ["for module, name in parameters:  # one θ for every layer: the scope changes nothing",
                f"{INDENT}prune.custom_from_mask(module, name, mask=getattr(module, name).abs() >= {spec.threshold!r})"]
    if spec.scope == "global":
        return [*seeded, f"prune.global_unstructured(parameters, pruning_method={method}, amount={spec.amount!r})"]
    return [*seeded, "for module, name in parameters:", f"{INDENT}{single}(module, name, amount={spec.amount!r})"]


def _structured_block(spec: PruneSpec, axis: int | None) -> list[str] | str:
    if spec.threshold is None and spec.scope == "global":
        return "global_structured"
    if axis is None or (spec.threshold is not None and axis != 0):
        return "output_axis"
    if spec.threshold is None:
        norm = 1 if spec.norm == "l1" else 2
        return ["for module, name in parameters:  # the L1 (L2) norm ranks a layer's channels as mean |w| (RMS) does",
                f"{INDENT}prune.ln_structured(module, name, amount={spec.amount!r}, n={norm}, dim={axis})"]
    score = ("rows.abs().mean(dim=1, dtype=torch.float64).float()  # mean |w| per output channel (L1)"
             if spec.norm == "l1" else
             "(torch.linalg.vector_norm(rows, dim=1, dtype=torch.float64) / math.sqrt(rows.shape[1])).float()  # RMS (L2)")
    return ["for module, name in parameters:",
            f"{INDENT}weight = getattr(module, name)",
            f"{INDENT}rows = weight.reshape(weight.shape[0], -1)  # one row per output channel",
            f"{INDENT}score = {score}",
            f"{INDENT}keep = (score >= {spec.threshold!r})[:, None].expand(rows.shape).reshape(weight.shape)",
            f"{INDENT}prune.custom_from_mask(module, name, mask=keep)"]


# --- quantization ----------------------------------------------------------------------------

FLOAT_DTYPES = {"fp16": "torch.float16", "bf16": "torch.bfloat16",
                "fp8_e4m3": "torch.float8_e4m3fn", "fp8_e5m2": "torch.float8_e5m2"}


def _quantize_lines(recipe: Recipe, parameters: Sequence[str], output_axes: Mapping[str, OutputAxis]) -> tuple[list[str], tuple[str, ...]]:
    lines: list[str] = []
    missing: list[str] = []
    for spec, names in _grouped(_targets(recipe, parameters, 1)).items():
        block = _quantize_block(spec, _axis(output_axes, names))
        if isinstance(block, str):
            missing.append(block)
            continue
        lines += ["", "with torch.no_grad():", f"{INDENT}for name in {list(names)!r}:",
                  f"{INDENT * 2}w = model.get_parameter(name)", *(INDENT * 2 + line for line in block)]
    return lines, tuple(dict.fromkeys(missing))


def _quantize_block(spec: QuantizeSpec, axis: int | None) -> list[str] | str:
    """The loop body that rounds one tensor ``w`` in place, or the code of why there is none."""
    if spec.scheme == "float":
        return [f"w.copy_(w.to({FLOAT_DTYPES[spec.format]}).float())  # the cast and back: the engine stores the cast's bits"]
    if spec.scheme != "linear":
        return spec.scheme  # pow2, kmeans, gptq, awq
    if spec.bits == 1:
        return "binary"
    if axis is None or (axis != 0 and spec.granularity == "per_group"):
        return "output_axis" if spec.granularity != "per_tensor" else _linear_block(spec, 0)
    return _linear_block(spec, axis)


def _linear_block(spec: QuantizeSpec, axis: int) -> list[str]:
    """compression.quantization.linear's scales and zero points, rounded by fake_quantize."""
    if spec.symmetric:
        qmin, qmax = -(2 ** (spec.bits - 1) - 1), 2 ** (spec.bits - 1) - 1
        grid = f"# codes {qmin} … {qmax}: the engine's symmetric grid leaves out {qmin - 1}, zero point 0"
    else:
        qmin, qmax = 0, 2**spec.bits - 1
        grid = f"# codes 0 … {qmax} over [min, max] widened to hold 0: the zero point decodes to exactly 0"
    if spec.granularity == "per_tensor":
        lines, values, largest, smallest = [], "w", "max()", "min()"
        rounded = f"torch.fake_quantize_per_tensor_affine(w, scale, zero_point, {qmin}, {qmax})"
    elif spec.granularity == "per_channel":
        rows = "w.reshape(w.shape[0], -1)" if axis == 0 else f"w.movedim({axis}, 0).reshape(w.shape[{axis}], -1)"
        lines, values, largest, smallest = [f"rows = {rows}  # one row per output channel"], "rows", "amax(dim=1)", "amin(dim=1)"
        rounded = f"torch.fake_quantize_per_channel_affine(w, scale, zero_point, {axis}, {qmin}, {qmax})"
    else:
        size = spec.group_size
        lines = ["rows = w.reshape(w.shape[0], -1)",
                 f"groups = torch.nn.functional.pad(rows, (0, -rows.shape[1] % {size})).reshape(-1, {size})"
                 f"  # runs of {size} along each row, the last zero-padded"]
        values, largest, smallest = "groups", "amax(dim=1)", "amin(dim=1)"
        rounded = f"torch.fake_quantize_per_channel_affine(groups, scale, zero_point, 0, {qmin}, {qmax})"
    if spec.symmetric:
        lines += [grid, f"scale = {values}.abs().{largest} / {qmax}",
                  "scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero group keeps scale 1",
                  "zero_point = torch.zeros_like(scale, dtype=torch.int32)"]
    else:
        lines += [grid, f"low, high = {values}.{smallest}.clamp(max=0), {values}.{largest}.clamp(min=0)",
                  f"scale = (high - low) / {qmax}",
                  "scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero group keeps scale 1",
                  f"zero_point = torch.round(-low / scale).clamp(0, {qmax}).to(torch.int32)"]
    if spec.granularity == "per_group":
        return lines + [f"rounded = {rounded}",
                        "w.copy_(rounded.reshape(rows.shape[0], -1)[:, :rows.shape[1]].reshape(w.shape))"]
    return lines + [f"w.copy_({rounded})"]


__all__ = ["Snippet", "pruning_snippet", "quantization_snippet"]
