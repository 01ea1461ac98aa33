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
    curves = compression.sensitivity(model)                     # one layer at a time
    best = compression.search_sparsity(model, tolerance=0.01)   # largest amount within a drop
    tuned = compression.gradual_prune(model, compression.AgpSchedule(final=0.9))  # prune + fine-tune
    fused = compression.fuse_conv_bn(compression.load_model("bn_cnn"))         # BatchNorm folded
    smaller = compression.remove_channels(model, amount=0.5)   # channels physically removed
    student, plain = compression.compare_distillation(model, compression.DistillConfig(width=16))
    onnx_bytes = compression.export_onnx(model, result.module)   # scored by evaluate_onnx
    int8 = compression.quantize_onnx_dynamic(onnx_bytes)       # or quantize_onnx_static
    imported = compression.load_model("model.onnx")            # weights compressible, run by onnxruntime
    table = compression.latency_table(model, {"base": model.module, "recipe": result.module})

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
from compression.channels import ChannelResult, remove_channels
from compression.distillation import DistillConfig, DistillResult, compare_distillation, distill
from compression.evaluation import Evaluation, evaluate
from compression.latency import latency_table
from compression.fusion import FusionCheck, FusionResult, check_fusion, fuse_conv_bn
from compression.onnx_export import evaluate_onnx, export_onnx, quantize_onnx_dynamic, quantize_onnx_static
from compression.program import program_bytes
from compression.tflite_export import export_tflite
from compression.gradual import AgpSchedule, GradualResult, gradual_prune
from compression.loading import load_model
from compression.model import EvaluationData, LoadedModel
from compression.packing import PackedModel, load_packed
from compression.packing import save_packed as _save_packed_model
from compression.recipe import PruneSpec, QuantizeSpec, Recipe
from compression.search import SearchResult, search_layerwise, search_sparsity
from compression.sensitivity import allocate_sparsity, sensitivity
from compression.sweep import sweep


def save_packed(result: CompressionResult | PackedModel, path: str | os.PathLike) -> int:
    """Write a compression result's packed file (atomically) and return its size in bytes."""
    packed = result.packed if isinstance(result, CompressionResult) else result
    return _save_packed_model(packed, path)


__all__ = [
    "AgpSchedule",
    "ChannelResult",
    "CompressionError",
    "CompressionReport",
    "CompressionResult",
    "DataError",
    "DistillConfig",
    "DistillResult",
    "Evaluation",
    "EvaluationData",
    "FusionCheck",
    "FusionResult",
    "GradualResult",
    "LayerReport",
    "LoadedModel",
    "ModelLoadError",
    "PackedFileError",
    "PackedModel",
    "PruneSpec",
    "QuantizeSpec",
    "Recipe",
    "RecipeError",
    "SearchResult",
    "UnsafeFileError",
    "allocate_sparsity",
    "check_fusion",
    "compare_distillation",
    "compress",
    "distill",
    "evaluate",
    "evaluate_onnx",
    "export_onnx",
    "export_tflite",
    "fuse_conv_bn",
    "gradual_prune",
    "latency_table",
    "load_model",
    "load_packed",
    "program_bytes",
    "quantize_onnx_dynamic",
    "quantize_onnx_static",
    "remove_channels",
    "save_packed",
    "search_layerwise",
    "search_sparsity",
    "sensitivity",
    "sweep",
]
