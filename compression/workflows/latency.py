"""Latency measured on this machine: the median time of one batch through a module.

Sizes and metrics say what a compression keeps; only a timing says whether it runs faster,
and that depends on the kernels and the CPU: unstructured zeros go through the same dense
kernels, int8 pays off only where the CPU and the layer sizes let it. So the numbers are
measured, per batch size, against the first variant timed in the same call.

``standard_variants`` builds the usual rows for a model and a recipe (torch fp32, the recipe
in torch, channels removed, onnxruntime fp32 and int8), ``latency_table`` times them, and
``verdicts`` says, from the measured table, which techniques made nothing faster here and why.

>>> import compression
>>> mlp = compression.load_model("mlp")
>>> built = standard_variants(mlp, {"prune": {"method": "magnitude", "amount": 0.9}})  # doctest: +SKIP
>>> table = latency_table(mlp, built.modules, repeats=5)  # doctest: +SKIP
>>> [v.text for v in verdicts(table, built.techniques)]  # doctest: +SKIP
['Unstructured sparsity: 0.98x at batch 1, 1.01x at batch 64 against torch fp32 — no faster here: ...']
"""
from __future__ import annotations

import contextlib
import functools
import math
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import pandas as pd
import torch
from torch import nn

from compression.graph.channels import remove_channels
from compression.compress import as_recipe, compress
from compression.errors import CompressionError, DataError
from compression.evaluation import evaluate
from compression.model import LoadedModel
from compression.recipe import Recipe

NO_SPEEDUP = 1.1  # a speed-up below this, at every batch, is reported as none
DEFAULT_CHANNEL_AMOUNT = 0.5  # channels removed where the recipe is not structured pruning with an amount
TORCH_FP32 = "torch fp32"
RECIPE_LABEL = "torch, this recipe"
ORT_FP32 = "ORT fp32"
ORT_INT8_DYNAMIC = "ORT int8 dynamic"
ORT_INT8_STATIC = "ORT int8 static QDQ"
# Instruction-set flags for int8 dot products, as /proc/cpuinfo lists them, and their names.
_INT8_DOT_FLAGS = (("avx512_vnni", "AVX512-VNNI"), ("avx_vnni", "AVX-VNNI"), ("asimddp", "Arm dot product"))
_DENSE_KERNELS = "the zeros go through the same dense kernels (a zero is multiplied like any other value)"

Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what was just timed)


# --- timing --------------------------------------------------------------------------------


def batch_of(inputs: tuple[torch.Tensor, ...], rows: int) -> tuple[torch.Tensor, ...]:
    """``rows`` rows of each input, repeating the rows given when there are fewer."""
    available = int(inputs[0].shape[0])
    if available == 0:
        raise DataError("no input rows to time a batch with.")
    index = torch.arange(rows) % available
    return tuple(tensor[index] for tensor in inputs)


