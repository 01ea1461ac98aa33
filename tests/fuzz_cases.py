"""Fuzz cases for the engine: random small models, random recipes, and the invariants of one case.

Shared by ``tests/test_fuzz.py`` (a short hypothesis run under pytest) and ``bench/fuzz.py``
(a long run that counts cases and failures). A case is a :class:`ModelSpec` (a plain,
printable description that builds the module) and a recipe (a dict, or its JSON text);
:func:`check_case` compresses it and asserts every invariant, raising ``AssertionError`` on
a broken one and letting any exception other than a ``CompressionError`` through.

>>> model = ModelSpec((LayerSpec("Linear", 3, 2, (), True, "normal", 1.0, 0),))
>>> check_case(model, {"prune": {"amount": 1.0}}).outcome
'compressed'
>>> check_case(model, {"quantize": {"bits": 0}}).outcome
'refused'
"""
from __future__ import annotations

import fnmatch
import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import hypothesis.strategies as st
import torch
from torch import nn

from compression import load_packed, save_packed
from compression.compress import compress, tied_names
from compression.errors import CompressionError
from compression.model import LoadedModel, module_layer_types
from compression.pruning import compute_masks
from compression.recipe import (
    FLOAT_FORMATS,
    GRANULARITIES,
    PRUNE_METHODS,
    PRUNE_SCOPES,
    QUANT_SCHEMES,
    SCHEME_BITS,
    STRUCTURED_NORMS,
    Recipe,
)

FLOAT_DTYPES = {
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "fp8_e4m3": torch.float8_e4m3fn,
    "fp8_e5m2": torch.float8_e5m2,
}
FILLS = ("normal", "zero", "sparse", "ties", "constant")
# Magnitudes of whole layers: ordinary, small, large, and near the ends of float32's normal range.
SCALES = (1.0, 1e-3, 1e3, 1e-30, 1e30)
_TINY = torch.finfo(torch.float32).tiny


# --- models ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerSpec:
    """One layer: ``kind`` Linear/Conv1d/Conv2d (or, for the odd-case model, ConvTranspose1d/2d
    and GPT-2's Conv1D: output channels on axis 1), its sizes, and how its weights are filled.

    ``fill``: ``normal`` (seeded N(0, 1)), ``zero`` (all zero), ``sparse`` (about half zeros,
    some of them -0.0), ``ties`` (integers -2..2: many exact ties), ``constant`` (one value);
    every value is multiplied by ``scale``.
    """

    kind: str
    inputs: int
    outputs: int
    kernel: tuple[int, ...]  # () for Linear
    bias: bool
    fill: str
    scale: float
    seed: int
    groups: int = 1

    def build(self) -> nn.Module:
        if self.kind == "Linear":
            layer: nn.Module = nn.Linear(self.inputs, self.outputs, bias=self.bias)
        elif self.kind == "Conv1D":
            from transformers.pytorch_utils import Conv1D  # transformers takes seconds to import

            layer = Conv1D(self.outputs, self.inputs)  # weight (inputs, outputs)
            if not self.bias:
                layer.register_parameter("bias", None)
        else:
            cls = getattr(nn, self.kind)
            layer = cls(self.inputs, self.outputs, self.kernel, groups=self.groups, bias=self.bias)
        generator = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            layer.weight.copy_(_filled(layer.weight.shape, self.fill, self.scale, generator))
            if self.bias:
                layer.bias.copy_(_filled(layer.bias.shape, "normal" if self.fill != "zero" else "zero", self.scale, generator))
        return layer

    def describe(self) -> str:
        kernel = "" if not self.kernel else " k" + "x".join(map(str, self.kernel))
        groups = f" groups {self.groups}" if self.groups > 1 else ""
        bias = "" if self.bias else " no bias"
        return f"{self.kind} {self.inputs}->{self.outputs}{kernel}{groups}{bias}, {self.fill} x{self.scale:g} seed {self.seed}"


def _filled(shape: torch.Size, fill: str, scale: float, generator: torch.Generator) -> torch.Tensor:
    if fill == "zero":
        return torch.zeros(shape)
    if fill == "constant":
        return torch.full(shape, scale)
    if fill == "ties":
        return torch.randint(-2, 3, shape, generator=generator).float() * scale
    values = torch.randn(shape, generator=generator) * scale
    if fill == "sparse":
        draw = torch.rand(shape, generator=generator)
        values = torch.where(draw < 0.3, torch.zeros(()), values)
        values = torch.where((draw >= 0.3) & (draw < 0.5), torch.full((), -0.0), values)
    return values


