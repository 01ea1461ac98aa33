"""Inference latency on this machine: torch fp32 against sparse torch, ONNX Runtime fp32 and int8.

Run ``python bench/latency.py`` from the repository root (about 1 minute on 2 cores;
``--quick`` takes fewer samples, ``--minilm`` adds MiniLM, about one minute more).

For simplenet, mlp and bn_cnn (and MiniLM with ``--minilm``), at batch 1 and 64, it times one
forward pass of:

- torch fp32: the base module (the reference every ratio is taken against);
- torch 90% sparse: ``compress`` with 90% global magnitude pruning, run by the same dense
  kernels (zeros are multiplied like any other value);
- torch channels removed: ``compression.channels.remove_channels(model, 0.5)``, a smaller dense
  model, only where that module and function exist;
- ORT fp32: the ``export_onnx`` model in onnxruntime (CPUExecutionProvider);
- ORT int8 dynamic: ``quantize_onnx_dynamic`` (int8 weights, activations quantized per call);
- ORT int8 static QDQ: ``quantize_onnx_static`` calibrated on the training split.

Every variant of a (model, batch) is warmed up, then timed in ``--samples`` rounds (fewer,
at least 5, where one round takes longer than ``--budget-s`` allows: MiniLM at batch 64);
within a round the variants take turns (in a rotating order), so background load hits all of
them alike. One sample is enough back-to-back calls to fill about ``--sample-ms`` and gives
the time per call; the figure is the median sample, in ms per batch. The ratios are torch fp32's
median over the variant's, from the same run. torch uses ``torch.set_num_threads(threads)``
and onnxruntime ``intra_op_num_threads = threads`` (inter-op 1). ``--threads`` defaults to 1:
on a 2-core machine that other processes also use, two torch threads stall at every OpenMP
barrier while another process holds a core (torch calls measured 100-600x slower that way,
ONNX Runtime's much less), which would measure the machine's load rather than the model. The
score column is ``evaluate`` / ``evaluate_onnx`` on the
model's evaluation data (MiniLM: its first 128 sentences), so a fast but broken variant shows.
The last line summarises the ratios.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from compression.compress import compress  # noqa: E402
from compression.evaluation import evaluate  # noqa: E402
from compression.loading import load_model  # noqa: E402
from compression.onnx_export import (  # noqa: E402
    OnnxRuntimeModule,
    calibration_inputs_for,
    evaluate_onnx,
    export_onnx,
    quantize_onnx_dynamic,
    quantize_onnx_static,
)

DIGITS = ("simplenet", "mlp", "bn_cnn")
BATCHES = (1, 64)
SPARSITY = 0.9
CHANNEL_AMOUNT = 0.5
MIN_SAMPLES = 5
WARMUP_S = 1.0
NO_SPEEDUP = 1.1  # a ratio below this is reported as no speed-up
MINILM_SCORED_ROWS = 128
MINILM_CALIBRATION_ROWS = 128
TORCH_FP32 = "torch fp32"
ORT_FP32 = "ORT fp32"


@dataclass
class Variant:
    label: str
    call: Callable[[], object]
    size_bytes: int
    score: float
    samples: list[float] = field(default_factory=list)  # wall-clock ms per call
    cpu_samples: list[float] = field(default_factory=list)  # this thread's CPU ms per call
    per_sample: int = 1

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples)

    @property
    def median_cpu_ms(self) -> float:
        return statistics.median(self.cpu_samples)


# --------------------------------------------------------------------------- machine


def cpu_description() -> tuple[str, list[str]]:
    """The CPU model and which int8 dot-product extensions (VNNI) its flags list."""
    name, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and name == "unknown CPU":
                    name = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    vnni = [label for flag, label in (("avx512_vnni", "AVX512-VNNI"), ("avx_vnni", "AVX-VNNI")) if flag in flags]
    return name, vnni


# --------------------------------------------------------------------------- variants


def state_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def torch_variant(label: str, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], score: float) -> Variant:
    return Variant(label, lambda: module(*inputs), state_bytes(module), score)


def onnx_variant(label: str, onnx_bytes: bytes, inputs: tuple[torch.Tensor, ...], threads: int, score: float) -> Variant:
    runner = OnnxRuntimeModule(onnx_bytes, threads=threads)
    feeds = {name: np.ascontiguousarray(t.numpy()) for name, t in zip(runner.input_names, inputs)}
    outputs = [runner.output_name]
    return Variant(label, lambda: runner.session.run(outputs, feeds), len(onnx_bytes), score)


def channel_remover() -> Callable | None:
    """``compression.channels.remove_channels`` where it exists; None otherwise."""
    if importlib.util.find_spec("compression.channels") is None:
        return None
    from compression import channels

    return getattr(channels, "remove_channels", None)


@dataclass
class Prepared:
    """One model's modules and ONNX files, built once for every batch size."""

    name: str
    inputs: tuple[torch.Tensor, ...]  # evaluation rows to slice batches from
    modules: dict[str, torch.nn.Module]
    onnx: dict[str, bytes]
    scores: dict[str, float]
    metric: str
    notes: list[str]


