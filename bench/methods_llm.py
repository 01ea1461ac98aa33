"""Calibrated methods side by side: magnitude, Wanda, SparseGPT; round-to-nearest, GPTQ, AWQ.

Run ``python bench/methods_llm.py`` from the repository root (15-25 minutes on 2 shared cores;
``--models minilm,tinylm,simplenet``, ``--samples 128``, ``--seed 0``, ``--markdown`` for
Markdown tables). One table per model, every row one ``compress`` of the zoo model in this
process:

- pruning alone, at 50 %, 70 % and 2:4: magnitude (each layer by its own amount, the default
  ``layer`` scope; 2:4 is the ``n:m`` method), Wanda (``row`` scope, its default: Sun et al.
  2023) and SparseGPT (Frantar & Alistarh 2023);
- quantization alone, symmetric, at 4 bits per channel, 4 bits in groups of 128 input columns
  and 3 bits per channel: round-to-nearest (``linear``), GPTQ (Frantar et al. 2022) and AWQ
  (Lin et al. 2023).

GPTQ and AWQ leave an LM head in float (as llm-compressor does); the other methods compress it.
Where GPTQ left layers in float (tinylm's head, tied to its input embedding), the like-for-like
peers are added: round-to-nearest with those layers in float, and each pruning method with
them dense (as the Wanda and SparseGPT papers' code prunes only the transformer blocks).

Each row gives the model's metric on its evaluation data (MiniLM: cosine fidelity to the
original embeddings on its 512 sentences; tinylm: perplexity on held-out text; simplenet:
accuracy on 450 held-out digits) with the metric's extra; the packed file's size
(``report.file_bytes``) and how many times smaller it is than the float model's packed file
("file ×"), and the same for the compressed layers alone ("layers ×": their float32 bytes over
their encoded bytes; MiniLM's float word embeddings dominate its file); the wall and
process-CPU seconds of ``compress`` (the calibration pass included; the calibration rows,
``{"samples": 128, "seed": 0}``, are tokenized once per model before the first row, as a
loaded model keeps them). The machine is shared: the load average is printed per model, and
CPU seconds tell a slow row from a busy machine (they include OpenMP's spin-waiting, so they
grow with load too). Last, the issue's targets on MiniLM (Wanda ≤ 10 s, SparseGPT and GPTQ
≤ 60 s per compress), checked on the slowest row of each method, with the data-free method's
time at the same setting beside it.
"""
from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import compression  # noqa: E402
from compression.cli.quiet import library_noise_filtered  # noqa: E402

GROUP_SIZE = 128
PRUNE_SETTINGS = (("50 %", {"amount": 0.5}), ("70 %", {"amount": 0.7}), ("2:4", {"n": 2, "m": 4}))
QUANT_SETTINGS = (
    ("4-bit per-channel", {"bits": 4, "granularity": "per_channel"}),
    (f"4-bit group {GROUP_SIZE}", {"bits": 4, "granularity": "per_group", "group_size": GROUP_SIZE}),
    ("3-bit per-channel", {"bits": 3, "granularity": "per_channel"}),
)
# issue 13, MiniLM on 2 cores: seconds, and the data-free method printed beside it
TARGETS_S = {"wanda": (10.0, "magnitude"), "sparsegpt": (60.0, "magnitude"), "gptq": (60.0, "linear")}


@dataclass(frozen=True)
class Row:
    setting: str
    method: str
    value: float
    extra: str
    file_bytes: int
    layers_ratio: float  # the compressed layers' float32 bytes over their encoded bytes
    wall_s: float
    cpu_s: float


def measured(model: compression.LoadedModel, setting: str, method: str, recipe: dict) -> tuple[Row, list[str]]:
    """One compress, timed, and its score; also the layers it left in float (method 'none')."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    result = compression.compress(model, recipe)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    scored = compression.evaluate(model, result.module)
    extra = ", ".join(f"{name} {value:.3f}" for name, value in scored.extras.items())
    layers = result.report.layers
    ratio = 4 * sum(layer.parameters for layer in layers) / sum(t.encoded_bytes for t in result.packed.encoded.values())
    print(f"  {model.name} {setting} {method}: {scored.value:.4f}, {wall:.1f} s", file=sys.stderr, flush=True)
    row = Row(setting, method, scored.value, extra, result.report.file_bytes, ratio, wall, cpu)
    return row, [layer.name for layer in layers if layer.method == "none"]


def quantization_rows(model: compression.LoadedModel, calibration: dict) -> tuple[list[Row], list[str]]:
    """Round-to-nearest, GPTQ and AWQ per setting, then round-to-nearest with the layers GPTQ
    left in float (the LM head) also in float, where it left any; and those layers."""
    rows: list[Row] = []
    head: list[str] = []
    for setting, fields in QUANT_SETTINGS:
        for scheme in ("linear", "gptq", "awq"):
            row, floats = measured(model, setting, scheme, {"quantize": {"scheme": scheme, **fields},
                                                            "calibration": calibration})
            rows.append(row)
            if scheme == "gptq" and floats:
                head = floats
                peer = {"quantize": {"scheme": "linear", **fields},
                        "overrides": {name: {"quantize": None} for name in head}}
                rows.append(measured(model, setting, "linear, LM head float", peer)[0])
    return rows, head


def pruning_rows(model: compression.LoadedModel, calibration: dict, head: list[str]) -> list[Row]:
    """Magnitude, Wanda and SparseGPT per setting; where the model has an LM head, the three
    again with it left dense, as the papers' code leaves it."""
    rows: list[Row] = []
    for setting, fields in PRUNE_SETTINGS:
        sections = {method: {"method": "n:m" if method == "magnitude" and "n" in fields else method, **fields}
                    for method in ("magnitude", "wanda", "sparsegpt")}
        for method, section in sections.items():
            rows.append(measured(model, setting, method, {"prune": section, "calibration": calibration})[0])
        for method, section in sections.items() if head else ():
            recipe = {"prune": section, "calibration": calibration,
                      "overrides": {name: {"prune": None} for name in head}}
            rows.append(measured(model, setting, f"{method}, LM head dense", recipe)[0])
    return rows


