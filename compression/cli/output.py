"""How the commands print: JSON for ``--json``, aligned tables, and progress counters.

Everything goes to standard output, which ``--json`` keeps for the JSON alone (no counters);
standard error is for the refusal of bad input only.
"""
from __future__ import annotations

import json
from typing import Any


def print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, sort_keys=False, allow_nan=False))


def print_counter(done: int, total: int, what: str) -> None:
    """``done/total what`` rewritten in place; the last one ends the line."""
    print(f"\r{done}/{total} {what}", end="" if done < total else "\n", flush=True)


def print_evaluations(done: int, total: int, *_: Any) -> None:
    """A progress callback of sensitivity and search: evaluations done."""
    print_counter(done, total, "evaluations")


def print_report(report: dict[str, Any]) -> None:
    """A compression report (``CompressionReport.to_dict`` plus scores): a row per layer, then totals."""
    print(f"{'layer':<48} {'method':<18} {'scheme':<18} {'bits':>4} {'sparsity':>8} {'encoding':<7} {'bytes':>10} "
          f"{'SQNR dB':>8}")
    for layer in report["layers"]:
        sqnr = "inf" if layer["sqnr_db"] is None else f"{layer['sqnr_db']:.1f}"
        print(
            f"{layer['name']:<48} {layer['method']:<18} {layer['scheme']:<18} {layer['bits']:>4} "
            f"{layer['sparsity']:>8.3f} {layer['encoding']:<7} {layer['encoded_bytes']:>10,} {sqnr:>8}"
        )
    print(f"sparsity {report['sparsity']:.3f} of compressible weights")
    print(
        f"dense fp32 {report['dense_fp32_bytes']:,} B  encoded {report['encoded_bytes']:,} B  "
        f"file {report['file_bytes']:,} B  ({report['compression_ratio']:.1f}x smaller)"
    )
    if report.get("calibration"):
        rows = report["calibration"]
        print(f"calibrated on {rows['rows']} rows (seed {rows['seed']}) of {rows['source']}, fingerprint {rows['fingerprint']}")
    if report.get("metric"):
        print(f"{report['metric']}: {report['value']:.4f} (baseline {report['baseline_value']:.4f})")