def prepare(name: str, remove_channels: Callable | None, threads: int) -> Prepared:
    model = load_model(name)
    samples = MINILM_SCORED_ROWS if name == "minilm" else None
    notes = []
    modules = {TORCH_FP32: model.module}
    modules[f"torch {SPARSITY:.0%} sparse"] = compress(
        model, {"prune": {"method": "magnitude", "amount": SPARSITY, "scope": "global"}}
    ).module
    if remove_channels is not None:
        try:
            result = remove_channels(model, CHANNEL_AMOUNT)
        except Exception as error:  # noqa: BLE001 - another engineer's module: report, never stop the bench
            reason = str(error).split("; ")[0]
            notes.append(f"note: {name}: no channels-cut row: remove_channels({CHANNEL_AMOUNT}) refused it ({reason})")
        else:
            modules[f"torch {CHANNEL_AMOUNT:.0%} channels cut"] = result.module
    fp32 = export_onnx(model)
    calibration = calibration_inputs_for(model)
    if name == "minilm":
        calibration = tuple(t[:MINILM_CALIBRATION_ROWS] for t in calibration)
    onnx_files = {
        ORT_FP32: fp32,
        "ORT int8 dynamic": quantize_onnx_dynamic(fp32),
        "ORT int8 static QDQ": quantize_onnx_static(fp32, calibration, format="qdq"),
    }
    scores = {label: evaluate(model, module, samples=samples).value for label, module in modules.items()}
    for label, data in onnx_files.items():
        scores[label] = evaluate_onnx(model, data, samples=samples, threads=threads).value
    return Prepared(name, model.evaluation.inputs, modules, onnx_files, scores, model.evaluation.metric, notes)


def variants(prepared: Prepared, batch: int, threads: int) -> list[Variant]:
    inputs = tuple(t[:batch] for t in prepared.inputs)
    built = [torch_variant(label, m, inputs, prepared.scores[label]) for label, m in prepared.modules.items()]
    built += [onnx_variant(label, data, inputs, threads, prepared.scores[label]) for label, data in prepared.onnx.items()]
    return built


# --------------------------------------------------------------------------- timing


def time_variants(candidates: list[Variant], samples: int, sample_ms: float, warmup: int, budget_s: float) -> int:
    """Warm every variant up, size its samples to ``sample_ms``, then time them in turns.

    Slow calls (MiniLM at batch 64: about a second) get fewer samples, at least
    ``MIN_SAMPLES``, so that one (model, batch) stays near ``budget_s``. Returns the count.
    """
    round_ms = 0.0
    for variant in candidates:
        start = time.perf_counter()
        for _ in range(warmup):  # fewer for slow calls: a second of warm-up is plenty
            variant.call()
            if time.perf_counter() - start > WARMUP_S:
                break
        start = time.perf_counter()
        variant.call()
        once_ms = (time.perf_counter() - start) * 1e3
        variant.per_sample = max(1, math.ceil(sample_ms / max(once_ms, 1e-3)))
        round_ms += variant.per_sample * once_ms
    samples = max(min(samples, int(budget_s * 1e3 / round_ms)), MIN_SAMPLES)
    for round_index in range(samples):
        shift = round_index % len(candidates)
        for variant in candidates[shift:] + candidates[:shift]:
            start, start_cpu = time.perf_counter(), time.thread_time()
            for _ in range(variant.per_sample):
                variant.call()
            variant.samples.append((time.perf_counter() - start) * 1e3 / variant.per_sample)
            variant.cpu_samples.append((time.thread_time() - start_cpu) * 1e3 / variant.per_sample)
    return samples


