"""Engine benchmark: ``compress`` against the same work done with stock PyTorch tools.

Run ``python bench/engine.py`` from the repository root (about 2-4 minutes on 2 cores).

Work compared, on MiniLM (its Linear weights are the compressible set) and on a synthetic
stack of Linear layers holding ≈22M weights:

- ours: ``compress(model, RECIPE)``: global 50% magnitude pruning, 4-bit symmetric
  per-channel linear quantization, the live-view data (histograms before/after, sparsity
  maps, errors, levels), the bit-packed encoding and the exact packed file size, and the
  compressed copy of the module.
- peer: on a ``copy.deepcopy`` of the model, ``torch.nn.utils.prune.global_unstructured``
  (L1Unstructured, amount 0.5) + ``prune.remove``, then per weight
  ``torch.fake_quantize_per_channel_affine`` (quant range [-7, 7], scale = max|w| / 7 per
  output channel, zero_point 0), ``torch.histc`` before and after, a sparsity map as a
  tile-mean of ``w == 0`` (``avg_pool2d``, ≤256×256 tiles like ours) and MSE/SQNR.
  The peer does no packing: that part of our work has no stock equivalent.

Memory: each (model, side) runs in fresh subprocesses, one call each: the model is built,
every weight is read once (MiniLM's loader leaves them memory-mapped: their pages would
otherwise count as the call's), a tiny warm-up runs on an 8×8 Linear (lazy initialisation),
the peak-RSS counter (VmHWM) is reset, then the call is made, and its peak RSS above the RSS
just before it is reported in "copies of the weights" (bytes / (4 × the model's parameters):
both sides return a whole new model, which is one copy by itself). The result is kept alive until the peak is read: holding the compressed copy is
part of the work. glibc's malloc keeps freed heap memory mapped, and how much varies from run
to run (the same call on the same model: 1.9 to 4.6 copies), so that figure is the median of
``--memory-runs`` processes, its range in brackets; one more process per side runs with
MALLOC_MMAP_THRESHOLD_=65536, where every tensor-sized block is its own mapping, returned when
freed: that "live" peak is the memory the call really holds at once, and is reproducible, so
it is the figure the target (at most two extra copies) is checked against.

Time: one more subprocess per model builds it, warms both sides up with one call each, then
alternates ours/peer calls ``--repeats`` times, so that both sides see the same background
load; each side's time is the median of its calls (wall clock; process CPU time is printed
too, as a check on a busy machine).
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from peak_memory import reset_peak, status_kib  # noqa: E402  (bench/ is this script's folder)

RECIPE = {
    "prune": {"method": "magnitude", "amount": 0.5, "scope": "global"},
    "quantize": {"scheme": "linear", "bits": 4, "granularity": "per_channel", "symmetric": True},
}
MODELS = ("minilm", "synthetic-22M")
SIDES = ("ours", "peer")
HIST_BINS = 129  # as compression.stats.HISTOGRAM_BINS
MAX_TILES = 256  # as compression.stats.MAX_TILES
TARGET_SPEEDUP = 5.0
TARGET_COPIES = 2.0


# --------------------------------------------------------------------------- models


def build_model(name: str):
    import torch
    from torch import nn

    if name == "minilm":
        from sample_models.minilm import load_embedder

        return load_embedder()
    if name == "synthetic-22M":
        # 1024→4096→1024→2048→2048→2048→1024→1024: 22,020,096 weights in 7 Linear layers.
        widths = (1024, 4096, 1024, 2048, 2048, 2048, 1024, 1024)
        generator = torch.Generator().manual_seed(0)
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            layer = nn.Linear(fan_in, fan_out)
            with torch.no_grad():
                layer.weight.normal_(0.0, fan_in**-0.5, generator=generator)
                layer.bias.normal_(0.0, 0.01, generator=generator)
            layers += [layer, nn.ReLU()]
        return nn.Sequential(*layers[:-1]).eval()
    raise ValueError(f"unknown model {name!r}")


def linear_layers(module):
    from torch import nn

    return [layer for layer in module.modules() if isinstance(layer, nn.Linear)]


def compressible_numel(module) -> int:
    return sum(layer.weight.numel() for layer in linear_layers(module))


# --------------------------------------------------------------------------- the two sides


def run_ours(model):
    from compression.compress import compress

    result = compress(model, RECIPE)
    return result, result.report.sparsity


def run_peer(model):
    import torch
    import torch.nn.functional as F
    import torch.nn.utils.prune as prune

    copied = copy.deepcopy(model)
    layers = linear_layers(copied)
    originals = [layer.weight for layer in linear_layers(model)]  # errors against these, as ours
    with torch.no_grad():
        before = [torch.histc(layer.weight, bins=HIST_BINS) for layer in layers]
    prune.global_unstructured(
        [(layer, "weight") for layer in layers], pruning_method=prune.L1Unstructured, amount=0.5
    )
    for layer in layers:
        prune.remove(layer, "weight")
    views = []
    zeros = total = 0
    with torch.no_grad():
        for layer, original, hist_before in zip(layers, originals, before):
            pruned = layer.weight
            scale = (pruned.abs().amax(dim=1) / 7).clamp_min(torch.finfo(torch.float32).tiny)
            zero_point = torch.zeros(pruned.shape[0], dtype=torch.int32)
            quantized = torch.fake_quantize_per_channel_affine(pruned, scale, zero_point, 0, -7, 7)
            hist_after = torch.histc(quantized, bins=HIST_BINS)
            rows, columns = quantized.shape
            tile = (-(-rows // MAX_TILES), -(-columns // MAX_TILES))
            sparsity_map = F.avg_pool2d((quantized == 0).float()[None, None], tile, ceil_mode=True)[0, 0]
            mse = F.mse_loss(quantized, original)
            sqnr_db = 10 * torch.log10(original.square().sum() / (mse * original.numel()))
            zeros += int((quantized == 0).sum())
            total += quantized.numel()
            layer.weight = torch.nn.Parameter(quantized, requires_grad=False)
            views.append((hist_before, hist_after, sparsity_map, float(mse), float(sqnr_db)))
    return (copied, views), zeros / total


SIDE_FUNCTIONS = {"ours": run_ours, "peer": run_peer}


# --------------------------------------------------------------------------- workers


def memory_worker(model_name: str, side: str, threads: int) -> dict:
    """One call in this fresh process: its peak RSS above the RSS just before it."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    function = SIDE_FUNCTIONS[side]
    model = build_model(model_name)
    with torch.no_grad():  # page in weights that the loader left memory-mapped: they are the model's, not the call's
        for tensor in model.state_dict().values():
            tensor.float().sum()
    function(nn.Sequential(nn.Linear(8, 8)).eval())  # lazy imports and initialisation
    gc.collect()

    reset = reset_peak()
    baseline_kib = status_kib("VmRSS") if reset else status_kib("VmHWM")
    start = time.perf_counter()
    result, sparsity = function(model)
    cold_s = time.perf_counter() - start
    peak_kib, held_kib = status_kib("VmHWM"), status_kib("VmRSS")
    record = {
        "numel": compressible_numel(model),
        "params": sum(p.numel() for p in model.parameters()),
        "sparsity": sparsity,
        "cold_s": cold_s,
        "peak_extra_bytes": (peak_kib - baseline_kib) * 1024,
        "held_extra_bytes": (held_kib - baseline_kib) * 1024,
        "peak_reset": reset,
    }
    if side == "ours":  # the report's file size must be the real one (outside the measurement)
        record["file_bytes_exact"] = result.report.file_bytes == len(result.packed.to_bytes())
    return record