@dataclass(frozen=True)
class ModelSpec:
    """A ``nn.Sequential`` of ``layers``, optionally a BatchNorm1d after them (float and int64
    buffers) and a last Linear/Conv layer whose weight is the first layer's (tied weights).

    The layers are not meant to chain: the engine never runs the module.
    """

    layers: tuple[LayerSpec, ...]
    norm: int = 0  # BatchNorm1d features; 0: none
    tied: bool = False

    def module(self) -> nn.Sequential:
        modules = [layer.build() for layer in self.layers]
        if self.norm:
            norm = nn.BatchNorm1d(self.norm)
            generator = torch.Generator().manual_seed(self.norm)
            with torch.no_grad():
                norm.running_mean.copy_(torch.randn(self.norm, generator=generator))
                norm.running_var.copy_(torch.rand(self.norm, generator=generator) + 0.5)
                norm.num_batches_tracked.fill_(7)
            modules.append(norm)
        if self.tied:
            twin = self.layers[0].build()
            twin.weight = modules[0].weight  # the same Parameter: one tensor under two names
            modules.append(twin)
        return nn.Sequential(*modules).eval()

    def loaded(self) -> LoadedModel:
        module = self.module()
        return LoadedModel("fuzz", "module", module, module_layer_types(module), (), None)

    def describe(self) -> str:
        parts = [f"{index}: {layer.describe()}" for index, layer in enumerate(self.layers)]
        if self.norm:
            parts.append(f"{len(self.layers)}: BatchNorm1d {self.norm}")
        if self.tied:
            parts.append(f"{len(self.layers) + bool(self.norm)}: {self.layers[0].kind} sharing 0.weight")
        return "; ".join(parts)


def _one_in(draw: st.DrawFn, chances: int) -> bool:
    """True about once in ``chances`` draws; shrinks to False (hypothesis shrinks to the first choice)."""
    return draw(st.sampled_from(range(chances))) == chances - 1


@st.composite
def layer_specs(draw: st.DrawFn) -> LayerSpec:
    kind = draw(st.sampled_from(["Linear", "Conv1d", "Conv2d"]))
    groups = 1
    if kind == "Linear":
        inputs, outputs, kernel = draw(st.integers(1, 9)), draw(st.integers(1, 9)), ()
    else:
        groups = draw(st.sampled_from([1, 1, 2]))
        inputs, outputs = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
        sides = 1 if kind == "Conv1d" else 2
        kernel = tuple(draw(st.integers(1, 3)) for _ in range(sides))
    return LayerSpec(
        kind=kind,
        inputs=inputs,
        outputs=outputs,
        kernel=kernel,
        bias=draw(st.booleans()),
        fill=draw(st.sampled_from(FILLS)),
        scale=draw(st.sampled_from(SCALES)),
        seed=draw(st.integers(0, 2**16)),
        groups=groups,
    )


@st.composite
def model_specs(draw: st.DrawFn) -> ModelSpec:
    layers = tuple(draw(st.lists(layer_specs(), min_size=1, max_size=4)))
    return ModelSpec(layers, norm=draw(st.sampled_from([0, 0, 0, 1, 3])), tied=_one_in(draw, 5))


# --- recipes -----------------------------------------------------------------------------

AMOUNTS = st.one_of(st.sampled_from([0.0, 1.0, 0, 1, 0.5]), st.floats(0, 1))
THRESHOLDS = st.one_of(st.sampled_from([0.0, 0, 1e-3, 0.5, 1.0, 1e30]), st.floats(0, 3))


def _maybe(draw: st.DrawFn, key: str, strategy: st.SearchStrategy, often: bool = False) -> dict[str, Any]:
    """``{key: value}`` (half the time, or three times in four ``often``) or ``{}``: left out, a
    field takes its default."""
    present = draw(st.sampled_from([True, True, True, False])) if often else draw(st.booleans())
    return {key: draw(strategy)} if present else {}


@st.composite
def prune_sections(draw: st.DrawFn) -> dict[str, Any]:
    """A valid prune section of any method, sometimes with fields that method ignores."""
    method = draw(st.sampled_from(PRUNE_METHODS))
    section: dict[str, Any] = {"method": method} if method != "magnitude" or draw(st.booleans()) else {}
    if method == "n:m":
        m = draw(st.one_of(st.sampled_from([1, 2, 4, 64]), st.integers(1, 64)))
        section.update(n=draw(st.one_of(st.sampled_from([0, m]), st.integers(0, m))), m=m)
    else:
        if method == "random" or draw(st.booleans()):
            section["amount"] = draw(AMOUNTS)
        else:
            section["threshold"] = draw(THRESHOLDS)
        section.update(_maybe(draw, "scope", st.sampled_from(PRUNE_SCOPES)))
    # Fields that only other methods read: an override switching methods must not inherit them.
    section.update(_maybe(draw, "norm", st.sampled_from(STRUCTURED_NORMS)))
    section.update(_maybe(draw, "seed", st.integers(0, 2**31)))
    return section


