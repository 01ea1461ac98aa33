"""Scale benchmark: the engine on a 135M-parameter Llama (SmolLM-135M's shape), in one run.

Run ``python bench/scale.py`` from the repository root (a few minutes on 2 cores; ``--small``
builds a scaled-down config for a quick check in seconds).

The model is random-init ``LlamaForCausalLM`` from SmolLM-135M's configuration (hidden 576,
30 layers, intermediate 1536, 9 heads, 3 KV heads, vocab 49152, tied embeddings; no
tokenizer), saved as a Hugging Face folder in a temporary directory. Measured in one process:

- load: ``compression.load_model(folder)``;
- info: ``compression.layer_table.layer_table(model)``;
- compress: ``compress(model, RECIPE)`` against the torch reference, alternated ``--repeats``
  times after one warm-up each (medians). The reference, for every layer in the report: a
  clone of its weight in a holder module, ``prune.global_unstructured(L1Unstructured,
  amount=0.5)`` over them, ``prune.remove``, then ``torch.fake_quantize_per_channel_affine``
  on each (per-row scale max|w|/7, zero point 0, range [-7, 7]);
- peak extra memory of the first ``compress`` call (VmHWM reset through
  ``/proc/self/clear_refs`` just before it, as ``bench/engine.py`` does), in copies of the
  weights: bytes / (4 × the model's parameters); the returned result is held until the peak
  is read, so the compressed copy counts;
- exact preview: ``MagnitudeIndex.of(model)`` once (timed on its own), then one
  ``preview`` query per slider position for 10 amounts (median ms).
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="scaled-down config (4 layers, hidden 192, vocab 8192)")
    parser.add_argument("--repeats", type=int, default=3, help="timed compress/reference calls after the warm-up (median)")
    args = parser.parse_args()

    import torch
    from torch import nn

    import compression
    from compression.layer_table import layer_table
    from compression.preview import MagnitudeIndex
    from compression.recipe import PruneSpec

    print(f"torch threads: {torch.get_num_threads()} (os.cpu_count() = {os.cpu_count()}); "
          f"config: {'small' if args.small else 'SmolLM-135M'}", flush=True)
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory) / "llama"
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

        state = model.module.state_dict()
        weights = [state[name] for name in names]
        reference(weights)  # warm-up
        ours, peer = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = compression.compress(model, RECIPE)
            ours.append(time.perf_counter() - start)
            del result
            gc.collect()
            start = time.perf_counter()
            quantized = reference(weights)
            peer.append(time.perf_counter() - start)
            del quantized
            gc.collect()

        start = time.perf_counter()
        index = MagnitudeIndex.of(model)
        index_s = time.perf_counter() - start
        queries = []
        for amount in PREVIEW_AMOUNTS:
            start = time.perf_counter()
            index.preview(PruneSpec(method="magnitude", amount=amount, scope="global"))
            queries.append(time.perf_counter() - start)

    ours_s, peer_s = statistics.median(ours), statistics.median(peer)
    speedup = peer_s / ours_s
    print(f"compress wall [{', '.join(f'{t:.3f}' for t in ours)}] s; reference [{', '.join(f'{t:.3f}' for t in peer)}] s; "
          f"preview queries [{', '.join(f'{t * 1e3:.1f}' for t in queries)}] ms")
    print()
    rows = [
        ("parameters", f"{parameters:,}"),
        ("compressed weights (report layers)", f"{compressed:,} in {len(names)} layers"),
        ("load_model", f"{load_s:.2f} s"),
        ("info (layer_table)", f"{info_s * 1e3:.1f} ms, {len(table.layers)} rows"),
        ("compress, first call", f"{first_s:.2f} s"),
        (f"compress, median of {args.repeats}", f"{ours_s:.2f} s (sparsity {sparsity:.4f})"),
        (f"reference, median of {args.repeats}", f"{peer_s:.2f} s"),
        ("peak extra memory, first compress", f"{peak_copies:.2f} copies of the weights"
         + ("" if reset else " (VmHWM not resettable: over the whole run)")),
        ("preview index build (once per model)", f"{index_s:.2f} s"),
        ("preview per slider position, median", f"{statistics.median(queries) * 1e3:.1f} ms"),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    print()
    print(f"(targets: compress >= {TARGET_SPEEDUP:g}x faster than the reference, peak extra <= {TARGET_COPIES:g} "
          "copies counting the returned module; one copy = 4 bytes x the model's parameters)")
    print(f"speedup vs torch prune+fake_quant: {speedup:.1f}x; peak extra copies: {peak_copies:.2f}; "
          f"preview per slider position: {statistics.median(queries) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