def timing_worker(model_name: str, repeats: int, threads: int) -> dict:
    """Both sides on one model, alternated after one warm-up call each."""
    import torch

    torch.set_num_threads(threads)
    model = build_model(model_name)
    wall: dict[str, list[float]] = {side: [] for side in SIDES}
    cpu: dict[str, list[float]] = {side: [] for side in SIDES}
    for side in SIDES:
        SIDE_FUNCTIONS[side](model)  # warm-up
    gc.collect()
    for _ in range(repeats):
        for side in SIDES:
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            result = SIDE_FUNCTIONS[side](model)
            wall[side].append(time.perf_counter() - start_wall)
            cpu[side].append(time.process_time() - start_cpu)
            del result
            gc.collect()
    return {"wall": wall, "cpu": cpu}


def run_worker(arguments: list[str], threads: int, environment: dict[str, str] | None = None) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--threads", str(threads), "--worker", *arguments]
    environment = {**os.environ, **(environment or {})}
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=environment)
    if completed.returncode != 0:
        sys.stderr.write(completed.stderr)
        raise SystemExit(f"worker {' '.join(arguments)} failed with exit status {completed.returncode}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


PINNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "65536"}


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per side after the warm-up (median)")
    parser.add_argument("--memory-runs", type=int, default=3, help="fresh processes per side for peak RSS (median)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads, both sides")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        kind, model_name, *rest = args.worker
        if kind == "memory":
            print(json.dumps(memory_worker(model_name, rest[0], args.threads)))
        else:
            print(json.dumps(timing_worker(model_name, int(rest[0]), args.threads)))
        return

    def load() -> str:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())

    models = [name.strip() for name in args.models.split(",") if name.strip()]
    print(f"torch threads: {args.threads} on both sides (os.cpu_count() = {os.cpu_count()}); "
          f"load average at start: {load()}", flush=True)
    rows = {}
    for model_name in models:
        timing = run_worker(["timing", model_name, str(args.repeats)], args.threads)
        for side in SIDES:
            runs = [run_worker(["memory", model_name, side], args.threads) for _ in range(args.memory_runs)]
            live = run_worker(["memory", model_name, side], args.threads, PINNED_MALLOC)
            unit = 4 * runs[0]["params"]
            copies = sorted(run["peak_extra_bytes"] / unit for run in runs)
            row = {
                **runs[0],
                "median_s": statistics.median(timing["wall"][side]),
                "copies": statistics.median(copies),
                "copies_range": (copies[0], copies[-1]),
                "live_copies": live["peak_extra_bytes"] / unit,
            }
            rows[model_name, side] = row
            wall = ", ".join(f"{t:.3f}" for t in timing["wall"][side])
            cpu = ", ".join(f"{t:.3f}" for t in timing["cpu"][side])
            exact = all(run.get("file_bytes_exact", True) for run in runs + [live])
            print(f"  {model_name:14} {side}: wall [{wall}] s, cpu [{cpu}] s; first call in a fresh process "
                  f"{statistics.median(run['cold_s'] for run in runs):.3f} s; peak extra copies "
                  f"{', '.join(f'{c:.2f}' for c in copies)}, live {row['live_copies']:.2f}; "
                  f"sparsity {row['sparsity']:.4f}"
                  + (f"; report.file_bytes == len(packed.to_bytes()): {exact}" if side == "ours" else "")
                  + ("" if row["peak_reset"] else " (VmHWM not resettable: peaks are over the build's)"),
                  flush=True)

    header = (f"{'model':14} {'weights':>11} {'ours s':>7} {'peer s':>7} {'speedup':>8} "
              f"{'ours copies':>18} {'peer copies':>18} {'ours live':>9} {'peer live':>9}")
    print()
    print(header)
    print("-" * len(header))
    speedups, ours_live, peer_live = [], [], []
    for model_name in models:
        ours, peer = rows[model_name, "ours"], rows[model_name, "peer"]
        speedup = peer["median_s"] / ours["median_s"]
        speedups.append(f"{model_name} {speedup:.1f}x")
        ours_live.append(f"{ours['live_copies']:.2f}")
        peer_live.append(f"{peer['live_copies']:.2f}")

        def spread(row: dict) -> str:
            return f"{row['copies']:.2f} [{row['copies_range'][0]:.2f}-{row['copies_range'][1]:.2f}]"

        print(f"{model_name:14} {ours['numel']:>11,} {ours['median_s']:>7.3f} {peer['median_s']:>7.3f} "
              f"{speedup:>7.1f}x {spread(ours):>18} {spread(peer):>18} {ours['live_copies']:>9.2f} "
              f"{peer['live_copies']:>9.2f}")
    print(f"(targets: speedup >= {TARGET_SPEEDUP:g}x, ours <= {TARGET_COPIES:g} extra copies at the live peak. "
          "One copy = 4 bytes x the model's parameters (the returned model is one); copies: peak RSS with "
          "glibc's default malloc, median [range] of fresh processes; live: the same with "
          f"MALLOC_MMAP_THRESHOLD_=65536, what is held at once. Load average at end: {load()})")
    print(f"speedup vs torch prune+fake_quant+histc: {', '.join(speedups)}; "
          f"live peak extra copies of the weights ({'/'.join(models)}): ours {'/'.join(ours_live)}, "
          f"peer {'/'.join(peer_live)}")


if __name__ == "__main__":
    main()