@st.composite
def quantize_sections(draw: st.DrawFn) -> dict[str, Any]:
    """A valid quantize section of any scheme, sometimes with fields that scheme ignores."""
    scheme = draw(st.sampled_from(QUANT_SCHEMES))
    section: dict[str, Any] = {"scheme": scheme} if scheme != "linear" or draw(st.booleans()) else {}
    if scheme == "float":
        section["format"] = draw(st.sampled_from(FLOAT_FORMATS))
        section.update(_maybe(draw, "granularity", st.sampled_from(GRANULARITIES)))
        return section
    low, high = SCHEME_BITS[scheme]
    section.update(_maybe(draw, "bits", st.one_of(st.sampled_from([low, high]), st.sampled_from(range(low, high + 1))), often=True))
    granularities = ["per_tensor", "per_channel"] if scheme == "pow2" else list(GRANULARITIES)
    section.update(_maybe(draw, "granularity", st.sampled_from(granularities)))
    section.update(_maybe(draw, "group_size", st.one_of(st.sampled_from([1, 64, 1000]), st.integers(1, 9))))
    section.update(_maybe(draw, "symmetric", st.booleans()))
    return section


@st.composite
def partial_prune_sections(draw: st.DrawFn) -> dict[str, Any]:
    return draw(st.one_of(
        prune_sections(),
        st.fixed_dictionaries({"amount": AMOUNTS}),
        st.fixed_dictionaries({"threshold": THRESHOLDS}),
        st.fixed_dictionaries({"method": st.sampled_from(PRUNE_METHODS)}),
        st.fixed_dictionaries({"scope": st.sampled_from(PRUNE_SCOPES)}),
        st.fixed_dictionaries({"norm": st.sampled_from(STRUCTURED_NORMS)}),
        st.just({}),
    ))


@st.composite
def partial_quantize_sections(draw: st.DrawFn) -> dict[str, Any]:
    return draw(st.one_of(
        quantize_sections(),
        st.fixed_dictionaries({"bits": st.integers(1, 16)}),
        st.fixed_dictionaries({"scheme": st.sampled_from(QUANT_SCHEMES)}),
        st.fixed_dictionaries({"granularity": st.sampled_from(GRANULARITIES)}),
        st.fixed_dictionaries({"symmetric": st.booleans()}),
        st.fixed_dictionaries({"group_size": st.integers(1, 9)}),
        st.fixed_dictionaries({"format": st.sampled_from(FLOAT_FORMATS)}),
        st.just({}),
    ))


PATTERNS = ("*", "*.weight", "*.bias", "0.*", "1.weight", "[12].*", "?.weight", "*.running_mean", "nothing.*")


@st.composite
def overrides(draw: st.DrawFn) -> dict[str, Any]:
    """Glob → partial sections, ``null`` sections or an empty override; possibly no globs at all."""
    patterns = draw(st.lists(st.sampled_from(PATTERNS), max_size=3, unique=True))
    out = {}
    for pattern in patterns:
        override: dict[str, Any] = {}
        if draw(st.booleans()):
            override["prune"] = draw(st.one_of(st.none(), partial_prune_sections()))
        if draw(st.booleans()):
            override["quantize"] = draw(st.one_of(st.none(), partial_quantize_sections()))
        out[pattern] = override
    return out


# Values outside what each field accepts. Whether a mutated recipe must be refused is decided
# by the recipe's own validation, not assumed: a field the scheme ignores (float's symmetric)
# is not checked, and such a recipe compresses.
MUTATIONS: tuple[tuple[str, Any], ...] = (
    ("quantize.bits", 0), ("quantize.bits", 17), ("quantize.bits", "8"), ("quantize.bits", True), ("quantize.bits", 4.0),
    ("quantize.scheme", "int4"), ("quantize.granularity", "per_row"), ("quantize.group_size", 0),
    ("quantize.symmetric", "yes"), ("quantize.format", "fp4"), ("quantize.bitz", 4),
    ("prune.amount", -0.1), ("prune.amount", 1.5), ("prune.amount", math.nan), ("prune.amount", "half"),
    ("prune.threshold", -1.0), ("prune.threshold", math.inf), ("prune.threshold", math.nan),
    ("prune.method", "l0"), ("prune.scope", "model"), ("prune.norm", "l3"), ("prune.seed", -1), ("prune.amout", 0.5),
    ("prune", "magnitude"), ("quantize", 8), ("overrides", "fc*"), ("overrides", {"0.*": {"prune": 0.5}}),
    ("overrides", {"0.*": {"quantise": {}}}), ("include", ["no_such_parameter"]), ("include", [3]), ("exclude", 5),
    ("recipe", {"prunes": {}}),
)