def grouping_note(model: compression.LoadedModel) -> str:
    """What groups of GROUP_SIZE input columns mean on this model's compressible weights."""
    state = model.module.state_dict()
    widths = sorted({math.prod(state[name].shape[1:]) for name in model.compressible})
    groups = ", ".join(f"{width} → {math.ceil(width / GROUP_SIZE)}" for width in widths)
    note = f"group {GROUP_SIZE}: input columns per row → groups per row: {groups}"
    if any(width <= GROUP_SIZE for width in widths):
        note += f" (rows of ≤ {GROUP_SIZE} columns: one group, the same grid as per-channel)"
    return note


def table(model_name: str, args: argparse.Namespace) -> tuple[list[Row], str, str, int]:
    """Every row of one model; its header (metric, baseline, float file, loads); its metric;
    the float model's packed file size."""
    model = compression.load_model(model_name)
    baseline = compression.evaluate(model)  # cached: rows score against it
    float_bytes = compression.compress(model, {}).report.file_bytes
    calibration = {"samples": args.samples, "seed": args.seed}
    model.calibration.inputs  # tokenized once, as the first calibrated compress would
    load_before = os.getloadavg()[0]
    quantized, head = quantization_rows(model, calibration)  # first: GPTQ tells which layer is the LM head
    rows = pruning_rows(model, calibration, head) + quantized
    header = (f"{model_name} ({model.family}): {baseline.metric} on {model.evaluation.description}; "
              f"float model {baseline.value:.4f}, packed file {float_bytes:,} bytes; "
              f"calibration {args.samples} samples, seed {args.seed}; "
              f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after\n{grouping_note(model)}")
    if head:
        header += (f"\nLM head: {', '.join(head)}. GPTQ and AWQ leave it in float, and so do the 'LM head float' "
                   "rows; magnitude, Wanda and SparseGPT prune it, except in the 'LM head dense' rows")
    return rows, header, baseline.metric, float_bytes


def printed(rows: list[Row], float_bytes: int, metric: str, markdown: bool) -> str:
    head = ["setting", "method", metric, "extra", "file bytes", "file ×", "layers ×", "wall s", "CPU s"]
    lines = [[row.setting, row.method, f"{row.value:.4f}", row.extra, f"{row.file_bytes:,}",
              f"{float_bytes / row.file_bytes:.2f}", f"{row.layers_ratio:.2f}", f"{row.wall_s:.2f}",
              f"{row.cpu_s:.2f}"] for row in rows]
    if markdown:
        return "\n".join("| " + " | ".join(line) + " |" for line in [head, ["---"] * len(head), *lines])
    widths = [max(len(line[i]) for line in [head, *lines]) for i in range(len(head))]
    return "\n".join(" | ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in [head, ["-" * width for width in widths], *lines])


def targets(rows: list[Row]) -> list[str]:
    """The issue's time targets on MiniLM, each on the method's slowest row, beside the
    data-free method's time at the same setting (what compress costs without calibration)."""
    seconds = {(row.setting, row.method): row.wall_s for row in rows}
    lines = []
    for method, (limit, floor) in TARGETS_S.items():
        slowest = max((row for row in rows if row.method == method), key=lambda row: row.wall_s)
        verdict = "met" if slowest.wall_s <= limit else "MISSED"
        lines.append(f"target {method} ≤ {limit:.0f} s on MiniLM: slowest {slowest.setting} "
                     f"{slowest.wall_s:.1f} s wall "
                     f"({slowest.cpu_s:.1f} s CPU; {floor} {seconds[slowest.setting, floor]:.1f} s wall): {verdict}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="minilm,tinylm,simplenet")
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args()

    started = time.perf_counter()
    print(f"torch threads: {torch.get_num_threads()} (os.cpu_count() = {os.cpu_count()}); "
          f"torch {torch.__version__}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    summary: list[str] = []
    with library_noise_filtered(verbose=False, notes=False):
        for name in args.models.split(","):
            rows, header, metric, float_bytes = table(name, args)
            print(f"\n{header}\n" + printed(rows, float_bytes, metric, args.markdown), flush=True)
            if name == "minilm":
                summary = targets(rows)
    print("", *summary, f"({time.perf_counter() - started:.0f} s)", sep="\n")


if __name__ == "__main__":
    main()
