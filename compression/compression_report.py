"""What a compression reports: per compressed tensor its sizes, errors and view data (histograms,
grid levels, sparsity map), and for the whole model its sizes, sparsity and histograms.

Sizes are the packed file's (``compression.packing``): ``file_bytes`` is ``len(to_bytes())``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from compression.model import LoadedModel
from compression.original_weights import OriginalWeights
from compression.packing import EncodedTensor, PackedModel
from compression.quantization import QuantizedTensor
from compression.recipe import PruneSpec, QuantizeSpec, Recipe
from compression.stats import (
    Histogram,
    SparsityMap,
    ValueRange,
    display_limit,
    error_measures,
    histogram,
    pooled_mean_magnitude,
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
    method: str  # what made it: "magnitude + linear", "wanda + gptq", "none" (see ``method_label``)
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
            "method": self.method,
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
    calibration: dict[str, Any] | None = None  # the rows that calibrated it (CalibrationRecord), if any did

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
            **({"calibration": self.calibration} if self.calibration is not None else {}),
        }


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def method_label(prune: PruneSpec | None, quantize: QuantizeSpec | None) -> str:
    """The prune method and the quantize scheme applied, joined by " + "; "none" for neither.

    >>> method_label(PruneSpec("wanda", amount=0.5), QuantizeSpec("gptq", bits=4))
    'wanda + gptq'
    """
    parts = ([prune.method] if prune is not None else []) + ([quantize.scheme] if quantize is not None else [])
    return " + ".join(parts) or "none"


def _nominal_fp32_bytes(state: Mapping[str, torch.Tensor]) -> int:
    return sum(t.numel() * 4 if t.is_floating_point() else t.numel() * t.element_size() for t in state.values())


def layer_report(
    name: str,
    layer_type: str,
    method: str,
    original: torch.Tensor,
    values: torch.Tensor,
    threshold: float | None,
    quantized: QuantizedTensor | None,
    encoded: EncodedTensor,
    after: ValueRange,
    zeros_map: SparsityMap,
    originals: OriginalWeights,
) -> LayerReport:
    """One tensor's report: ``original`` and its final ``values``, as ``encoded`` stores them."""
    before, mean = originals.extremes(name, original), originals.spread(name, original)
    # Quantization may round the largest |w| up; outliers far beyond the bulk go to the end bins.
    limit = display_limit(max(before.magnitude, after.magnitude), mean)
    errors = error_measures(original, values, originals.power(name, original))
    zeros = values.numel() - encoded.entry["nonzero"]  # counted by encode_tensor (values != 0)
    return LayerReport(
        name=name,
        layer_type=layer_type,
        shape=tuple(original.shape),
        parameters=original.numel(),
        zeros=zeros,
        threshold=threshold,
        scheme=encoded.entry["scheme"],
        bits=encoded.entry["bits"],
        encoding=encoded.entry["encoding"],
        encoded_bytes=encoded.encoded_bytes,
        mse=errors.mse,
        sqnr_db=errors.sqnr_db,
        non_finite=0 if after.all_finite else int((~torch.isfinite(values)).sum()),
        method=method,
        histogram_before=originals.histogram(name, original, limit),
        histogram_after=histogram(values, limit, extremes=after),
        levels=quantized.levels if quantized is not None else None,
        sparsity_map=zeros_map,
    )


def compression_report(
    loaded: LoadedModel,
    recipe: Recipe,
    state: Mapping[str, torch.Tensor],
    layers: list[LayerReport],
    packed: PackedModel,
    replacements: Mapping[str, torch.Tensor],
    after: Mapping[str, ValueRange],
    originals: OriginalWeights,
) -> CompressionReport:
    """The whole model's report from its tensors' (``replacements``: their final values)."""
    parameters = sum(layer.parameters for layer in layers)
    zeros = sum(layer.zeros for layer in layers)
    magnitude = max((max(originals.extremes(name, state[name]).magnitude, after[name].magnitude)
                     for name in replacements), default=0.0)
    limit = display_limit(magnitude, pooled_mean_magnitude(
        [(originals.spread(name, state[name]), state[name].numel()) for name in replacements]))
    pooled_before = _summed([originals.histogram(name, state[name], limit) for name in replacements], limit)
    pooled_after = _summed([histogram(values, limit, extremes=after[name]) for name, values in replacements.items()],
                           limit)
    return CompressionReport(
        model=loaded.name,
        recipe=json.loads(recipe.to_json()),
        sparsity=zeros / parameters if parameters else 0.0,
        dense_fp32_bytes=_nominal_fp32_bytes({name: t for name, t in state.items() if name not in packed.aliases}),
        encoded_bytes=packed.encoded_bytes,
        file_bytes=packed.file_bytes,  # exact, without serialising the file
        layers=tuple(layers),
        histogram_before=pooled_before,
        histogram_after=pooled_after,
        calibration=packed.calibration,
    )


def _summed(parts: list[Histogram], limit: float) -> Histogram:
    if not parts:
        return histogram(torch.zeros(0), limit)
    return Histogram(sum(part.counts for part in parts), parts[0].edges, sum(part.outside for part in parts))
