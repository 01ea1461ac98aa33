"""The standard variants to time: torch fp32, the recipe, channels removed, onnxruntime fp32 and int8."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from torch import nn

from compression.compress import as_recipe, compress
from compression.errors import CompressionError
from compression.evaluation import evaluate
from compression.graph.channels import remove_channels
from compression.model import LoadedModel
from compression.recipe import Recipe
from compression.workflows.latency.cpu import CpuInfo, cpu_info, int8_slowness
from compression.workflows.latency.verdicts import Technique

DEFAULT_CHANNEL_AMOUNT = 0.5  # channels removed where the recipe is not structured pruning with an amount
TORCH_FP32 = "torch fp32"
RECIPE_LABEL = "torch, this recipe"
ORT_FP32 = "ORT fp32"
ORT_INT8_DYNAMIC = "ORT int8 dynamic"
ORT_INT8_STATIC = "ORT int8 static QDQ"
_DENSE_KERNELS = "the zeros go through the same dense kernels (a zero is multiplied like any other value)"


@dataclass(frozen=True, eq=False)
class StandardVariants:
    """The variants to time, in table order with ``TORCH_FP32`` first; the technique each one
    stands for; the ONNX file behind each onnxruntime variant; and, for each variant that
    could not be built for this model, why."""

    modules: dict[str, nn.Module]
    techniques: dict[str, Technique]
    onnx_files: dict[str, bytes]
    skipped: dict[str, str]


def channels_label(amount: float) -> str:
    return f"torch {amount:.0%} channels removed"


def standard_variants(
    model: LoadedModel,
    recipe: Recipe | Mapping[str, Any] | str | None,
    *,
    recipe_module: nn.Module | None = None,
    recipe_label: str = RECIPE_LABEL,
    threads: int | None = None,
    calibration_rows: int | None = None,
    cpu: CpuInfo | None = None,
) -> StandardVariants:
    """torch fp32, the recipe in torch, channels removed, and the base model in onnxruntime:
    fp32, int8 dynamic and int8 static (QDQ); each row changes one thing from its reference.

    - ``recipe_label``: ``recipe`` applied by ``compress`` (or ``recipe_module``, its result
      when already at hand): same shapes, same dense kernels;
    - ``torch N% channels removed``: ``remove_channels`` at the recipe's amount, norm and scope
      where it is structured pruning with an amount, else at ``DEFAULT_CHANNEL_AMOUNT``;
    - ``ORT ...``: ``export_onnx`` of the base model, quantized with ``quantize_onnx_dynamic``
      and ``quantize_onnx_static`` (calibrated on ``calibration_inputs_for``, its first
      ``calibration_rows`` rows where given), run with ``threads`` intra-op threads. int8 is
      compared with ORT fp32, so its row measures the int8 step alone.

    A variant that cannot be built for this model (an empty recipe, a module torch.fx cannot
    trace, an export onnxruntime refuses) is left out with the reason in ``skipped``.
    """
    # onnx and onnxruntime load only where ONNX rows are wanted
    from compression.io.onnx.export import export_onnx
    from compression.io.onnx.int8 import calibration_inputs_for, quantize_onnx_dynamic, quantize_onnx_static
    from compression.io.onnx.runtime import OnnxRuntimeModule

    recipe = as_recipe(recipe)
    cpu = cpu_info() if cpu is None else cpu
    modules: dict[str, nn.Module] = {TORCH_FP32: model.module}
    techniques: dict[str, Technique] = {}
    onnx_files: dict[str, bytes] = {}
    skipped: dict[str, str] = {}

    if recipe.is_empty:
        skipped[recipe_label] = "the recipe is empty: it would time torch fp32 again"
    else:
        modules[recipe_label] = compress(model, recipe).module if recipe_module is None else recipe_module
        techniques[recipe_label] = recipe_technique(recipe)

    amount, norm, scope = DEFAULT_CHANNEL_AMOUNT, "l1", "layer"
    if recipe.prune is not None and recipe.prune.method == "structured" and recipe.prune.amount is not None:
        amount, norm, scope = recipe.prune.amount, recipe.prune.norm, recipe.prune.scope
    label = channels_label(amount)
    try:
        smaller = remove_channels(model, amount, norm=norm, scope=scope)
    except CompressionError as error:
        skipped[label] = f"channels cannot be removed from this model: {error}"
    else:
        if any(smaller.removed.values()):
            modules[label] = smaller.module
            techniques[label] = Technique(
                f"Channel removal ({amount:.0%})", TORCH_FP32,
                "the model is smaller and still dense, but the arithmetic it saves is too small a part of the "
                "time per call here",
            )
        else:
            kept = "; ".join(f"{layer or 'the model'}: {why}" for layer, why in smaller.skipped.items())
            skipped[label] = f"no layer can lose channels at amount {amount:g}" + (f" ({kept})" if kept else "")

    int8_reason = int8_slowness(cpu)
    try:
        fp32 = export_onnx(model)
        runners = {ORT_FP32: OnnxRuntimeModule(fp32, threads=threads)}
    except CompressionError as error:
        skipped[ORT_FP32] = f"ONNX export failed: {error}"
        skipped.update(dict.fromkeys((ORT_INT8_DYNAMIC, ORT_INT8_STATIC), f"no ONNX file to quantize (see {ORT_FP32})"))
        return StandardVariants(modules, techniques, onnx_files, skipped)
    onnx_files[ORT_FP32] = fp32
    techniques[ORT_FP32] = Technique(
        "onnxruntime fp32 (uncompressed)", TORCH_FP32,
        "onnxruntime runs the same float32 arithmetic as torch; only its per-call overhead and kernel choice differ",
    )
    calibration = calibration_inputs_for(model)
    if calibration_rows is not None:
        calibration = tuple(tensor[:calibration_rows] for tensor in calibration)
    dynamic_reason = (f"{int8_reason}; dynamic int8 also quantizes the activations at every call (convolutions "
                      "run as ConvInteger plus float rescaling, unfused)")
    quantizers = {
        ORT_INT8_DYNAMIC: (lambda: quantize_onnx_dynamic(fp32),
                           Technique("Dynamic int8 (onnxruntime)", ORT_FP32, dynamic_reason)),
        ORT_INT8_STATIC: (lambda: quantize_onnx_static(fp32, calibration, format="qdq"),
                          Technique("Static int8, QDQ (onnxruntime)", ORT_FP32, int8_reason)),
    }
    for label, (quantize, technique) in quantizers.items():
        try:
            onnx_files[label] = quantize()
            runners[label] = OnnxRuntimeModule(onnx_files[label], threads=threads)
        except CompressionError as error:
            onnx_files.pop(label, None)
            skipped[label] = f"onnxruntime's int8 quantization failed: {error}"
        else:
            techniques[label] = technique
    modules.update(runners)
    return StandardVariants(modules, techniques, onnx_files, skipped)


def recipe_technique(recipe: Recipe | Mapping[str, Any] | str | None) -> Technique:
    """The recipe as a technique against torch fp32: its name, and why its same-shaped float32
    tensors would run no faster in torch.

    >>> recipe_technique({"prune": {"method": "magnitude", "amount": 0.9}}).name
    'Unstructured sparsity'
    """
    recipe = as_recipe(recipe)
    names, reasons = [], []
    prune, quantize = recipe.prune, recipe.quantize
    if prune is not None:
        if prune.method == "structured":
            names.append("masked channels")
            reasons.append("masked channels are zeros in tensors of the same shape, run by the same dense kernels "
                           "(removing them is the channels-removed row)")
        elif prune.method == "n:m":
            names.append(f"{prune.n}:{prune.m} sparsity")
            reasons.append(f"torch's CPU kernels do not use the {prune.n}:{prune.m} pattern: {_DENSE_KERNELS}")
        else:
            names.append("unstructured sparsity")
            reasons.append(_DENSE_KERNELS)
    if quantize is not None:
        names.append("fake-quantized weights")
        reasons.append("quantized weights are stored back as float32 values, run by the same float kernels")
    if not names:  # only per-layer overrides
        names.append("this recipe")
        reasons.append("it keeps every tensor's shape and float32 type, so the same dense kernels run")
    name = " + ".join(names)
    return Technique(name[0].upper() + name[1:], TORCH_FP32, "; ".join(reasons))


def variant_scores(
    model: LoadedModel, modules: Mapping[str, nn.Module], *, samples: int | None = None
) -> dict[str, float]:
    """Each variant's ``evaluate`` value on the model's evaluation data (its first ``samples``
    rows where given), so a fast but broken variant shows; empty where the model has none."""
    if model.evaluation is None:
        return {}
    return {label: evaluate(model, module, samples=samples).value for label, module in modules.items()}
