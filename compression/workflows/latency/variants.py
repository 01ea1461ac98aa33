"""The standard variants to time: torch fp32, the recipe, channels removed, onnxruntime fp32 and int8."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from torch import nn

from compression.compress import as_recipe, compress
from compression.display_text import DisplayText
from compression.errors import CompressionError
from compression.evaluation import evaluate
from compression.graph.channels import remove_channels
from compression.model import LoadedModel
from compression.recipe import Recipe
from compression.workflows.latency.cpu import CpuInfo, cpu_info, int8_slowness
from compression.workflows.latency.verdicts import Technique

DEFAULT_CHANNEL_AMOUNT = 0.5  # channels removed where the recipe is not structured pruning with an amount
TORCH_FP32 = "torch fp32"
RECIPE_LABEL = DisplayText("variant_recipe", "torch, this recipe")
ORT_FP32 = "ORT fp32"
ORT_INT8_DYNAMIC = DisplayText("variant_ort_int8_dynamic", "ORT int8 dynamic")
ORT_INT8_STATIC = DisplayText("variant_ort_int8_static", "ORT int8 static QDQ")
_DENSE_KERNELS = DisplayText("reason_dense_kernels",
                             "the zeros go through the same dense kernels (a zero is multiplied like any other value)")


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
    return DisplayText("variant_channels_removed", f"torch {amount:.0%} channels removed", amount=amount)


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
        skipped[recipe_label] = DisplayText("skipped_empty_recipe", f"the recipe is empty: it would time {TORCH_FP32} again",
                                            reference=TORCH_FP32)
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
        skipped[label] = DisplayText("skipped_no_channel_removal", f"channels cannot be removed from this model: {error}",
                                     error=str(error))
    else:
        if any(smaller.removed.values()):
            modules[label] = smaller.module
            techniques[label] = Technique(
                DisplayText("technique_channel_removal", f"Channel removal ({amount:.0%})", amount=amount), TORCH_FP32,
                DisplayText("reason_smaller_still_dense", "the model is smaller and still dense, but the arithmetic "
                            "it saves is too small a part of the time per call here"),
            )
        else:
            kept = "; ".join(f"{layer or 'the model'}: {why}" for layer, why in smaller.skipped.items())
            skipped[label] = (DisplayText("skipped_no_layer_loses_channels",
                                          f"no layer can lose channels at amount {amount:g} ({kept})",
                                          amount=amount, layers=kept) if kept else
                              DisplayText("skipped_no_channels_at_amount",
                                          f"no layer can lose channels at amount {amount:g}", amount=amount))

    int8_reason = int8_slowness(cpu)
    try:
        fp32 = export_onnx(model)
        runners = {ORT_FP32: OnnxRuntimeModule(fp32, threads=threads)}
    except CompressionError as error:
        skipped[ORT_FP32] = DisplayText("skipped_onnx_export", f"ONNX export failed: {error}", error=str(error))
        skipped.update(dict.fromkeys((ORT_INT8_DYNAMIC, ORT_INT8_STATIC), DisplayText(
            "skipped_no_onnx_file", f"no ONNX file to quantize (see {ORT_FP32})", variant=ORT_FP32)))
        return StandardVariants(modules, techniques, onnx_files, skipped)
    onnx_files[ORT_FP32] = fp32
    techniques[ORT_FP32] = Technique(
        DisplayText("technique_ort_fp32", "onnxruntime fp32 (uncompressed)"), TORCH_FP32,
        DisplayText("reason_same_float_arithmetic", "onnxruntime runs the same float32 arithmetic as torch; only its "
                    "per-call overhead and kernel choice differ"),
    )
    calibration = calibration_inputs_for(model)
    if calibration_rows is not None:
        calibration = tuple(tensor[:calibration_rows] for tensor in calibration)
    dynamic_reason = DisplayText(
        "reason_dynamic_int8", f"{int8_reason}; dynamic int8 also quantizes the activations at every call (convolutions "
        "run as ConvInteger plus float rescaling, unfused)", int8=int8_reason)
    quantizers = {
        ORT_INT8_DYNAMIC: (lambda: quantize_onnx_dynamic(fp32),
                           Technique(DisplayText("technique_dynamic_int8", "Dynamic int8 (onnxruntime)"), ORT_FP32,
                                     dynamic_reason)),
        ORT_INT8_STATIC: (lambda: quantize_onnx_static(fp32, calibration, format="qdq"),
                          Technique(DisplayText("technique_static_int8", "Static int8, QDQ (onnxruntime)"), ORT_FP32,
                                    int8_reason)),
    }
    for label, (quantize, technique) in quantizers.items():
        try:
            onnx_files[label] = quantize()
            runners[label] = OnnxRuntimeModule(onnx_files[label], threads=threads)
        except CompressionError as error:
            onnx_files.pop(label, None)
            skipped[label] = DisplayText("skipped_int8_failed", f"onnxruntime's int8 quantization failed: {error}",
                                         error=str(error))
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
    prune, quantize = recipe.prune, recipe.quantize
    pruning = reason = None
    if prune is not None:
        if prune.method == "structured":
            pruning = DisplayText("technique_masked_channels", "Masked channels")
            reason = DisplayText("reason_masked_channels", "masked channels are zeros in tensors of the same shape, run "
                                 "by the same dense kernels (removing them is the channels-removed row)")
        elif prune.method == "n:m":
            pruning = DisplayText("technique_n_m", f"{prune.n}:{prune.m} sparsity", n=prune.n, m=prune.m)
            reason = DisplayText("reason_n_m", f"torch's CPU kernels do not use the {prune.n}:{prune.m} pattern: "
                                 f"{_DENSE_KERNELS}", n=prune.n, m=prune.m, dense=_DENSE_KERNELS)
        else:
            pruning, reason = DisplayText("technique_unstructured", "Unstructured sparsity"), _DENSE_KERNELS
    if quantize is None:
        if pruning is None:  # only per-layer overrides
            return Technique(DisplayText("technique_this_recipe", "This recipe"), TORCH_FP32, DisplayText(
                "reason_same_shapes", "it keeps every tensor's shape and float32 type, so the same dense kernels run"))
        return Technique(pruning, TORCH_FP32, reason)
    fake = DisplayText("reason_fake_quantized", "quantized weights are stored back as float32 values, run by the same "
                       "float kernels")
    if pruning is None:
        return Technique(DisplayText("technique_fake_quantized", "Fake-quantized weights"), TORCH_FP32, fake)
    return Technique(DisplayText("technique_and_fake_quantized", f"{pruning} + fake-quantized weights", pruning=pruning),
                     TORCH_FP32, DisplayText("reasons_pruning_and_quantization", f"{reason}; {fake}",
                                             pruning=reason, quantization=fake))


def variant_scores(
    model: LoadedModel, modules: Mapping[str, nn.Module], *, samples: int | None = None
) -> dict[str, float]:
    """Each variant's ``evaluate`` value on the model's evaluation data (its first ``samples``
    rows where given), so a fast but broken variant shows; empty where the model has none."""
    if model.evaluation is None:
        return {}
    return {label: evaluate(model, module, samples=samples).value for label, module in modules.items()}
