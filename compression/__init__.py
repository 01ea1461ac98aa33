"""Compression Lab's engine: prune and quantize PyTorch models, measure what it costs.

The public API, in the order a session uses it::

    import compression
    model = compression.load_model("mlp")                      # zoo name, file or HF folder
    recipe = compression.Recipe.from_dict({"prune": {"method": "magnitude", "amount": 0.5},
                                           "quantize": {"scheme": "linear", "bits": 4}})
    result = compression.compress(model, recipe)               # model is not changed
    score = compression.evaluate(model, result.module)         # accuracy or fidelity
    compression.save_packed(result, "mlp.packed")              # size == result.report.file_bytes
    state, index = compression.load_packed("mlp.packed")       # dense weights, bit for bit
    frame = compression.sweep(model, amounts=[0, 0.5, 0.9], bits=[8, 4])

No Streamlit here: the dashboard and the CLI are thin layers over these functions.
"""
from __future__ import annotations

import os

from compression.compress import CompressionReport, CompressionResult, LayerReport, compress
from compression.errors import (
    CompressionError,
    DataError,
    ModelLoadError,
    PackedFileError,
    RecipeError,
    UnsafeFileError,
)
from compression.evaluation import Evaluation, evaluate
from compression.loading import load_model
from compression.model import EvaluationData, LoadedModel
from compression.packing import PackedModel, load_packed
from compression.packing import save_packed as _save_packed_model
from compression.recipe import PruneSpec, QuantizeSpec, Recipe
from compression.sweep import sweep


def save_packed(result: CompressionResult | PackedModel, path: str | os.PathLike) -> int:
    """Write a compression result's packed file (atomically) and return its size in bytes."""
    packed = result.packed if isinstance(result, CompressionResult) else result
    return _save_packed_model(packed, path)


__all__ = [
    "CompressionError",
    "CompressionReport",
    "CompressionResult",
    "DataError",
    "Evaluation",
    "EvaluationData",
    "LayerReport",
    "LoadedModel",
    "ModelLoadError",
    "PackedFileError",
    "PackedModel",
    "PruneSpec",
    "QuantizeSpec",
    "Recipe",
    "RecipeError",
    "UnsafeFileError",
    "compress",
    "evaluate",
    "load_model",
    "load_packed",
    "save_packed",
    "sweep",
]
