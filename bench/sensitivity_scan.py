"""The sensitivity scan, the fast way against the plain way, on MiniLM (or any model).

The plain way compresses and evaluates the whole model at every point (``sensitivity(...,
fast=False)``); the fast way (``LayerScorer``) compresses the one layer, swaps it into a shared
copy, runs the text in length buckets and only the blocks from the layer's own on. Both run
the default grid (11 amounts, 5 bit widths) on a subset of layers (``--layers``, spread over
the depth: the first layer's block runs every block, the last one's only itself), one after
the other in this process, so background load hits both alike; then the fast way runs the
whole scan once (``--no-full`` skips it). Printed: seconds per point each way on the subset and
their ratio, the largest difference between the two tables (value and drop; every other column
must be equal), the full scan's wall time, and, with ``--plain-csv`` (the CLI's ``sensitivity
--csv`` of the plain way), the largest difference of the full tables.

    python bench/sensitivity_scan.py [--model minilm] [--layers 3] [--plain-csv before.csv]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from compression.io.loading import load_model
from compression.workflows.sensitivity import sensitivity

CLOSE = ["value", "drop"]  # float rounding of other batch shapes; the rest must be equal


def largest_difference(fast: pd.DataFrame, plain: pd.DataFrame) -> float:
    """max |fast − plain| over value and drop; an AssertionError if any other column differs."""
    plain = plain[[column for column in fast.columns if column in plain.columns]]
    shown = fast[plain.columns]
    exact = [column for column in plain.columns if column not in CLOSE]
    pd.testing.assert_frame_equal(shown[exact].reset_index(drop=True), plain[exact].reset_index(drop=True),
                                  check_dtype=False, rtol=1e-12)
    return float(np.abs(shown[CLOSE].to_numpy() - plain[CLOSE].to_numpy()).max())


def timed_scan(model, **arguments) -> tuple[pd.DataFrame, float]:
    start = time.perf_counter()
    frame = sensitivity(model, **arguments)
    return frame, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--layers", type=int, default=3, help="layers of the subset run both ways")
    parser.add_argument("--no-full", action="store_true", help="skip the full fast scan")
    parser.add_argument("--plain-csv", help="the plain way's full table (CLI sensitivity --csv) to compare with")
    args = parser.parse_args()

    model = load_model(args.model)
    names = list(model.compressible)
    picks = np.linspace(0, len(names) - 1, min(args.layers, len(names))).round().astype(int)
    subset = [names[index] for index in dict.fromkeys(picks.tolist())]
    print(f"{args.model}: {len(names)} layers; subset {', '.join(subset)}", flush=True)

    plain, plain_seconds = timed_scan(model, layers=subset, fast=False)
    fast, fast_seconds = timed_scan(model, layers=subset)
    points = len(plain)
    print(f"subset, {points} points: plain {plain_seconds:.1f} s ({plain_seconds / points:.2f} s/point), "
          f"fast {fast_seconds:.1f} s ({fast_seconds / points:.2f} s/point), "
          f"{plain_seconds / fast_seconds:.1f}× faster; largest |difference| {largest_difference(fast, plain):.2e}",
          flush=True)

    summary = f"subset {plain_seconds / fast_seconds:.1f}× faster"
    if not args.no_full:
        full, full_seconds = timed_scan(model)
        print(f"full scan, {len(full)} points, fast: {full_seconds:.1f} s ({full_seconds / 60:.1f} min)", flush=True)
        summary += f"; full scan {full_seconds / 60:.1f} min"
        if args.plain_csv:
            difference = largest_difference(full.drop(columns=["recipe"]), pd.read_csv(args.plain_csv))
            print(f"full table against {args.plain_csv}: largest |difference| {difference:.2e}")
            summary += f", largest |difference| from the plain table {difference:.2e}"
    print(summary)


if __name__ == "__main__":
    main()
