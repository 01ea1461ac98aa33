"""Inference latency on this machine: torch fp32 against sparse torch, ONNX Runtime fp32 and int8.

Run ``python bench/latency.py`` from the repository root (about 1 minute on 2 cores;
``--quick`` takes fewer samples, ``--minilm`` adds MiniLM, about one minute more).

For simplenet, mlp and bn_cnn (and MiniLM with ``--minilm``), at batch 1 and 64, it times one
forward pass of:

- torch fp32: the base module (the reference every ratio is taken against);
- torch 90% sparse: ``compress`` with 90% global magnitude pruning, run by the same dense
  kernels (zeros are multiplied like any other value);
- torch 50% channels removed: ``compression.graph.channels.remove_channels(model, 0.5)``, a smaller dense
  model (left out, with a note saying why, for a model it cannot be applied to);
- ORT fp32: the ``export_onnx`` model in onnxruntime (CPUExecutionProvider);
- ORT int8 dynamic: ``quantize_onnx_dynamic`` (int8 weights, activations quantized per call);
- ORT int8 static QDQ: ``quantize_onnx_static`` calibrated on the training split.

The variants are built by ``compression.workflows.latency.standard_variants`` (the dashboard's Export page
times the same set), the notes' reasons come from its techniques.

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

from compression.workflows.latency import (  # noqa: E402
    NO_SPEEDUP,
    ORT_FP32,
    TORCH_FP32,
    StandardVariants,
    Technique,
    cpu_info,
    standard_variants,
    variant_scores,
)
from compression.io.loading import load_model  # noqa: E402
from compression.io.onnx.runtime import OnnxRuntimeModule  # noqa: E402

DIGITS = ("simplenet", "mlp", "bn_cnn")
BATCHES = (1, 64)
SPARSITY = 0.9
SPARSE_RECIPE = {"prune": {"method": "magnitude", "amount": SPARSITY, "scope": "global"}}
MIN_SAMPLES = 5
WARMUP_S = 1.0
MINILM_SCORED_ROWS = 128
MINILM_CALIBRATION_ROWS = 128


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


# --------------------------------------------------------------------------- variants


def state_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def torch_variant(label: str, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], score: float) -> Variant:
    return Variant(label, lambda: module(*inputs), state_bytes(module), score)


def onnx_variant(label: str, runner: OnnxRuntimeModule, size_bytes: int, inputs: tuple[torch.Tensor, ...],
                 score: float) -> Variant:
    # The session itself, fed arrays made once: the time of onnxruntime's run, not of the conversion.
    feeds = {name: np.ascontiguousarray(t.numpy()) for name, t in zip(runner.input_names, inputs)}
    outputs = [runner.output_name]
    return Variant(label, lambda: runner.session.run(outputs, feeds), size_bytes, score)


@dataclass
class Prepared:
    """One model's variants (``standard_variants``) and their scores, built once for every batch size."""

    name: str
    inputs: tuple[torch.Tensor, ...]  # evaluation rows to slice batches from
    built: StandardVariants
    scores: dict[str, float]
    metric: str
    notes: list[str]


def prepare(name: str, threads: int) -> Prepared:
    model = load_model(name)
    minilm = name == "minilm"
    built = standard_variants(model, SPARSE_RECIPE, recipe_label=f"torch {SPARSITY:.0%} sparse", threads=threads,
                              calibration_rows=MINILM_CALIBRATION_ROWS if minilm else None)
    notes = [f"note: {name}: no {label!r} row: {reason.split('; ')[0]}" for label, reason in built.skipped.items()]
    scores = variant_scores(model, built.modules, samples=MINILM_SCORED_ROWS if minilm else None)
    return Prepared(name, model.evaluation.inputs, built, scores, model.evaluation.metric, notes)


