"""The recipe: the one plain-data input that the UI, the CLI and the API hand the engine.

A recipe is JSON with up to six keys, all optional (an empty recipe changes nothing)::

    {"prune": {"method": "magnitude", "amount": 0.5, "scope": "global"},
     "quantize": {"scheme": "linear", "bits": 4, "granularity": "per_channel",
                  "symmetric": true},
     "overrides": {"fc1.*": {"quantize": {"bits": 8}}, "conv1.weight": {"prune": null}},
     "include": ["embeddings.word_embeddings.weight"],
     "exclude": ["*.bias"],
     "calibration": {"samples": 128, "seed": 0}}

Each section is a frozen dataclass validated on construction; messages name the field, the
value given and the values allowed, in the manner of scikit-learn's parameter validation.

>>> Recipe.from_dict({"prune": {"method": "magnitude", "amount": 0.5}}).prune.amount
0.5
"""
from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from compression.errors import RecipeError

PRUNE_METHODS = ("magnitude", "random", "structured", "n:m")
PRUNE_SCOPES = ("layer", "global")
# Methods that look at a layer's inputs on calibration rows (compression.calibrated); kept apart
# from the lists above, which are what a recipe can do without data.
CALIBRATED_PRUNE_METHODS = ("wanda", "sparsegpt")
CALIBRATED_SCHEMES = ("gptq", "awq")
CALIBRATED_SCHEME_BITS = {"gptq": (2, 16), "awq": (2, 16)}  # 1 bit is binarisation: no grid to round on
# Scopes each method takes, its default first: Wanda compares within a row by default (Sun et al.
# 2023); SparseGPT prunes each layer by its own amount.
METHOD_SCOPES = {"wanda": ("row", "layer", "global"), "sparsegpt": ("layer",)}
STRUCTURED_NORMS = ("l1", "l2")
QUANT_SCHEMES = ("linear", "pow2", "kmeans", "float")
GRANULARITIES = ("per_tensor", "per_channel", "per_group")
FLOAT_FORMATS = ("fp16", "bf16", "fp8_e4m3", "fp8_e5m2")
FLOAT_FORMAT_BITS = {"fp16": 16, "bf16": 16, "fp8_e4m3": 8, "fp8_e5m2": 8}
# Bits each scheme accepts: linear covers binarisation (1 bit) to 16; pow2 needs a sign bit
# plus at least one exponent code; k-means beyond 256 shared values is no longer sharing.
SCHEME_BITS = {"linear": (1, 16), "pow2": (2, 8), "kmeans": (1, 8)}
# Calibration rows: GPTQ, SparseGPT and Wanda use 128; 4096 is more than any bundled source holds.
MAX_CALIBRATION_SAMPLES = 4096
MAX_SEED = 2**32 - 1


def _fail(section: str, name: str, value: Any, allowed: str) -> RecipeError:
    return RecipeError(f"{section}.{name} must be {allowed}; got {value!r}.")


