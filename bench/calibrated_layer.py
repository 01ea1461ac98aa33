"""Seconds per calibrated method on one layer, against round-to-nearest and magnitude pruning.

Run ``python bench/calibrated_layer.py`` from the repository root (about half a minute on 2
cores; ``--out``, ``--in``, ``--tokens``, ``--repeats``). The default layer is SmolLM-135M's
up-projection (1536 × 576) and 128 sequences × 128 tokens of calibration inputs: random,
correlated across channels, with 4 outlier channels 20× louder. Each method's time is the
median of ``--repeats`` calls, each building X^T X from the inputs itself (what a caller with
one layer's inputs pays); the X^T X line alone says how much of that is shared. The error is
‖(W - Ŵ)Xᵀ‖² over that of the floor measured in the same run: magnitude pruning at the same
sparsity for the pruning methods, round-to-nearest on the same grid for the quantizers.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import compression  # noqa: E402
from compression.calibrated.hessian import InputStatistics  # noqa: E402
from compression.quantization import dequantize_tensor, quantize_tensor  # noqa: E402
from compression.recipe import QuantizeSpec  # noqa: E402


def timed(call: Callable[[], object], repeats: int) -> tuple[float, object]:
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=int, default=1536)
    parser.add_argument("--in", dest="columns", type=int, default=576)
    parser.add_argument("--tokens", type=int, default=128 * 128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(args.out, args.columns, generator=generator) / args.columns**0.5
    columns = args.columns
    mixing = torch.eye(columns) + 2.0 * torch.randn(columns, columns, generator=generator) / columns**0.5
    inputs = torch.randn(args.tokens, args.columns, generator=generator) @ mixing
    inputs[:, :4] *= 20.0
    hessian = InputStatistics(args.columns).add(inputs).hessian().float()

    def error(new_weight: torch.Tensor) -> float:
        delta = weight - new_weight
        return float(((delta @ hessian) * delta).sum())

    def round_to_nearest(bits: int, group_size: int | None) -> torch.Tensor:
        grouping = {"granularity": "per_group", "group_size": group_size} if group_size else {}
        spec = QuantizeSpec(scheme="linear", bits=bits, **grouping)
        quantized = quantize_tensor(weight, spec)
        return dequantize_tensor(quantized.codes, quantized.params, spec, weight.shape)

    magnitude = weight * (weight.abs() >= weight.abs().median())
    rows = [
        ("X^T X (InputStatistics)", lambda: InputStatistics(args.columns).add(inputs), None, None),
        ("wanda 50 %", lambda: weight * compression.wanda(weight, inputs, 0.5), magnitude, "magnitude"),
        ("sparsegpt 50 %", lambda: compression.sparsegpt(weight, inputs, 0.5), magnitude, "magnitude"),
        ("sparsegpt 2:4", lambda: compression.sparsegpt(weight, inputs, n=2, m=4), magnitude, "magnitude 50 %"),
        ("gptq 4-bit per channel", lambda: compression.gptq(weight, inputs, 4), round_to_nearest(4, None), "RTN"),
        ("gptq 4-bit g128 act-order", lambda: compression.gptq(weight, inputs, 4, group_size=128, act_order=True),
         round_to_nearest(4, 128), "RTN g128"),
        ("awq 4-bit per channel", lambda: compression.awq(weight, inputs, 4)[1], round_to_nearest(4, None), "RTN"),
        ("awq 4-bit g128", lambda: compression.awq(weight, inputs, 4, group_size=128)[1],
         round_to_nearest(4, 128), "RTN g128"),
    ]
    print(f"layer {args.out}×{args.columns}, {args.tokens} calibration tokens, torch threads {torch.get_num_threads()}")
    for name, call, floor, floor_name in rows:
        seconds, result = timed(call, args.repeats)
        ratio = f"error {error(result) / error(floor):.3f}× {floor_name}" if floor is not None else ""
        print(f"{name:28s} {seconds:7.2f} s   {ratio}")


if __name__ == "__main__":
    main()
