"""The sensitivity scan, the fast way against the plain way, on MiniLM (or any model).

The plain way compresses and evaluates the whole model at every point (``sensitivity(...,
fast=False)``); the fast way (``LayerScorer``) compresses the one layer, swaps it into a shared
copy, runs the text in length buckets and only the blocks from the layer's own on. Both run
the default grid (11 amounts, 5 bit widths) on a subset of layers (``--layers``, spread over
the depth: the first layer's block runs every block, the last one's only itself), one after
the other in this process, so background load hits both alike; then the fast way runs the
whole scan once (``--no-full`` skips it). Printed: wall and CPU seconds per point each way on
the subset and their ratios, the largest difference between the two tables (value and drop;
every other column must be equal), the full scan's wall and CPU time, and, with ``--plain-csv``
(the CLI's ``sensitivity --csv`` of the plain way), the largest difference of the full tables.

On a shared machine the wall clock measures the neighbours as much as the scan: ``--threads 1``
makes CPU seconds the measure of the work (one thread spins on no barrier), and the ratio of CPU
seconds carries over to an idle machine.

    python bench/sensitivity_scan.py [--model minilm] [--layers 3] [--threads 1] [--plain-csv before.csv]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compression.io.loading import load_model  # noqa: E402
from compression.workflows.sensitivity import sensitivity  # noqa: E402

CLOSE = ["value", "drop"]  # float rounding of other batch shapes; the rest must be equal


def largest_difference(fast: pd.DataFrame, plain: pd.DataFrame) -> float:
    """max |fast − plain| over value and drop; an AssertionError if any other column differs."""
    plain = plain[[column for column in fast.columns if column in plain.columns]]
    shown = fast[plain.columns]
    exact = [column for column in plain.columns if column not in CLOSE]
    pd.testing.assert_frame_equal(shown[exact].reset_index(drop=True), plain[exact].reset_index(drop=True),
                                  check_dtype=False, rtol=1e-12)
    return float(np.abs(shown[CLOSE].to_numpy() - plain[CLOSE].to_numpy()).max())


def timed_scan(model, **arguments) -> tuple[pd.DataFrame, float, float]:
    """The table, wall seconds and CPU seconds (every thread of this process)."""
    start, cpu = time.perf_counter(), time.process_time()
    frame = sensitivity(model, **arguments)
    return frame, time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--layers", type=int, default=3, help="layers of the subset run both ways")
    parser.add_argument("--no-full", action="store_true", help="skip the full fast scan")
    parser.add_argument("--plain-csv", help="the plain way's full table (CLI sensitivity --csv) to compare with")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = load_model(args.model)
    names = list(model.compressible)
    picks = np.linspace(0, len(names) - 1, min(args.layers, len(names))).round().astype(int)
    subset = [names[index] for index in dict.fromkeys(picks.tolist())]
    print(f"{args.model}: {len(names)} layers, {torch.get_num_threads()} threads; subset {', '.join(subset)}",
          flush=True)
    plain, plain_wall, plain_cpu = timed_scan(model, layers=subset, fast=False)
    fast, fast_wall, fast_cpu = timed_scan(model, layers=subset)
    points = len(plain)
    for way, wall, cpu in (("plain", plain_wall, plain_cpu), ("fast", fast_wall, fast_cpu)):
        print(f"subset, {points} points, {way}: {wall:.1f} s wall ({wall / points:.2f} s/point), "
              f"{cpu:.1f} s CPU ({cpu / points:.2f} s/point)", flush=True)
    difference = largest_difference(fast, plain)
    print(f"fast/plain: {plain_wall / fast_wall:.1f}× less wall, {plain_cpu / fast_cpu:.1f}× less CPU; "
          f"largest |difference| {difference:.2e}", flush=True)

    summary = f"subset: {plain_cpu / fast_cpu:.1f}× less CPU, largest |difference| {difference:.2e}"
    if not args.no_full:
        full, full_wall, full_cpu = timed_scan(model)
        print(f"full scan, {len(full)} points, fast: {full_wall:.1f} s wall ({full_wall / 60:.1f} min), "
              f"{full_cpu:.1f} s CPU", flush=True)
        summary += f"; full scan {full_wall / 60:.1f} min wall, {full_cpu / 60:.1f} min CPU"
        if args.plain_csv:
            difference = largest_difference(full.drop(columns=["recipe"]), pd.read_csv(args.plain_csv))
            print(f"full table against {args.plain_csv}: largest |difference| {difference:.2e}")
            summary += f", largest |difference| from the plain table {difference:.2e}"
    print(summary)


if __name__ == "__main__":
    main()