def median_milliseconds_in_turns(
    calls: list[Callable[[], object]],
    *,
    warmup: int = 3,
    repeats: int = 15,
    sample_ms: float = 2.0,
    after_round: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """The median milliseconds of each call by ``clock`` (seconds; default wall-clock), timed
    in ``repeats`` rounds.

    Each call is first made ``warmup`` times untimed; one sample is then enough back-to-back
    calls to fill about ``sample_ms`` (sized on the last warm-up call), so a call of a few
    microseconds is not timed alone. In each round every call gives one sample, the order
    rotating from round to round, so a burst of load from other processes slows all of them
    alike instead of the one timed then. ``after_round(r)`` is called after round ``r`` (from 1).

    >>> made = []
    >>> medians = median_milliseconds_in_turns([lambda: made.append("a"), lambda: made.append("b")],
    ...                                        warmup=1, repeats=2, sample_ms=0)
    >>> "".join(made), len(medians)
    ('ababba', 2)
    """
    per_sample = []
    for call in calls:
        once_ms = None
        for _ in range(warmup):
            start = clock()
            call()
            once_ms = (clock() - start) * 1000
        per_sample.append(1 if once_ms is None else max(1, math.ceil(sample_ms / max(once_ms, 1e-3))))
    times: list[list[float]] = [[] for _ in calls]
    for round_index in range(repeats):
        shift = round_index % len(calls)
        for index in [*range(shift, len(calls)), *range(shift)]:
            call, count = calls[index], per_sample[index]
            start = clock()
            for _ in range(count):
                call()
            times[index].append((clock() - start) * 1000 / count)
        if after_round is not None:
            after_round(round_index + 1)
    return [statistics.median(samples) for samples in times]


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(count)`` (unchanged where None), then restore.

    One thread is the steady choice on a machine that other processes also use: with more,
    torch waits at every parallel region for a core another process holds (bench/latency.py).
    """
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise DataError(f"threads must be a positive integer or None; got {count!r}.")
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def latency_table(
    model: LoadedModel,
    variants: Mapping[str, nn.Module],
    *,
    batches: tuple[int, ...] = (1, 64),
    repeats: int = 15,
    progress: Progress | None = None,
    cpu_time: bool = False,
) -> pd.DataFrame:
    """One row per (variant, batch): median ms per batch and the speed-up against the first variant.

    The variants of a batch are timed in turns (``median_milliseconds_in_turns``), by the
    wall clock, or with ``cpu_time`` by the calling thread's CPU time: the work alone, whatever
    other programs load the machine with, but only where all of it runs on this thread (torch
    with one thread, onnxruntime with ``intra_op_num_threads=1``). ``progress``,
    where given, is called after each round with the rounds done, the rounds in all and a line
    saying which, so a caller can draw a progress bar.

    >>> import compression
    >>> mlp = compression.load_model("mlp")
    >>> table = latency_table(mlp, {"base": mlp.module}, batches=(1,), repeats=2)
    >>> list(table.columns), float(table["speed_up"].iloc[0])
    (['variant', 'batch', 'ms_per_batch', 'speed_up'], 1.0)
    """
    if not variants:
        raise DataError("give at least one variant to time.")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise DataError(f"repeats must be a positive integer, the timed rounds per batch; got {repeats!r}.")
    inputs = model.evaluation.inputs if model.evaluation is not None else model.example_inputs
    rows = []
    total = len(batches) * repeats
    with torch.inference_mode():
        for batch_index, batch in enumerate(batches):
            rows_of_batch = batch_of(inputs, batch)
            calls = [functools.partial(module, *rows_of_batch) for module in variants.values()]

            def report(done: int, batch_index: int = batch_index, batch: int = batch) -> None:
                if progress is not None:
                    progress(batch_index * repeats + done, total, f"batch {batch}, round {done} of {repeats}")

            medians = median_milliseconds_in_turns(calls, repeats=repeats, after_round=report,
                                                   clock=time.thread_time if cpu_time else time.perf_counter)
            for label, milliseconds in zip(variants, medians):
                rows.append({"variant": label, "batch": batch, "ms_per_batch": milliseconds,
                             "speed_up": medians[0] / milliseconds})
    return pd.DataFrame(rows)


# --- the machine ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuInfo:
    """The CPU's model name and its int8 dot-product extensions (VNNI): a tuple of their
    names, empty where the flags list none, None where the flags are unknown (not Linux)."""

    name: str
    int8_dot: tuple[str, ...] | None

    @property
    def vnni_note(self) -> str:
        """``"AVX512-VNNI"``, ``"no VNNI"`` or ``"VNNI unknown"``: for a caption."""
        if self.int8_dot is None:
            return "VNNI unknown"
        return ", ".join(self.int8_dot) if self.int8_dot else "no VNNI"


def parse_cpuinfo(text: str) -> CpuInfo:
    """The first processor's model name and int8 dot-product flags from /proc/cpuinfo's text.

    >>> parse_cpuinfo("model name\\t: Some CPU\\nflags\\t\\t: fpu avx2 avx512_vnni\\n")
    CpuInfo(name='Some CPU', int8_dot=('AVX512-VNNI',))
    """
    name, flags = None, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "Hardware") and name is None and value.strip():
            name = value.strip()
        elif key in ("flags", "Features") and flags is None:  # x86 lists "flags", Arm "Features"
            flags = set(value.split())
    if flags is None:
        return CpuInfo(name or platform.machine() or "unknown CPU", None)
    return CpuInfo(name or platform.machine() or "unknown CPU",
                   tuple(label for flag, label in _INT8_DOT_FLAGS if flag in flags))


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's CPU: /proc/cpuinfo on Linux; elsewhere the platform's name, VNNI unknown."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            return parse_cpuinfo(handle.read())
    except OSError:
        return CpuInfo(platform.processor() or platform.machine() or "unknown CPU", None)


# --- the standard variants -----------------------------------------------------------------


@dataclass(frozen=True)
class Technique:
    """What a variant changes from its ``reference`` (a label in the same set), in plain words,
    and why that would not run faster here: shown only where the numbers say it did not."""

    name: str
    reference: str
    why_not_faster: str


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
    from compression.io import onnx_export  # onnxruntime loads only where ONNX rows are wanted

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
        fp32 = onnx_export.export_onnx(model)
        runners = {ORT_FP32: onnx_export.OnnxRuntimeModule(fp32, threads=threads)}
    except CompressionError as error:
        skipped[ORT_FP32] = f"ONNX export failed: {error}"
        skipped.update(dict.fromkeys((ORT_INT8_DYNAMIC, ORT_INT8_STATIC), f"no ONNX file to quantize (see {ORT_FP32})"))
        return StandardVariants(modules, techniques, onnx_files, skipped)
    onnx_files[ORT_FP32] = fp32
    techniques[ORT_FP32] = Technique(
        "onnxruntime fp32 (uncompressed)", TORCH_FP32,
        "onnxruntime runs the same float32 arithmetic as torch; only its per-call overhead and kernel choice differ",
    )
    calibration = onnx_export.calibration_inputs_for(model)
    if calibration_rows is not None:
        calibration = tuple(tensor[:calibration_rows] for tensor in calibration)
    dynamic_reason = (f"{int8_reason}; dynamic int8 also quantizes the activations at every call (convolutions "
                      "run as ConvInteger plus float rescaling, unfused)")
    quantizers = {
        ORT_INT8_DYNAMIC: (lambda: onnx_export.quantize_onnx_dynamic(fp32),
                           Technique("Dynamic int8 (onnxruntime)", ORT_FP32, dynamic_reason)),
        ORT_INT8_STATIC: (lambda: onnx_export.quantize_onnx_static(fp32, calibration, format="qdq"),
                          Technique("Static int8, QDQ (onnxruntime)", ORT_FP32, int8_reason)),
    }
    for label, (quantize, technique) in quantizers.items():
        try:
            onnx_files[label] = quantize()
            runners[label] = onnx_export.OnnxRuntimeModule(onnx_files[label], threads=threads)
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


def int8_slowness(cpu: CpuInfo) -> str:
    """Why int8 may run no faster than float32 on ``cpu``: whether it has VNNI, and what that means."""
    if cpu.int8_dot is None:
        return ("whether this CPU has int8 dot-product instructions (VNNI) is unknown here; without them int8 "
                "dot products cost about what float32 ones do")
    if cpu.int8_dot:
        return (f"this CPU has {' and '.join(cpu.int8_dot)}, so the int8 arithmetic is cheap; on layers this small, "
                "quantizing activations and the quantize/dequantize steps cost what int8 saves")
    return ("this CPU has no VNNI: int8 dot products go through 16-bit multiply-adds (VPMADDUBSW), about the "
            "speed of float32 FMA")


def variant_scores(
    model: LoadedModel, modules: Mapping[str, nn.Module], *, samples: int | None = None
) -> dict[str, float]:
    """Each variant's ``evaluate`` value on the model's evaluation data (its first ``samples``
    rows where given), so a fast but broken variant shows; empty where the model has none."""
    if model.evaluation is None:
        return {}
    return {label: evaluate(model, module, samples=samples).value for label, module in modules.items()}


# --- what the numbers say ------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """One technique's measured speed-up at each batch against its reference, and in words."""

    label: str
    technique: Technique
    speed_ups: dict[int, float]  # batch → reference ms / this variant's ms
    faster: bool  # at least NO_SPEEDUP at some batch
    text: str


def verdicts(
    table: pd.DataFrame, techniques: Mapping[str, Technique], *, threshold: float = NO_SPEEDUP
) -> list[Verdict]:
    """For each technique timed in ``table`` (``latency_table``'s columns), whether it made
    anything faster here: a speed-up of at least ``threshold`` against its reference at some batch.

    >>> table = pd.DataFrame({"variant": ["torch fp32", "sparse"] * 2, "batch": [1, 1, 64, 64],
    ...                       "ms_per_batch": [1.0, 1.02, 10.0, 9.9]})
    >>> print(verdicts(table, {"sparse": Technique("Sparsity", "torch fp32", "same kernels")})[0].text)
    Sparsity: 0.98x at batch 1, 1.01x at batch 64 against torch fp32 — no faster here: same kernels.
    """
    milliseconds = {(row.variant, row.batch): row.ms_per_batch for row in table.itertuples()}
    batches = list(dict.fromkeys(table["batch"]))
    found = []
    for label, technique in techniques.items():
        timed = [b for b in batches if (label, b) in milliseconds and (technique.reference, b) in milliseconds]
        if not timed:
            continue
        speed_ups = {int(b): milliseconds[(technique.reference, b)] / milliseconds[(label, b)] for b in timed}
        fast = [b for b, ratio in speed_ups.items() if ratio >= threshold]
        slow = [b for b, ratio in speed_ups.items() if ratio < threshold]
        figures = ", ".join(f"{ratio:.2f}x at batch {b}" for b, ratio in speed_ups.items())
        text = f"{technique.name}: {figures} against {technique.reference}"
        if not fast:
            text += f" — no faster here: {technique.why_not_faster}."
        elif slow:
            text += (f" — faster here at batch {_batches(fast)} only; at batch {_batches(slow)} no faster: "
                     f"{technique.why_not_faster}.")
        else:
            text += " — faster here."
        found.append(Verdict(label, technique, speed_ups, bool(fast), text))
    return found


def _batches(batches: list[int]) -> str:
    return " and ".join(map(str, batches))
