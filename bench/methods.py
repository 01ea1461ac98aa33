"""Accuracy of each compression method at a matched size, on one digits sample model.

Run ``python bench/methods.py`` from the repository root (about 1-2 minutes for mlp on 2
cores; ``--model simplenet``, ``--widths 16,64``).

The size budget is the packed file of the distilled student (each width of ``--widths``, float32):
every method is brought to that many bytes or fewer of a real packed file (``save_packed``'s
byte count, which loads back), and scored on the same 450 held-out digits:

- distilled student / student on labels alone: ``compare_distillation`` (fp32, no pruning);
- one-shot magnitude pruning (global), float32 values: the smallest amount that fits;
- one-shot magnitude pruning + 8-bit linear per-channel: the smallest amount that fits;
- gradual (AGP, ``--steps`` steps of one fine-tuning epoch) to that same sparsity, then the
  same 8-bit quantization;
- channels removed (structured L1, per layer, a smaller dense model): the smallest amount
  whose packed file fits, or the most it can remove, marked as over the budget.

"Smallest amount that fits" is found by bisection on the amount (sizes fall as it grows);
the figure printed is the file that was measured, not the budget.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from compression.graph.channels import remove_channels  # noqa: E402
from compression.compress import compress  # noqa: E402
from compression.workflows.distillation import DistillConfig, compare_distillation  # noqa: E402
from compression.evaluation import evaluate  # noqa: E402
from compression.workflows.gradual import AgpSchedule, gradual_prune  # noqa: E402
from compression.io.loading import load_model  # noqa: E402
from compression.model import LoadedModel  # noqa: E402

EIGHT_BITS = {"scheme": "linear", "bits": 8, "granularity": "per_channel", "symmetric": True}
BISECTION_STEPS = 14


@dataclass(frozen=True)
class Row:
    method: str
    setting: str
    file_bytes: int
    accuracy: float


def fitting_amount(file_bytes_at: Callable[[float], int], budget: int, largest: float = 1.0) -> float | None:
    """The smallest amount in [0, largest] (to 1/2^14) whose file fits ``budget``; None if none does."""
    if file_bytes_at(largest) > budget:
        return None
    low, high = 0.0, largest
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        low, high = (low, middle) if file_bytes_at(middle) <= budget else (middle, high)
    return high


def pruned(amount: float, quantize: dict | None = None) -> dict:
    recipe: dict = {"prune": {"method": "magnitude", "amount": amount, "scope": "global"}}
    if quantize is not None:
        recipe["quantize"] = quantize
    return recipe


def one_shot_rows(model: LoadedModel, budget: int) -> tuple[list[Row], float | None]:
    rows, amount_8bit = [], None
    for label, quantize in (("one-shot magnitude, float32", None), ("one-shot magnitude + 8-bit", EIGHT_BITS)):
        amount = fitting_amount(lambda a: compress(model, pruned(a, quantize)).report.file_bytes, budget)
        if amount is None:
            continue
        result = compress(model, pruned(amount, quantize))
        rows.append(Row(label, f"sparsity {result.report.sparsity:.3f}", result.report.file_bytes,
                        evaluate(model, result.module).value))
        if quantize is not None:
            amount_8bit = result.report.sparsity
    return rows, amount_8bit


def gradual_row(model: LoadedModel, sparsity: float, steps: int) -> Row:
    result = gradual_prune(model, AgpSchedule(initial=0.0, final=sparsity, steps=steps, epochs_per_step=1))
    quantized = compress(result.model, {"quantize": EIGHT_BITS})
    return Row("gradual (AGP) + 8-bit", f"sparsity {quantized.report.sparsity:.3f}, {steps} steps",
               quantized.report.file_bytes, evaluate(model, quantized.module).value)


def channels_row(model: LoadedModel, budget: int) -> Row:
    """The smallest amount whose smaller dense model fits, or the largest possible, marked over budget."""
    def file_bytes_at(amount: float) -> int:
        return compress(remove_channels(model, amount).as_loaded(model), {}).report.file_bytes

    # Above this amount the narrowest layer would lose every channel, and remove_channels keeps
    # such a layer whole: sizes stop falling, which bisection needs them to do.
    narrowest = min(model.module.get_parameter(name).shape[0] for name in model.layer_types)
    largest = 1 - 1 / narrowest
    amount = fitting_amount(file_bytes_at, budget, largest=largest)
    result = remove_channels(model, largest if amount is None else amount)
    smaller = result.as_loaded(model)
    over = " (over the budget: the most it can remove)" if amount is None else ""
    return Row("channels removed (smaller dense)",
               f"amount {result.masked_recipe['prune']['amount']:.3f}, {result.parameters_after:,} parameters{over}",
               compress(smaller, {}).report.file_bytes, evaluate(smaller).value)


def matched_rows(model: LoadedModel, width: int, steps: int) -> list[Row]:
    """Every method at the size of the distilled student of ``width``; the student comes first."""
    distilled, plain = compare_distillation(model, DistillConfig(width=width))
    budget = distilled.file_bytes
    rows = [
        Row("distilled student", f"width {width}, {distilled.parameters:,} parameters", distilled.file_bytes, distilled.value),
        Row("student, labels only", f"width {width}, {plain.parameters:,} parameters", plain.file_bytes, plain.value),
    ]
    one_shot, sparsity_8bit = one_shot_rows(model, budget)
    rows += one_shot
    if sparsity_8bit is not None:
        rows.append(gradual_row(model, sparsity_8bit, steps))
    return rows + [channels_row(model, budget)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp", choices=["mlp", "simplenet", "bn_cnn"])
    parser.add_argument("--widths", default="16,64", help="students' widths, one size budget each")
    parser.add_argument("--steps", type=int, default=6, help="AGP steps")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny models: one thread is fastest on a shared 2-core machine
    start = time.perf_counter()
    model = load_model(args.model)
    teacher_bytes = compress(model, {}).report.file_bytes
    print(f"{args.model}: uncompressed packed file {teacher_bytes:,} B, held-out accuracy {evaluate(model).value:.4f}")
    for width in (int(w) for w in args.widths.split(",")):
        rows = matched_rows(model, width, args.steps)
        budget = rows[0].file_bytes
        print(f"\nbudget: the distilled student's (width {width}) packed file, {budget:,} B "
              f"({teacher_bytes / budget:.1f}x smaller than the uncompressed model)\n")
        print("| method | setting | packed file | held-out accuracy |\n|---|---|---|---|")
        for row in sorted(rows, key=lambda r: -r.accuracy):
            print(f"| {row.method} | {row.setting} | {row.file_bytes:,} B | {row.accuracy:.4f} |")
    print(f"\n{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