def mutated(recipe: dict[str, Any], index: int) -> dict[str, Any]:
    """``recipe`` with one field set to a value outside what that field accepts."""
    path, value = MUTATIONS[index]
    recipe = json.loads(json.dumps(recipe))  # a deep copy
    if path == "recipe":
        recipe.update(value)
        return recipe
    section, _, key = path.partition(".")
    if not key:
        recipe[section] = value
        return recipe
    target = recipe.setdefault(section, {}) or {}
    recipe[section] = target
    if section == "prune" and key in ("amount", "threshold", "seed") and target.get("method") == "n:m":
        target["method"] = "magnitude"  # so the bad value, not n:m's "no amount" rule, is what fails
    if section == "prune" and key == "amount":
        target.pop("threshold", None)
    if section == "prune" and key == "threshold":
        target.pop("amount", None)
        target["method"] = "magnitude"
    if section == "quantize" and key == "bits":
        target["scheme"] = "linear"
    target[key] = value
    if section == "prune" and target.get("method", "magnitude") != "n:m" and "amount" not in target and "threshold" not in target:
        target["amount"] = 0.5  # so that the bad value, not a missing cut, is what fails
    return recipe


@st.composite
def recipes(draw: st.DrawFn) -> dict[str, Any]:
    """A recipe dict: any prune and quantize sections, overrides, include/exclude; about one in
    eight has one field set to a value outside what it accepts (see :data:`MUTATIONS`)."""
    recipe: dict[str, Any] = {}
    for key, strategy in (("prune", prune_sections()), ("quantize", quantize_sections())):
        presence = draw(st.sampled_from(["section", "section", "absent", "null"]))
        if presence != "absent":
            recipe[key] = draw(strategy) if presence == "section" else None
    if draw(st.booleans()):
        recipe["overrides"] = draw(overrides())
    if _one_in(draw, 5):
        recipe["include"] = draw(st.one_of(
            st.sampled_from(["*.bias", "0.bias"]),
            st.lists(st.sampled_from(["*.bias", "*.running_mean", "0.*"]), max_size=2),
        ))
    if _one_in(draw, 5):
        recipe["exclude"] = draw(st.lists(st.sampled_from(["0.*", "*.weight", "nothing", "1.weight"]), max_size=2))
    if _one_in(draw, 8):
        recipe = mutated(recipe, draw(st.sampled_from(range(len(MUTATIONS)))))
    return recipe


@st.composite
def cases(draw: st.DrawFn) -> tuple[ModelSpec, dict[str, Any] | str]:
    """A model and a recipe, the recipe given as a dict or as JSON text."""
    model = draw(model_specs())
    recipe = draw(recipes())
    return model, json.dumps(recipe) if draw(st.booleans()) else recipe


def case_labels(recipe: Mapping[str, Any] | str) -> list[str]:
    """What a recipe exercises, for counting: its prune method, scheme, granularity, extremes."""
    form = "json" if isinstance(recipe, str) else "dict"
    try:
        values = json.loads(recipe) if isinstance(recipe, str) else recipe
    except ValueError:
        return [f"form:{form}"]
    labels = [f"form:{form}"]
    prune = values.get("prune") if isinstance(values, Mapping) else None
    quantize = values.get("quantize") if isinstance(values, Mapping) else None
    if isinstance(prune, Mapping):
        labels.append(f"method:{prune.get('method', 'magnitude')}")
        if prune.get("amount") in (0, 1):
            labels.append(f"amount:{int(prune['amount'])}")
        if "threshold" in prune:
            labels.append("threshold")
        labels.append(f"scope:{prune.get('scope', 'layer')}")
    else:
        labels.append("method:none")
    if isinstance(quantize, Mapping):
        scheme = quantize.get("scheme", "linear")
        labels.append(f"scheme:{scheme}")
        if scheme == "float":
            labels.append(f"format:{quantize.get('format', 'fp16')}")
        else:
            labels.append(f"granularity:{quantize.get('granularity', 'per_channel')}")
            labels.append(f"symmetric:{quantize.get('symmetric', True)}")
            labels.append(f"bits:{quantize.get('bits', 8)}")
    else:
        labels.append("scheme:none")
    if isinstance(values, Mapping) and "overrides" in values:
        labels.append("overrides:empty" if not values["overrides"] else "overrides")
    return labels


