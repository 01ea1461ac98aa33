"""Scale benchmark: the engine on a 135M-parameter Llama (SmolLM-135M's shape), in one run.

Run ``python bench/scale.py`` from the repository root (a few minutes on 2 cores; ``--small``
builds a scaled-down config for a quick check in seconds; ``--save DIR`` keeps the model folder
in DIR, e.g. for ``bench/ui_latency.py --model DIR/llama``; ``--threads 1`` pins torch to one
thread, which with the CPU-seconds columns gives a fair reading on a machine shared with other jobs).

The model is random-init ``LlamaForCausalLM`` from SmolLM-135M's configuration (hidden 576,
30 layers, intermediate 1536, 9 heads, 3 KV heads, vocab 49152, tied embeddings; no
tokenizer), saved as a Hugging Face folder in a temporary directory. Measured in one process:

- load: ``compression.load_model(folder)``;
- info: ``compression.layer_table.layer_table(model)``;
- compress: ``compress(model, RECIPE)`` against the torch reference, alternated ``--repeats``
  times after one warm-up each (medians, wall and CPU seconds). The reference, for every layer in the report: a
  clone of its weight in a holder module, ``prune.global_unstructured(L1Unstructured,
  amount=0.5)`` over them, ``prune.remove``, then ``torch.fake_quantize_per_channel_affine``
  on each (per-row scale max|w|/7, zero point 0, range [-7, 7]);
- peak extra memory of the first ``compress`` call (VmHWM reset through
  ``/proc/self/clear_refs`` just before it, as ``bench/engine.py`` does), in copies of the
  weights: bytes / (4 × the model's parameters); the returned result is held until the peak
  is read, so the compressed copy counts;
- exact preview: ``MagnitudeIndex.of(model)`` once (timed on its own), then per slider
  position for 10 amounts (medians): the ``preview`` query (histograms, per-layer zeros: what
  the slider redraws first) and the time until sizes and the sparsity map are shown
  (``sizes`` — the packed file's exact sizes — plus the first layer's pruned weight and its
  sparsity map, as the Pruning page draws them);
- the CLI: ``python -m compression apply <folder> --recipe … --out …`` in a subprocess, wall
  time (interpreter start and load included) and the packed file's size;
- MiniLM: compress against the same torch reference (medians), the issue's other model.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from peak_memory import reset_peak, status_kib  # noqa: E402  (bench/ is this script's folder)

RECIPE = {"prune": {"amount": 0.5, "scope": "global"}, "quantize": {"bits": 4, "granularity": "per_channel"}}
SMOLLM_135M = dict(hidden_size=576, num_hidden_layers=30, intermediate_size=1536, num_attention_heads=9,
                   num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True)
SMALL = dict(SMOLLM_135M, hidden_size=192, num_hidden_layers=4, intermediate_size=512, num_attention_heads=3,
             num_key_value_heads=1, vocab_size=8192)
PREVIEW_AMOUNTS = [round(0.1 * step, 1) for step in range(10)]  # 0.0 … 0.9, ten slider positions
TARGET_SPEEDUP = 5.0
TARGET_COPIES = 2.0


def save_model(folder: Path, small: bool) -> int:
    """Write a random-init Llama as a Hugging Face folder; its parameter count."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**(SMALL if small else SMOLLM_135M))).eval()
    model.save_pretrained(folder)
    parameters = sum(p.numel() for p in model.parameters())
    del model
    gc.collect()
    return parameters


def reference(weights: list) -> list:
    """Stock torch: global L1 pruning over clones in holder modules, then fake quantization per row."""
    import torch
    import torch.nn.utils.prune as prune
    from torch import nn

    holders = []
    for weight in weights:
        holder = nn.Module()
        holder.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        holders.append(holder)
    prune.global_unstructured([(h, "weight") for h in holders], pruning_method=prune.L1Unstructured, amount=0.5)
    quantized = []
    with torch.no_grad():
        for holder in holders:
            prune.remove(holder, "weight")
            rows = holder.weight.reshape(holder.weight.shape[0], -1)
            scale = (rows.abs().amax(dim=1) / 7).clamp_min(torch.finfo(torch.float32).tiny)
            zero_point = torch.zeros(rows.shape[0], dtype=torch.int32)
            quantized.append(torch.fake_quantize_per_channel_affine(rows, scale, zero_point, 0, -7, 7))
    return quantized


