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
    arms = compression.compare_gradual(model, compression.AgpSchedule(final=0.9))  # vs one-shot
    fused = compression.fuse_conv_bn(compression.load_model("bn_cnn"))         # BatchNorm folded
    macs = compression.count_macs(model)                       # multiply-accumulates per input
    smaller = compression.remove_channels(model, amount=0.5)   # channels physically removed
    keep = compression.wanda(weight, inputs, 0.5)   # one layer and its inputs; also sparsegpt, gptq, awq
    student, plain = compression.compare_distillation(model, compression.DistillConfig(width=16))
    onnx_bytes = compression.export_onnx(model, result.module)   # scored by evaluate_onnx
    int8 = compression.quantize_onnx_dynamic(onnx_bytes)       # or quantize_onnx_static
    imported = compression.load_model("model.onnx")            # weights compressible, run by onnxruntime
    table = compression.latency_table(model, {"base": model.module, "recipe": result.module})

No Streamlit here: the dashboard and the CLI are thin layers over these functions.
"""
from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# Where each public name lives. Imported on first use (PEP 562), so ``import compression``
# costs no more than the modules a caller touches: onnx, onnxruntime, scikit-learn, pandas
# and transformers load only with the functions that need them.
_PUBLIC = {
    "AgpSchedule": "compression.workflows.gradual",
    "ChannelResult": "compression.graph.channels",
    "CompressionError": "compression.errors",
    "CompressionReport": "compression.compress",
    "CompressionResult": "compression.compress",
    "DataError": "compression.errors",
    "DistillConfig": "compression.workflows.distillation",
    "DistillResult": "compression.workflows.distillation",
    "Evaluation": "compression.evaluation",
    "EvaluationData": "compression.model",
    "FusionCheck": "compression.graph.fusion",
    "FusionResult": "compression.graph.fusion",
    "GradualResult": "compression.workflows.gradual",
    "LayerReport": "compression.compress",
    "LoadedModel": "compression.model",
    "ModelLoadError": "compression.errors",
    "PackedFileError": "compression.errors",
    "PackedModel": "compression.packing",
    "PruneSpec": "compression.recipe",
    "QuantizeSpec": "compression.recipe",
    "Recipe": "compression.recipe",
    "RecipeError": "compression.errors",
    "SearchResult": "compression.workflows.search",
    "UnsafeFileError": "compression.errors",
    "allocate_sparsity": "compression.workflows.sensitivity",
    "awq": "compression.calibrated.awq",
    "check_fusion": "compression.graph.fusion",
    "compare_distillation": "compression.workflows.distillation",
    "compare_gradual": "compression.workflows.gradual_comparison",
    "compress": "compression.compress",
    "count_macs": "compression.macs",
    "distill": "compression.workflows.distillation",
    "evaluate": "compression.evaluation",
    "evaluate_onnx": "compression.io.onnx.export",
    "export_onnx": "compression.io.onnx.export",
    "export_tflite": "compression.io.tflite_export",
    "fuse_conv_bn": "compression.graph.fusion",
    "gptq": "compression.calibrated.gptq",
    "gradual_prune": "compression.workflows.gradual",
    "latency_table": "compression.workflows.latency",
    "load_model": "compression.io.loading",
    "load_packed": "compression.packing",
    "program_bytes": "compression.io.program",
    "quantize_onnx_dynamic": "compression.io.onnx.int8",
    "quantize_onnx_static": "compression.io.onnx.int8",
    "remove_channels": "compression.graph.channels",
    "search_layerwise": "compression.workflows.search",
    "search_sparsity": "compression.workflows.search",
    "sensitivity": "compression.workflows.sensitivity",
    "sparsegpt": "compression.calibrated.sparsegpt",
    "sweep": "compression.workflows.sweep",
    "wanda": "compression.calibrated.wanda",
}


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'compression' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and editors: the same names, imported eagerly
    from compression.calibrated.awq import awq
    from compression.calibrated.gptq import gptq
    from compression.calibrated.sparsegpt import sparsegpt
    from compression.calibrated.wanda import wanda
    from compression.compress import CompressionReport, CompressionResult, LayerReport, compress
    from compression.errors import (
        CompressionError,
        DataError,
        ModelLoadError,
        PackedFileError,
        RecipeError,
        UnsafeFileError,
    )
    from compression.graph.channels import ChannelResult, remove_channels
    from compression.workflows.distillation import DistillConfig, DistillResult, compare_distillation, distill
    from compression.evaluation import Evaluation, evaluate
    from compression.workflows.latency import latency_table
    from compression.graph.fusion import FusionCheck, FusionResult, check_fusion, fuse_conv_bn
    from compression.macs import count_macs
    from compression.io.onnx.export import evaluate_onnx, export_onnx
    from compression.io.onnx.int8 import quantize_onnx_dynamic, quantize_onnx_static
    from compression.io.program import program_bytes
    from compression.io.tflite_export import export_tflite
    from compression.workflows.gradual import AgpSchedule, GradualResult, gradual_prune
    from compression.workflows.gradual_comparison import compare_gradual
    from compression.io.loading import load_model
    from compression.model import EvaluationData, LoadedModel
    from compression.packing import PackedModel, load_packed
    from compression.recipe import PruneSpec, QuantizeSpec, Recipe
    from compression.workflows.search import SearchResult, search_layerwise, search_sparsity
    from compression.workflows.sensitivity import allocate_sparsity, sensitivity
    from compression.workflows.sweep import sweep


# The kernel module ``compression.compress`` shares its name with the verb: importing that module
# anywhere would bind this package's attribute ``compress`` to the module. Binding the function
# here, after the module is imported, keeps ``compression.compress(...)`` the verb. It costs
# torch, which every use of the engine needs anyway.
from compression.compress import compress  # noqa: E402


def save_packed(result: CompressionResult | PackedModel, path: str | os.PathLike) -> int:
    """Write a compression result's packed file (atomically) and return its size in bytes."""
    from compression.packing import PackedModel, save_packed as save_packed_model

    packed = result if isinstance(result, PackedModel) else result.packed
    return save_packed_model(packed, path)


__all__ = sorted([*_PUBLIC, "save_packed"])