# --- the invariants of one case ----------------------------------------------------------


@dataclass(frozen=True)
class CaseOutcome:
    """``compressed``, or ``refused`` with the CompressionError's message."""

    outcome: str
    message: str = ""


def _bits(tensor: torch.Tensor) -> tuple[torch.dtype, tuple[int, ...], bytes]:
    tensor = tensor.detach().contiguous()
    return tensor.dtype, tuple(tensor.shape), tensor.reshape(-1).view(torch.uint8).numpy().tobytes()


def _snapshot(module: nn.Module) -> dict[str, Any]:
    return {
        "state": {name: _bits(tensor) for name, tensor in module.state_dict().items()},
        "training": [sub.training for sub in module.modules()],
        "requires_grad": [p.requires_grad for p in module.parameters()],
    }


def _aliases(state: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """Each state-dict name that holds the same tensor as an earlier name, mapped to that name."""
    first: dict[tuple, str] = {}
    out = {}
    for name, tensor in state.items():
        if tensor.numel() == 0:
            continue
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride(), tensor.dtype)
        if key in first:
            out[name] = first[key]
        else:
            first[key] = name
    return out


def _as_recipe(recipe: Mapping[str, Any] | str) -> Recipe:
    return Recipe.from_json(recipe) if isinstance(recipe, str) else Recipe.from_dict(recipe)


def _is_positive_zero(values: torch.Tensor) -> torch.Tensor:
    return values.view(torch.int32) == 0


def _groups(values: torch.Tensor, granularity: str, group_size: int) -> list[torch.Tensor]:
    """The quantization groups of a tensor, output channels first, as flat tensors (README:
    output channels, input dimension)."""
    if granularity == "per_tensor" or values.ndim == 0:
        return [values.reshape(-1)]
    rows = values.reshape(values.shape[0], -1)
    if granularity == "per_channel":
        return list(rows)
    return [group for row in rows for group in row.split(group_size)]


def _n_m_groups(values: torch.Tensor, m: int) -> torch.Tensor:
    """Nonzero counts of every m consecutive weights along the input dimension (conv: out × k × in)."""
    if values.ndim > 2:
        values = values.movedim(1, -1)
    rows = values.reshape(values.shape[0], -1)  # a 1-D tensor (an included bias): one weight per row
    pad = (-rows.shape[1]) % m
    padded = torch.nn.functional.pad((rows != 0).int(), (0, pad))
    return padded.reshape(rows.shape[0], -1, m).sum(dim=2)


def _check_pruning(name: str, original: torch.Tensor, values: torch.Tensor, keep: torch.Tensor, spec: Any, threshold: float | None) -> None:
    assert keep.shape == original.shape, f"{name}: mask shape {tuple(keep.shape)}"
    assert bool(_is_positive_zero(values[~keep]).all()), f"{name}: a pruned weight is not exactly +0.0"
    if spec.method == "n:m":
        assert bool((_n_m_groups(values, spec.m) <= spec.n).all()), f"{name}: more than {spec.n} of {spec.m} kept"
        assert threshold is None, f"{name}: n:m pruning reports a threshold ({threshold})"
        return
    if spec.method == "random":
        assert threshold is None, f"{name}: random pruning reports a threshold ({threshold})"
    else:
        assert threshold is not None, f"{name}: magnitude or structured pruning reports no threshold ({spec.method})"
    if spec.amount == 0.0:
        assert bool(keep.all()), f"{name}: amount 0 pruned a weight"
    if spec.amount == 1.0:
        assert not bool(keep.any()), f"{name}: amount 1 kept a weight"
        assert bool(_is_positive_zero(values).all()), f"{name}: amount 1 left a non-zero"
    if spec.method == "structured":
        rows = keep.reshape(keep.shape[0], -1) if keep.ndim else keep.reshape(1, 1)
        assert bool((rows == rows[:, :1]).all()), f"{name}: structured pruning split an output channel"
        if spec.threshold is not None:
            channel = original.reshape(original.shape[0], -1).double()  # float32 squares overflow beyond 1.8e19
            score = (channel.abs().mean(dim=1) if spec.norm == "l1" else channel.square().mean(dim=1).sqrt()).float()
            assert bool((rows[:, 0] == (score >= spec.threshold)).all()), f"{name}: channels cut at θ={spec.threshold}"
    elif spec.method == "magnitude" and spec.threshold is not None:
        assert bool((keep == (original.abs() >= spec.threshold)).all()), f"{name}: weights cut at θ={spec.threshold}"
    if spec.scope == "layer" and spec.amount is not None:
        units = (~keep).reshape(keep.shape[0], -1)[:, 0] if spec.method == "structured" else ~keep
        assert int(units.sum()) <= round(spec.amount * units.numel()), f"{name}: pruned more than amount {spec.amount}"