def _check_choice(section: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise _fail(section, name, value, "one of " + ", ".join(repr(c) for c in choices))


def _check_fraction(section: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise _fail(section, name, value, "a number between 0 and 1")


def _check_int(section: str, name: str, value: Any, low: int, high: int | None = None) -> None:
    allowed = f"an integer between {low} and {high}" if high is not None else f"an integer >= {low}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(section, name, value, allowed)
    if value < low or (high is not None and value > high):
        raise _fail(section, name, value, allowed)


def _check_keys(section: str, given: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    if not isinstance(given, Mapping):
        raise RecipeError(f"{section} must be a JSON object; got {given!r}.")
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise RecipeError(
            f"{section} has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"allowed keys: {', '.join(allowed)}."
        )


@dataclass(frozen=True)
class PruneSpec:
    """Which weights become zero.

    ``amount`` is the fraction of weights (or output channels, for ``structured``) to remove;
    ``threshold`` removes every weight with |w| < threshold (for ``structured``: every output
    channel whose mean |w| (l1) or RMS (l2) is below it). ``n:m`` keeps the ``n`` largest of
    every ``m`` consecutive weights along the input dimension. ``wanda`` and ``sparsegpt`` look
    at each layer's inputs (``compression.calibrated``): an ``amount``, or ``n`` and ``m``.
    """

    method: str = "magnitude"
    amount: float | None = None
    threshold: float | None = None
    scope: str | None = None  # None: the method's default (METHOD_SCOPES, else "layer")
    norm: str = "l1"
    n: int | None = None  # None: 2:4 for n:m; no n:m pattern for wanda and sparsegpt
    m: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        section = "prune"
        _check_choice(section, "method", self.method, PRUNE_METHODS + CALIBRATED_PRUNE_METHODS)
        _check_choice(section, "norm", self.norm, STRUCTURED_NORMS)
        _check_int(section, "seed", self.seed, 0)
        if self.method in CALIBRATED_PRUNE_METHODS:
            self._check_calibrated()
            return
        if self.scope is None:
            object.__setattr__(self, "scope", "layer")
        _check_choice(section, "scope", self.scope, PRUNE_SCOPES)
        if self.method == "n:m":
            object.__setattr__(self, "n", 2 if self.n is None else self.n)
            object.__setattr__(self, "m", 4 if self.m is None else self.m)
            _check_int(section, "m", self.m, 1, 64)
            _check_int(section, "n", self.n, 0, self.m)
            if self.amount is not None or self.threshold is not None:
                raise RecipeError("prune.method 'n:m' takes n and m, not amount or threshold.")
            return
        if self.amount is not None and self.threshold is not None:
            raise RecipeError("prune takes either amount or threshold, not both.")
        if self.method == "random" and self.amount is None:
            raise RecipeError("prune.method 'random' needs an amount (a number between 0 and 1).")
        if self.amount is None and self.threshold is None:
            raise RecipeError(f"prune.method {self.method!r} needs an amount or a threshold.")
        if self.amount is not None:
            _check_fraction(section, "amount", self.amount)
            object.__setattr__(self, "amount", float(self.amount))  # 1 and 1.0: one JSON spelling
        if self.threshold is not None and (
            isinstance(self.threshold, bool)
            or not isinstance(self.threshold, (int, float))
            or not math.isfinite(self.threshold)
            or self.threshold < 0
        ):
            raise _fail(section, "threshold", self.threshold, "a finite number >= 0")
        if self.threshold is not None:
            object.__setattr__(self, "threshold", float(self.threshold))

    def _check_calibrated(self) -> None:
        """Wanda's and SparseGPT's fields: an amount, or n and m; a scope of theirs."""
        scopes = METHOD_SCOPES[self.method]
        if self.scope is None:
            object.__setattr__(self, "scope", scopes[0])
        if self.scope not in scopes:
            raise _fail("prune", "scope", self.scope, f"one of {', '.join(map(repr, scopes))} for method {self.method!r}")
        if self.threshold is not None:
            raise RecipeError(f"prune.method {self.method!r} takes an amount, or n and m; not a threshold.")
        if self.n is None and self.m is None:
            if self.amount is None:
                raise RecipeError(f"prune.method {self.method!r} needs an amount (a number between 0 and 1), or n and m.")
            _check_fraction("prune", "amount", self.amount)
            object.__setattr__(self, "amount", float(self.amount))
            return
        if self.amount is not None or self.n is None or self.m is None:
            raise RecipeError(f"prune.method {self.method!r} takes either an amount or both n and m; "
                              f"got amount={self.amount!r}, n={self.n!r}, m={self.m!r}.")
        _check_int("prune", "m", self.m, 1, 64)
        _check_int("prune", "n", self.n, 0, self.m)

    @property
    def calibrated(self) -> bool:
        """Whether this method looks at the layers' inputs (it needs calibration rows)."""
        return self.method in CALIBRATED_PRUNE_METHODS

    def to_dict(self) -> dict[str, Any]:
        """The fields that matter for this method, so equal behaviour gives equal JSON."""
        keys = {
            "magnitude": ("method", "amount", "threshold", "scope"),
            "random": ("method", "amount", "scope", "seed"),
            "structured": ("method", "amount", "threshold", "scope", "norm"),
            "n:m": ("method", "n", "m"),
            # An n:m pattern is chosen within each row, whatever the scope.
            "wanda": ("method", "amount", "scope") if self.n is None else ("method", "n", "m"),
            "sparsegpt": ("method", "amount", "n", "m"),
        }[self.method]
        fields = {key: getattr(self, key) for key in keys}
        return {key: value for key, value in fields.items() if value is not None}


@dataclass(frozen=True)
class QuantizeSpec:
    """How the surviving weights are rounded to a small set of values.

    ``linear``: q = clamp(round(w / scale) + zero_point); ``pow2``: ±2^k or 0; ``kmeans``:
    2^bits shared values per tensor; ``float``: a cast to a low-precision float ``format``.
    ``gptq`` and ``awq`` round on the linear grid, looking at each layer's inputs
    (``compression.calibrated``); ``act_order`` is GPTQ's column order by decreasing H_jj.
    """

    scheme: str = "linear"
    bits: int = 8
    granularity: str = "per_channel"
    group_size: int = 64
    symmetric: bool = True
    format: str = "fp16"
    act_order: bool = False

    def __post_init__(self) -> None:
        section = "quantize"
        _check_choice(section, "scheme", self.scheme, QUANT_SCHEMES + CALIBRATED_SCHEMES)
        if self.scheme == "float":
            _check_choice(section, "format", self.format, FLOAT_FORMATS)
            object.__setattr__(self, "bits", FLOAT_FORMAT_BITS[self.format])
            return
        low, high = {**SCHEME_BITS, **CALIBRATED_SCHEME_BITS}[self.scheme]
        _check_int(section, "bits", self.bits, low, high)
        _check_choice(section, "granularity", self.granularity, GRANULARITIES)
        _check_int(section, "group_size", self.group_size, 1)
        if not isinstance(self.symmetric, bool):
            raise _fail(section, "symmetric", self.symmetric, "true or false")
        if self.scheme == "kmeans" and self.granularity != "per_tensor":
            # The codebook is shared by the whole tensor: that is what weight sharing means.
            object.__setattr__(self, "granularity", "per_tensor")
        if self.scheme == "pow2" and self.granularity == "per_group":
            raise RecipeError("quantize.granularity for 'pow2' must be 'per_tensor' or 'per_channel'.")
        if self.calibrated and self.granularity == "per_tensor":
            raise RecipeError(f"quantize.granularity for {self.scheme!r} must be 'per_channel' or 'per_group'.")
        if self.scheme == "gptq" and not isinstance(self.act_order, bool):
            raise _fail(section, "act_order", self.act_order, "true or false")

    @property
    def calibrated(self) -> bool:
        """Whether this scheme looks at the layers' inputs (it needs calibration rows)."""
        return self.scheme in CALIBRATED_SCHEMES

    def to_dict(self) -> dict[str, Any]:
        groups = ("group_size",) if self.granularity == "per_group" else ()
        keys = {
            "linear": ("scheme", "bits", "granularity", "symmetric") + groups,
            "pow2": ("scheme", "bits", "granularity"),
            "kmeans": ("scheme", "bits"),
            "float": ("scheme", "format"),
            "gptq": ("scheme", "bits", "granularity", "symmetric", "act_order") + groups,
            "awq": ("scheme", "bits", "granularity", "symmetric") + groups,
        }[self.scheme]
        return {key: getattr(self, key) for key in keys}


@dataclass(frozen=True)
class CalibrationSpec:
    """Which rows the methods that look at data (Wanda, SparseGPT, GPTQ, AWQ) see.

    ``samples`` rows (sequences for text, images or rows otherwise) drawn with ``seed`` from
    the model's calibration data, which never overlaps its evaluation data
    (``compression.calibration``); a source with fewer rows gives all it has.
    """

    samples: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        _check_int("calibration", "samples", self.samples, 1, MAX_CALIBRATION_SAMPLES)
        _check_int("calibration", "seed", self.seed, 0, MAX_SEED)

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "seed": self.seed}


def _build(cls: type, section: str, values: Mapping[str, Any]) -> Any:
    _check_keys(section, values, tuple(f.name for f in dataclasses.fields(cls)))
    return cls(**values)


def _canonical_prune_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The partial prune section with integer amounts and thresholds spelled as floats."""
    return {
        key: float(value) if key in ("amount", "threshold") and type(value) is int else value
        for key, value in fields.items()
    }


@dataclass(frozen=True)
class LayerOverride:
    """Per-layer changes: a partial section merged over the recipe's own, or None to skip it.

    ``prune_fields`` / ``quantize_fields`` are the partial dicts as given; ``None`` turns the
    technique off for the matched parameters; a missing key keeps the recipe-wide section.
    """

    pattern: str
    prune_fields: Mapping[str, Any] | None = None
    quantize_fields: Mapping[str, Any] | None = None
    sets_prune: bool = False
    sets_quantize: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.sets_prune:
            out["prune"] = _canonical_prune_fields(self.prune_fields) if self.prune_fields is not None else None
        if self.sets_quantize:
            out["quantize"] = dict(self.quantize_fields) if self.quantize_fields is not None else None
        return out


@dataclass(frozen=True)
class Recipe:
    """A whole compression: optional prune and quantize sections, overrides and targets.

    ``include``/``exclude`` are glob patterns on parameter names that add to or remove from the
    default set of compressible parameters (the weights of Linear and Conv layers).
    ``calibration`` says which rows the methods that look at data see; a recipe that uses one
    without saying gets the defaults (128 rows, seed 0), so its JSON names the rows it saw.
    """

    prune: PruneSpec | None = None
    quantize: QuantizeSpec | None = None
    overrides: tuple[LayerOverride, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    calibration: CalibrationSpec | None = None
    _resolved: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        sections = [self.prune, self.quantize]
        for override in self.overrides:  # fail now, not halfway through a compression
            sections += [self._merge(override, "prune"), self._merge(override, "quantize")]
        if self.calibration is None and any(section is not None and section.calibrated for section in sections):
            object.__setattr__(self, "calibration", CalibrationSpec())

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> Recipe:
        values = {} if values is None else values
        _check_keys("recipe", values, ("prune", "quantize", "overrides", "include", "exclude", "calibration"))
        prune = values.get("prune")
        quantize = values.get("quantize")
        calibration = values.get("calibration")
        overrides_in = values.get("overrides") or {}
        if not isinstance(overrides_in, Mapping):
            raise RecipeError(f"recipe.overrides must map glob patterns to sections; got {overrides_in!r}.")
        overrides = []
        for pattern, override in overrides_in.items():
            _check_keys(f"overrides[{pattern!r}]", override, ("prune", "quantize"))
            for key in ("prune", "quantize"):
                if override.get(key) is not None and not isinstance(override[key], Mapping):
                    raise RecipeError(f"overrides[{pattern!r}].{key} must be an object or null.")
            overrides.append(
                LayerOverride(
                    pattern=str(pattern),
                    prune_fields=override.get("prune"),
                    quantize_fields=override.get("quantize"),
                    sets_prune="prune" in override,
                    sets_quantize="quantize" in override,
                )
            )
        return cls(
            prune=None if prune is None else _build(PruneSpec, "prune", prune),
            quantize=None if quantize is None else _build(QuantizeSpec, "quantize", quantize),
            overrides=tuple(overrides),
            include=_patterns("include", values.get("include", ())),
            exclude=_patterns("exclude", values.get("exclude", ())),
            calibration=None if calibration is None else _build(CalibrationSpec, "calibration", calibration),
        )

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise RecipeError(f"recipe is not valid JSON: {error}.") from None
        return cls.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.prune is not None:
            out["prune"] = self.prune.to_dict()
        if self.quantize is not None:
            out["quantize"] = self.quantize.to_dict()
        if self.overrides:
            out["overrides"] = {o.pattern: o.to_dict() for o in self.overrides}
        if self.include:
            out["include"] = list(self.include)
        if self.exclude:
            out["exclude"] = list(self.exclude)
        if self.calibration is not None:
            out["calibration"] = self.calibration.to_dict()
        return out

    def to_json(self, indent: int | None = None) -> str:
        """Canonical JSON: equal recipes give equal strings (the cache key).

        Keys are sorted, except the override patterns: the last matching one wins, so their
        order is part of the recipe.

        >>> Recipe.from_dict({"overrides": {"fc*": {"prune": None}, "*": {"quantize": None}}}).to_json()
        '{"overrides": {"fc*": {"prune": null}, "*": {"quantize": null}}}'
        """
        out = sorted_keys(self.to_dict())
        if self.overrides:
            out["overrides"] = {o.pattern: sorted_keys(o.to_dict()) for o in self.overrides}
        return json.dumps(out, indent=indent)

    def _merge(self, override: LayerOverride, section: str) -> PruneSpec | QuantizeSpec | None:
        base = self.prune if section == "prune" else self.quantize
        sets = override.sets_prune if section == "prune" else override.sets_quantize
        fields = override.prune_fields if section == "prune" else override.quantize_fields
        if not sets:
            return base
        if fields is None:
            return None
        cls = PruneSpec if section == "prune" else QuantizeSpec
        # Over the section as its canonical JSON has it, not over every dataclass field: a field
        # the recipe-wide method ignores (magnitude's norm, pow2's symmetric) is left out of that
        # JSON, so inheriting it here would make the saved recipe compress differently.
        merged = base.to_dict() if base is not None else {}
        if section == "prune" and "amount" in fields:
            merged.pop("threshold", None)  # an override's amount replaces a recipe-wide threshold
            if merged.get("method") in CALIBRATED_PRUNE_METHODS or fields.get("method") in CALIBRATED_PRUNE_METHODS:
                merged.pop("n", None)  # ... and a recipe-wide n:m pattern of wanda or sparsegpt
                merged.pop("m", None)
        if section == "prune" and fields.get("method", merged.get("method")) in CALIBRATED_PRUNE_METHODS and (
            "n" in fields or "m" in fields
        ):
            merged.pop("amount", None)
        if section == "prune" and "method" in fields and "scope" not in fields:
            # A scope the new method does not take (wanda's "row" for magnitude) gives way to its default.
            if merged.get("scope") not in METHOD_SCOPES.get(fields["method"], PRUNE_SCOPES):
                merged.pop("scope", None)
        if section == "prune" and "threshold" in fields:
            merged.pop("amount", None)
        if section == "prune" and fields.get("method") == "n:m":
            merged.pop("amount", None)  # n:m takes neither: switching to it drops the recipe's cut
            merged.pop("threshold", None)
        merged.update(fields)
        try:
            return _build(cls, f"overrides[{override.pattern!r}].{section}", merged)
        except RecipeError as error:  # name the override, not only the field it set
            raise RecipeError(f"overrides[{override.pattern!r}]: {error}") from None

    def specs_for(self, parameter: str) -> tuple[PruneSpec | None, QuantizeSpec | None]:
        """The prune and quantize sections that apply to one parameter (last override wins)."""
        if parameter not in self._resolved:
            prune, quantize = self.prune, self.quantize
            for override in self.overrides:
                if fnmatch.fnmatchcase(parameter, override.pattern):
                    if override.sets_prune:
                        prune = self._merge(override, "prune")
                    if override.sets_quantize:
                        quantize = self._merge(override, "quantize")
            self._resolved[parameter] = (prune, quantize)
        return self._resolved[parameter]

    def selects(self, parameter: str, compressible_by_default: bool) -> bool:
        """Whether a parameter is compressed at all, after include and exclude patterns."""
        if any(fnmatch.fnmatchcase(parameter, p) for p in self.exclude):
            return False
        return compressible_by_default or any(fnmatch.fnmatchcase(parameter, p) for p in self.include)

    @property
    def is_empty(self) -> bool:
        return self.prune is None and self.quantize is None and not any(
            (o.sets_prune and o.prune_fields is not None)
            or (o.sets_quantize and o.quantize_fields is not None)
            for o in self.overrides
        )


def sorted_keys(value: Any) -> Any:
    """``value`` with every mapping's keys in sorted order, as ``json.dumps(sort_keys=True)`` has them."""
    if isinstance(value, Mapping):
        return {key: sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [sorted_keys(item) for item in value]
    return value


def _patterns(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise RecipeError(f"recipe.{name} must be a list of glob patterns; got {value!r}.")
    return tuple(value)