def compress_speedup(model, repeats: int) -> tuple[float, float, float, float, list[float], list[float]]:
    """Median seconds of ``compress(model, RECIPE)`` and of the reference on the same weights,
    alternated ``repeats`` times after one warm-up each: (ours, reference) in wall seconds, the
    same in CPU seconds of this process, then every wall time of ours and of the reference. On
    a machine other jobs share, CPU seconds are the fair measure of the work (wall time counts
    the waits for a core)."""
    import compression

    names = [layer.name for layer in compression.compress(model, RECIPE).report.layers]
    state = model.module.state_dict()
    weights = [state[name] for name in names]
    reference(weights)  # warm-up
    ours, peer, ours_cpu, peer_cpu = [], [], [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = compression.compress(model, RECIPE)
        ours.append(time.perf_counter() - start)
        ours_cpu.append(time.process_time() - start_cpu)
        del result
        gc.collect()
        start, start_cpu = time.perf_counter(), time.process_time()
        quantized = reference(weights)
        peer.append(time.perf_counter() - start)
        peer_cpu.append(time.process_time() - start_cpu)
        del quantized
        gc.collect()
    median = statistics.median
    return median(ours), median(peer), median(ours_cpu), median(peer_cpu), ours, peer


def cli_apply(folder: Path, out: Path) -> float:
    """Wall seconds of the CLI compressing the folder into a packed file (interpreter start included)."""
    recipe = out.with_suffix(".json")
    recipe.write_text(json.dumps(RECIPE))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "compression", "apply", str(folder), "--recipe", str(recipe), "--out", str(out)],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="scaled-down config (4 layers, hidden 192, vocab 8192)")
    parser.add_argument("--repeats", type=int, default=3, help="timed compress/reference calls after the warm-up (median)")
    parser.add_argument("--save", type=Path, help="write the model folder under this folder and keep it")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    args = parser.parse_args()

    import torch
    from torch import nn

    import compression
    from compression.layer_table import layer_table
    from compression.preview import MagnitudeIndex
    from compression.recipe import PruneSpec, Recipe
    from compression.stats import sparsity_map

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"load average at start: {os.getloadavg()[0]:.1f}; torch threads: {torch.get_num_threads()} (os.cpu_count() = {os.cpu_count()}); "
          f"config: {'small' if args.small else 'SmolLM-135M'}", flush=True)
    with tempfile.TemporaryDirectory() as directory:
        folder = (args.save or Path(directory)) / "llama"
        folder.mkdir(parents=True, exist_ok=True)
        parameters = save_model(folder, args.small)
        print(f"saved {parameters:,} parameters to a Hugging Face folder "
              f"({sum(f.stat().st_size for f in folder.iterdir()) / 1e6:.0f} MB)", flush=True)

        start = time.perf_counter()
        model = compression.load_model(folder)
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        table = layer_table(model)
        info_s = time.perf_counter() - start

        with torch.no_grad():  # page in weights a loader may leave memory-mapped: they are the model's
            for tensor in model.module.state_dict().values():
                tensor.float().sum()
        compression.compress(nn.Sequential(nn.Linear(8, 8)).eval(), RECIPE)  # lazy imports and initialisation
        gc.collect()

        reset = reset_peak()
        baseline_kib = status_kib("VmRSS") if reset else status_kib("VmHWM")
        start = time.perf_counter()
        result = compression.compress(model, RECIPE)
        first_s = time.perf_counter() - start
        peak_copies = (status_kib("VmHWM") - baseline_kib) * 1024 / (4 * parameters)
        names = [layer.name for layer in result.report.layers]
        compressed = sum(layer.parameters for layer in result.report.layers)
        sparsity = result.report.sparsity
        del result
        gc.collect()

        ours_s, peer_s, ours_cpu_s, peer_cpu_s, ours, peer = compress_speedup(model, args.repeats)

        start = time.perf_counter()
        index = MagnitudeIndex.of(model)
        index_s = time.perf_counter() - start
        queries, shown = [], []
        for amount in PREVIEW_AMOUNTS:
            spec = PruneSpec(method="magnitude", amount=amount, scope="global")
            start = time.perf_counter()
            preview = index.preview(spec)
            queries.append(time.perf_counter() - start)
            start = time.perf_counter()
            index.sizes(Recipe(prune=spec))
            sparsity_map(index.pruned(names[0], preview.layers[names[0]].threshold), max_tiles=96)
            shown.append(time.perf_counter() - start)
        cli_s = cli_apply(folder, Path(directory) / "llama.packed")
        cli_bytes = (Path(directory) / "llama.packed").stat().st_size
        del model, index
        gc.collect()

    minilm_ours, minilm_peer, minilm_ours_cpu, minilm_peer_cpu, _, _ = compress_speedup(
        compression.load_model("minilm"), args.repeats)
    speedup = peer_s / ours_s
    print(f"compress wall [{', '.join(f'{t:.3f}' for t in ours)}] s; reference [{', '.join(f'{t:.3f}' for t in peer)}] s; "
          f"preview queries [{', '.join(f'{t * 1e3:.1f}' for t in queries)}] ms; "
          f"sizes + map [{', '.join(f'{t * 1e3:.0f}' for t in shown)}] ms")
    print()
    rows = [
        ("parameters", f"{parameters:,}"),
        ("compressed weights (report layers)", f"{compressed:,} in {len(names)} layers"),
        ("load_model", f"{load_s:.2f} s"),
        ("info (layer_table)", f"{info_s * 1e3:.1f} ms, {len(table.layers)} rows"),
        ("compress, first call", f"{first_s:.2f} s"),
        (f"compress, median of {args.repeats}", f"{ours_s:.2f} s (sparsity {sparsity:.4f})"),
        (f"reference, median of {args.repeats}", f"{peer_s:.2f} s ({speedup:.1f}x slower)"),
        ("the same in CPU seconds", f"{ours_cpu_s:.2f} s vs {peer_cpu_s:.2f} s ({peer_cpu_s / ours_cpu_s:.1f}x)"),
        ("peak extra memory, first compress", f"{peak_copies:.2f} copies of the weights"
         + ("" if reset else " (VmHWM not resettable: over the whole run)")),
        ("preview index build (once per model)", f"{index_s:.2f} s"),
        ("preview per slider position, median", f"{statistics.median(queries) * 1e3:.1f} ms"),
        ("sizes + sparsity map per position, median", f"{statistics.median(shown) * 1e3:.0f} ms"),
        ("CLI apply (new process, load included)", f"{cli_s:.1f} s, packed file {cli_bytes / 1e6:.1f} MB"),
        (f"MiniLM compress / reference, medians", f"{minilm_ours:.3f} s / {minilm_peer:.3f} s "
                                                   f"({minilm_peer / minilm_ours:.1f}x)"),
        ("MiniLM, the same in CPU seconds", f"{minilm_ours_cpu:.3f} s / {minilm_peer_cpu:.3f} s "
                                            f"({minilm_peer_cpu / minilm_ours_cpu:.1f}x)"),
        ("load average at the end", f"{os.getloadavg()[0]:.1f}"),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    print()
    print(f"(targets: compress >= {TARGET_SPEEDUP:g}x faster than the reference on both models, peak extra <= "
          f"{TARGET_COPIES:g} copies counting the returned module; one copy = 4 bytes x the model's parameters)")
    print(f"speedup vs torch prune+fake_quant: {speedup:.1f}x (MiniLM {minilm_peer / minilm_ours:.1f}x; "
          f"CPU seconds {peer_cpu_s / ours_cpu_s:.1f}x and {minilm_peer_cpu / minilm_ours_cpu:.1f}x); "
          f"peak extra copies: {peak_copies:.2f}; preview per slider position: {statistics.median(queries) * 1e3:.1f} ms; "
          f"sizes and map shown: {statistics.median(shown) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