def _check_quantization(name: str, pruned: torch.Tensor, values: torch.Tensor, spec: Any) -> None:
    if spec.scheme == "float":
        expected = pruned.to(FLOAT_DTYPES[spec.format]).float()
        expected = expected.masked_fill(expected == 0, 0.0)
        assert _bits(values) == _bits(expected), f"{name}: not torch's cast ({spec.format})"
        return
    granularity = "per_tensor" if spec.scheme == "kmeans" else spec.granularity
    for group, reference in zip(_groups(values, granularity, spec.group_size), _groups(pruned, granularity, spec.group_size)):
        distinct = torch.unique(group[group != 0])
        assert distinct.numel() <= 2**spec.bits, f"{name}: more levels in a group than the bits allow ({distinct.numel()} at {spec.bits} bits)"
        if spec.scheme == "pow2" and distinct.numel():
            mantissa, _ = torch.frexp(distinct.abs())
            assert bool((mantissa == 0.5).all()), f"{name}: a pow2 value that is not a power of two"
        if spec.scheme == "linear" and spec.symmetric and spec.bits > 1 and reference.numel():
            largest = float(reference.abs().max())
            step = largest / (2 ** (spec.bits - 1) - 1)
            if step >= _TINY:  # a subnormal scale has too few bits to hold the grid
                error = float((group.double() - reference.double()).abs().max())
                assert error <= step / 2 + largest * 2.0**-20, f"{name}: error {error:g} beyond half a step {step / 2:g}"


def _check_sizes(result: Any, state: Mapping[str, torch.Tensor], path: Path, written: int, rows: Any) -> None:
    report = result.report
    data = path.read_bytes()
    assert written == len(data) == report.file_bytes, f"file bytes: written {written}, on disk {len(data)}, reported {report.file_bytes}"
    header_length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_length])
    parts = {key: value for key, value in header.items() if key != "__metadata__"}
    sizes = {key: value["data_offsets"][1] - value["data_offsets"][0] for key, value in parts.items()}
    assert 8 + header_length + sum(sizes.values()) == len(data), "header + tensors != file"
    assert sum(sizes.values()) == report.encoded_bytes, f"tensors in the file {sum(sizes.values())} != encoded_bytes {report.encoded_bytes}"
    # A tied tensor is one tensor: counted and stored once, its other names recorded as aliases.
    aliases = json.loads(header["__metadata__"]["compression_lab"]).get("aliases", {})
    assert aliases == tied_names(state), f"aliases {aliases} != the state dict's tied names {tied_names(state)}"
    dense = sum(t.numel() * (4 if t.is_floating_point() else t.element_size()) for n, t in state.items() if n not in aliases)
    assert report.dense_fp32_bytes == dense, f"dense_fp32_bytes {report.dense_fp32_bytes} != {dense}"
    targets = {layer.name for layer in report.layers}
    for name, tensor in state.items():
        if name in aliases:
            assert name not in sizes, f"{name}: a tied name is stored again"
        elif name not in targets:
            assert sizes.get(name) == tensor.numel() * tensor.element_size(), f"{name}: stored raw with other bytes than its own ({sizes.get(name)})"
    for layer in report.layers:
        own = {key.split("::", 1)[1]: size for key, size in sizes.items() if key.startswith(f"{layer.name}::")}
        assert sum(own.values()) == layer.encoded_bytes, f"{layer.name}: its parts in the file do not add up to its encoded_bytes ({own} != {layer.encoded_bytes})"
        _check_layout(layer, own, rows(layer.name, result.module.state_dict()[layer.name]))
    raw = sum(size for key, size in sizes.items() if "::" not in key)
    assert report.encoded_bytes == raw + sum(layer.encoded_bytes for layer in report.layers), "encoded_bytes != raw + layers"