def variants(prepared: Prepared, batch: int) -> list[Variant]:
    inputs = tuple(t[:batch] for t in prepared.inputs)
    built = []
    for label, module in prepared.built.modules.items():
        if isinstance(module, OnnxRuntimeModule):
            size = len(prepared.built.onnx_files[label])
            built.append(onnx_variant(label, module, size, inputs, prepared.scores[label]))
        else:
            built.append(torch_variant(label, module, inputs, prepared.scores[label]))
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
    cpu = cpu_info()
    names = DIGITS + (("minilm",) if args.minilm else ())
    extensions = {None: "unknown (no /proc/cpuinfo flags)", (): "no AVX512-VNNI, no AVX-VNNI"}.get(
        cpu.int8_dot, ", ".join(cpu.int8_dot or ()))
    print(f"measured on this machine: {cpu.name}, {len(os.sched_getaffinity(0))} usable cores; "
          f"int8 dot-product extensions: {extensions}")
    print(f"threads: torch.set_num_threads({args.threads}); onnxruntime intra_op_num_threads={args.threads}, "
          f"inter_op_num_threads=1, CPUExecutionProvider; torch {torch.__version__}; "
          f"{args.samples} samples of ~{args.sample_ms:g} ms after {args.warmup} warm-up calls; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)

    # With one thread every call runs on this thread (onnxruntime makes no pool for one), so its
    # CPU time is the work alone: time that other processes hold the core does not count.
    on_cpu = args.threads == 1

    def basis(variant: Variant) -> float:
        return variant.median_cpu_ms if on_cpu else variant.median_ms

    header = (f"{'model':10} {'batch':>5}  {'variant':26} {'ms/batch':>9} {'cpu ms':>8} {'vs torch':>9} {'vs ORT':>7} "
              f"{'size KB':>9} {'score':>7} {'runs':>4}")
    rows: list[tuple[str, int, Variant, float]] = []
    measured: dict[tuple[str, int, str], float] = {}  # (model, batch, variant) → the ratios' basis
    techniques: dict[str, Technique] = {}
    notes: list[str] = []
    lines = []
    for name in names:
        start = time.perf_counter()
        prepared = prepare(name, args.threads)
        techniques.update(prepared.built.techniques)
        notes += prepared.notes
        for batch in BATCHES:
            candidates = variants(prepared, batch)
            with torch.inference_mode():
                samples = time_variants(candidates, args.samples, args.sample_ms, args.warmup, args.budget_s)
            measured.update({(name, batch, v.label): basis(v) for v in candidates})
            reference = basis(candidates[0])
            ort = measured.get((name, batch, ORT_FP32))
            for variant in candidates:
                ratio = reference / basis(variant)
                vs_ort = ort / basis(variant) if "int8" in variant.label and ort is not None else None
                rows.append((name, batch, variant, ratio))
                lines.append(f"{name:10} {batch:>5}  {variant.label:26} {variant.median_ms:>9.3f} "
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

    labels = list(dict.fromkeys(variant.label for _, _, variant, _ in rows if variant.label != TORCH_FP32))
    for label in labels:  # each technique against its reference: int8 against ORT fp32, the rest against torch fp32
        technique = techniques[label]
        ratios = [(f"{n} b{b}", measured[(n, b, technique.reference)] / measured[(n, b, label)])
                  for n, b, v, _ in rows if v.label == label and (n, b, technique.reference) in measured]
        note = ratio_note(label, ratios, technique.reference, technique.why_not_faster) if ratios else None
        if note:
            notes.append(note)
    load, cores = os.getloadavg()[0], len(os.sched_getaffinity(0))
    if load > cores - args.threads + 0.5:
        notes.append(f"note: the machine was busy (load average {load:.2f} on {cores} cores): compare the ratios of "
                     "this run, not times across runs")
    print("\n".join(notes))

    summary = []
    for label in labels:
        ratios = [r for _, _, v, r in rows if v.label == label]
        summary.append(f"{label} {statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]")
    print(f"summary, speed-up vs torch fp32 (median [range] over {len(names)} models x batch {'/'.join(map(str, BATCHES))}, "
          f"{args.threads} thread{'s' if args.threads > 1 else ''}, load average {os.getloadavg()[0]:.2f} at the end): "
          + "; ".join(summary))


if __name__ == "__main__":
    main()