# --------------------------------------------------------------------------- report


def ratio_note(label: str, ratios: list[tuple[str, float]], against: str, reason: str) -> str | None:
    """One line where the technique gave less than NO_SPEEDUP: overall (by the median, which a
    noisy row cannot sway) or in some rows; None where it was faster everywhere."""
    slow = [(where, ratio) for where, ratio in ratios if ratio < NO_SPEEDUP]
    fast = [where for where, ratio in ratios if ratio >= NO_SPEEDUP]
    median = statistics.median(ratio for _, ratio in ratios)
    if median < NO_SPEEDUP:
        where = f"(median {median:.2f}x, {_span(ratios)} over {len(ratios)} rows vs {against}"
        where += f"; faster only for {', '.join(fast)})" if fast else ")"
    elif slow:
        where = f"for {', '.join(w for w, _ in slow)} ({_span(slow)} vs {against})"
    else:
        return None
    return f"note: {label}: no speed-up here {where}: {reason}"


def _span(ratios: list[tuple[str, float]]) -> str:
    values = [ratio for _, ratio in ratios]
    low, high = min(values), max(values)
    return f"{low:.2f}x" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}-{high:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and onnxruntime intra-op threads (default 1: see the module docstring)")
    parser.add_argument("--samples", type=int, default=21, help="timed samples per variant (median)")
    parser.add_argument("--sample-ms", type=float, default=20.0, help="approximate length of one sample")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per variant first")
    parser.add_argument("--budget-s", type=float, default=12.0,
                        help="timing budget per model and batch (fewer samples past it)")
    parser.add_argument("--quick", action="store_true", help="7 samples of about 5 ms")
    parser.add_argument("--minilm", action="store_true", help="add MiniLM (22.6M parameters; about a minute more)")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.sample_ms, args.warmup, args.budget_s = 7, 5.0, 2, 5.0

    warnings.filterwarnings("ignore", message="quant_pre_process failed")  # MiniLM: retried without it
    torch.set_num_threads(args.threads)
    cpu, vnni = cpu_description()
    remove_channels = channel_remover()
    names = DIGITS + (("minilm",) if args.minilm else ())
    print(f"measured on this machine: {cpu}, {len(os.sched_getaffinity(0))} usable cores; "
          f"int8 dot-product extensions: {', '.join(vnni) if vnni else 'no AVX512-VNNI, no AVX-VNNI'}")
    print(f"threads: torch.set_num_threads({args.threads}); onnxruntime intra_op_num_threads={args.threads}, "
          f"inter_op_num_threads=1, CPUExecutionProvider; torch {torch.__version__}; "
          f"{args.samples} samples of ~{args.sample_ms:g} ms after {args.warmup} warm-up calls; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)

    # With one thread every call runs on this thread (onnxruntime makes no pool for one), so its
    # CPU time is the work alone: time that other processes hold the core does not count.
    on_cpu = args.threads == 1

    def basis(variant: Variant) -> float:
        return variant.median_cpu_ms if on_cpu else variant.median_ms

    header = (f"{'model':10} {'batch':>5}  {'variant':22} {'ms/batch':>9} {'cpu ms':>8} {'vs torch':>9} {'vs ORT':>7} "
              f"{'size KB':>9} {'score':>7} {'runs':>4}")
    rows: list[tuple[str, int, Variant, float, float | None]] = []
    notes: list[str] = []
    lines = []
    for name in names:
        start = time.perf_counter()
        prepared = prepare(name, remove_channels, args.threads)
        notes += prepared.notes
        for batch in BATCHES:
            candidates = variants(prepared, batch, args.threads)
            with torch.inference_mode():
                samples = time_variants(candidates, args.samples, args.sample_ms, args.warmup, args.budget_s)
            reference = basis(candidates[0])
            ort = next(basis(v) for v in candidates if v.label == ORT_FP32)
            for variant in candidates:
                ratio = reference / basis(variant)
                vs_ort = ort / basis(variant) if "int8" in variant.label else None
                rows.append((name, batch, variant, ratio, vs_ort))
                lines.append(f"{name:10} {batch:>5}  {variant.label:22} {variant.median_ms:>9.3f} "
                             f"{variant.median_cpu_ms:>8.3f} {ratio:>8.2f}x "
                             f"{f'{vs_ort:.2f}x' if vs_ort is not None else '':>7} {variant.size_bytes / 1024:>9.1f} "
                             f"{variant.score:>7.4f} {samples:>4}")
        shape = "x".join(map(str, prepared.inputs[0].shape[1:]))
        print(f"  {name}: prepared and timed in {time.perf_counter() - start:.1f} s (one row: {shape}; score: "
              f"{prepared.metric})", flush=True)

    print()
    print(header)
    print("-" * len(header))
    print("\n".join(lines))
    measure = "cpu ms (this thread's CPU time, immune to other processes holding the core)" if on_cpu else "ms/batch (wall)"
    print(f"(ms/batch: wall-clock median of the runs (timed samples, up to {args.samples}); cpu ms: the calling thread's CPU "
          f"time per batch, median; ratios use {measure}; vs torch: torch fp32 / this variant, same run; vs ORT: "
          "ORT fp32 / this variant, the int8 step alone; size: state_dict or ONNX file; score: accuracy, or cosine "
          f"to the base embeddings for MiniLM on its first {MINILM_SCORED_ROWS} sentences)")

    labels = list(dict.fromkeys(variant.label for _, _, variant, _, _ in rows if variant.label != TORCH_FP32))
    int8_reason = (
        f"this CPU has {' and '.join(vnni)}, so the int8 arithmetic is cheap; on layers this small, quantizing "
        "activations at each call and the quantize/dequantize steps cost what int8 saves"
        if vnni else
        "this CPU has no VNNI: int8 dot products go through 16-bit multiply-adds (VPMADDUBSW), about the speed of fp32 FMA"
    )
    for label in labels:
        vs_torch = [(f"{n} b{b}", r) for n, b, v, r, _ in rows if v.label == label]
        if "sparse" in label:
            note = ratio_note(label, vs_torch, TORCH_FP32, "unstructured zeros are multiplied by the same dense kernels")
        elif "int8" in label:
            vs_ort = [(f"{n} b{b}", o) for n, b, v, _, o in rows if v.label == label]
            reason = int8_reason
            if "dynamic" in label:
                reason += "; dynamic int8 convolutions run as ConvInteger plus float rescaling, unfused"
            note = ratio_note(label, vs_ort, ORT_FP32, reason)
        elif label == ORT_FP32:
            note = ratio_note(label, vs_torch, TORCH_FP32, "onnxruntime's fp32 kernels are no faster than torch's here")
        else:
            note = ratio_note(label, vs_torch, TORCH_FP32, "the layers it cut are too small for fewer channels to save time")
        if note:
            notes.append(note)
    if remove_channels is None:
        notes.append("(no torch channels-removed row: compression.channels.remove_channels does not exist here)")
    load, cores = os.getloadavg()[0], len(os.sched_getaffinity(0))
    if load > cores - args.threads + 0.5:
        notes.append(f"note: the machine was busy (load average {load:.2f} on {cores} cores): compare the ratios of "
                     "this run, not times across runs")
    print("\n".join(notes))

    summary = []
    for label in labels:
        ratios = [r for _, _, v, r, _ in rows if v.label == label]
        summary.append(f"{label} {statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]")
    print(f"summary, speed-up vs torch fp32 (median [range] over {len(names)} models x batch {'/'.join(map(str, BATCHES))}, "
          f"{args.threads} thread{'s' if args.threads > 1 else ''}, load average {os.getloadavg()[0]:.2f} at the end): "
          + "; ".join(summary))


if __name__ == "__main__":
    main()