def _check_layout(layer: Any, own: Mapping[str, int], values: torch.Tensor) -> None:
    """Codes and positions hold exactly what the encoding needs, and it is the cheapest one
    (``values`` output channels first, the order the file stores them in)."""
    flat = values.reshape(-1)
    numel, nonzero_index = flat.numel(), torch.nonzero(flat != 0).reshape(-1).tolist()
    nonzero = len(nonzero_index)
    gaps = [b - a - 1 for a, b in zip([-1] + nonzero_index, nonzero_index)]
    gap_width = max(gaps, default=0).bit_length()
    bits = layer.bits

    def size(count: int, width: int) -> int:
        return (count * width + 7) // 8

    represents_zero = not (layer.scheme in ("kmeans", "binary"))
    options = {"bitmap": size(nonzero, bits) + size(numel, 1), "deltas": size(nonzero, bits) + size(nonzero, gap_width)}
    if represents_zero or nonzero == numel:
        options["dense"] = size(numel, bits)
    assert layer.encoding in options, f"{layer.name}: an encoding that cannot hold these values ({layer.encoding}, options {options})"
    assert options[layer.encoding] == min(options.values()), f"{layer.name}: the encoding is not the cheapest ({layer.encoding} of {options})"
    codes = numel if layer.encoding == "dense" else nonzero
    assert own.get("codes") == size(codes, bits), f"{layer.name}: {own.get('codes')} code bytes for {codes} × {bits} bits"
    positions = {"dense": None, "bitmap": size(numel, 1), "deltas": size(nonzero, gap_width)}[layer.encoding]
    assert own.get("positions") == positions, f"{layer.name}: {own.get('positions')} position bytes, expected {positions}"


def _sections(recipe: Recipe, state: Mapping[str, torch.Tensor], layer_types: Mapping[str, str]) -> dict[str, tuple]:
    """Per state-dict name: whether the recipe selects it, and its prune and quantize sections as JSON."""
    return {
        name: (recipe.selects(name, name in layer_types), *(spec.to_dict() if spec else None for spec in recipe.specs_for(name)))
        for name in state
    }


def check_case(model: ModelSpec, recipe: Mapping[str, Any] | str, recompress: bool = False) -> CaseOutcome:
    """Compress ``model`` with ``recipe`` and assert every invariant; return what happened.

    ``recompress`` also compresses again with the canonical JSON of the recipe and checks
    that the weights are bit-identical (twice the time).
    """
    loaded = model.loaded()
    module = loaded.module
    before = _snapshot(module)
    state = module.state_dict()

    # The oracle for refusals: the recipe's own validation, then include patterns that match
    # nothing. A recipe that passes both must compress; one that fails either must be refused.
    expected_error: str | None = None  # the recipe's own message, or the include pattern's repr
    try:
        expected_recipe: Recipe | None = _as_recipe(recipe)
    except CompressionError as error:
        expected_recipe, expected_error = None, str(error)
    if expected_recipe is not None:
        unmatched = [p for p in expected_recipe.include if not any(fnmatch.fnmatchcase(n, p) for n in state)]
        if unmatched:
            expected_error = repr(unmatched[0])

    try:
        result = compress(loaded, recipe)
    except CompressionError as error:
        message = str(error)
        assert message.strip() and "\n" not in message, f"a refusal without a one-line message ({message!r})"
        assert expected_error is not None, f"a valid recipe was refused ({message})"
        assert expected_error == message or (expected_recipe is not None and expected_error in message), (
            f"refused with another message than the recipe's own ({message!r}, expected {expected_error!r})"
        )
        assert _snapshot(module) == before, "a refused compression changed the input model"
        return CaseOutcome("refused", message)
    assert expected_error is None, f"an invalid recipe was accepted ({expected_error})"
    assert expected_recipe is not None
    recipe_object = expected_recipe
    report = result.report

    assert _snapshot(module) == before, "compress changed the input model"
    compressed = result.module.state_dict()
    assert result.module is not module
    input_pointers = {t.untyped_storage().data_ptr() for t in state.values() if t.numel()}
    assert not input_pointers & {t.untyped_storage().data_ptr() for t in compressed.values() if t.numel()}, (
        "the compressed module shares memory with the input model"
    )
    assert list(compressed) == list(state), "the compressed module's state-dict keys differ from the input's"

    # Which tensors are compressed: the recipe's selection; a tied tensor goes by its first name.
    aliases = _aliases(state)
    targets = [
        name for name, tensor in state.items()
        if name not in aliases
        and recipe_object.selects(name, name in loaded.layer_types)
        and tensor.is_floating_point()
        and tensor.numel() > 0
    ]
    assert [layer.name for layer in report.layers] == targets, "compressed tensors are not the recipe's selection"

    def rows(name: str, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` output channels first: what per-channel, structured and N:M checks read.
        (Which axis each layer type keeps them on is tests/test_layer_types.py's to check.)"""
        return loaded.output_axes[name].channels_first(tensor) if name in loaded.output_axes else tensor

    prune_specs = {name: spec for name in targets if (spec := recipe_object.specs_for(name)[0]) is not None}
    masks = compute_masks({name: state[name] for name in prune_specs}, prune_specs, loaded.output_axes)
    groups: dict[Any, list[str]] = {}
    for name, spec in prune_specs.items():
        groups.setdefault(spec if spec.scope == "global" and spec.method not in ("n:m",) else (spec, name), []).append(name)
    for names in groups.values():  # a cut never prunes more than asked, over all the tensors it spans
        spec = prune_specs[names[0]]
        if spec.amount is not None and spec.method != "structured":
            removed = sum(int((~masks[name].keep).sum()) for name in names)
            assert removed <= round(spec.amount * sum(state[name].numel() for name in names)), f"a cut pruned more than asked ({names})"

    total_zeros = total_parameters = 0
    for layer in report.layers:
        name, original, values = layer.name, state[layer.name], compressed[layer.name]
        assert values.dtype == original.dtype and values.shape == original.shape, f"{name}: dtype or shape changed"
        prune_spec, quantize_spec = recipe_object.specs_for(name)
        assert bool(_is_positive_zero(values[original == 0]).all()), f"{name}: a zero weight did not stay +0.0"
        assert bool(_is_positive_zero(values[values == 0]).all()), f"{name}: a -0.0 in the output"
        keep = masks[name].keep if name in masks else torch.ones_like(original, dtype=torch.bool)
        if prune_spec is not None:
            _check_pruning(name, rows(name, original), rows(name, values), rows(name, keep), prune_spec, layer.threshold)
        else:
            assert layer.threshold is None, f"{name}: a threshold without pruning"
        pruned = torch.where(keep, original, torch.zeros(()))
        if quantize_spec is None:
            expected = pruned.masked_fill(pruned == 0, 0.0)
            assert _bits(values) == _bits(expected), f"{name}: unquantized weights changed beyond pruning"
            assert (layer.scheme, layer.bits) == ("fp32", 32), f"{name}: an unquantized tensor reported as quantized ({layer.scheme}, {layer.bits} bits)"
        else:
            _check_quantization(name, rows(name, pruned), rows(name, values), quantize_spec)
            assert layer.bits == quantize_spec.bits, f"{name}: reported other bits than the recipe's ({layer.bits} != {quantize_spec.bits})"
        zeros = int((values == 0).sum())
        assert (layer.parameters, layer.shape, layer.zeros) == (original.numel(), tuple(original.shape), zeros), f"{name}: counts"
        assert layer.sparsity == zeros / original.numel()
        total_zeros, total_parameters = total_zeros + zeros, total_parameters + original.numel()
    assert report.sparsity == (total_zeros / total_parameters if total_parameters else 0.0), "overall sparsity"

    for name, tensor in state.items():  # what is not compressed comes through untouched
        if name in aliases:
            assert _bits(compressed[name]) == _bits(compressed[aliases[name]]), f"{name}: a tied name does not hold the compressed tensor ({aliases[name]})"
        elif name not in targets:
            assert _bits(compressed[name]) == _bits(tensor), f"{name}: changed, but not compressed"

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.packed"
        written = save_packed(result, path)
        _check_sizes(result, state, path, written, rows)
        loaded_state, index = load_packed(path)
    assert set(loaded_state) == set(compressed), "the packed file holds other tensors than the compressed module"
    for name, tensor in compressed.items():
        assert _bits(loaded_state[name]) == _bits(tensor), f"{name}: the packed file does not load back bit for bit"
    assert {name: entry["encoding"] for name, entry in index["encoded"].items()} == {layer.name: layer.encoding for layer in report.layers}

    # The canonical JSON is the recipe: the report and the packed file carry it (key order
    # included: the last matching override wins), and it reads back to the same sections.
    canonical = recipe_object.to_json()
    assert json.dumps(report.recipe) == canonical, "the report's recipe is not the canonical JSON"
    assert json.dumps(index["recipe"]) == canonical, "the packed file's recipe is not the canonical JSON"
    again = Recipe.from_json(canonical)
    assert again.to_json() == canonical, "canonical JSON does not read back to itself"
    expected_sections = _sections(recipe_object, state, loaded.layer_types)
    for name, sections in _sections(again, state, loaded.layer_types).items():
        assert sections == expected_sections[name], (
            f"{name}: the canonical JSON gives other sections than the recipe ({sections} != {expected_sections[name]})"
        )
    if recompress:
        repeat = compress(loaded, canonical).module.state_dict()
        for name, tensor in compressed.items():
            assert _bits(repeat[name]) == _bits(tensor), f"{name}: compressing with the canonical JSON gives other weights"
    assert _snapshot(module) == before, "saving or loading changed the input model"
    return CaseOutcome("compressed")
