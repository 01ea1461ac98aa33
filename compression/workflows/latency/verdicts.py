"""What a latency table says: for each technique, whether it made anything faster here, in words."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import pandas as pd

NO_SPEEDUP = 1.1  # a speed-up below this, at every batch, is reported as none


@dataclass(frozen=True)
class Technique:
    """What a variant changes from its ``reference`` (a label in the same set), in plain words,
    and why that would not run faster here: shown only where the numbers say it did not."""

    name: str
    reference: str
    why_not_faster: str


@dataclass(frozen=True)
class Verdict:
    """One technique's measured speed-up at each batch against its reference, and in words."""

    label: str
    technique: Technique
    speed_ups: dict[int, float]  # batch → reference ms / this variant's ms
    faster: bool  # at least NO_SPEEDUP at some batch
    text: str


def verdicts(
    table: pd.DataFrame, techniques: Mapping[str, Technique], *, threshold: float = NO_SPEEDUP
) -> list[Verdict]:
    """For each technique timed in ``table`` (``latency_table``'s columns), whether it made
    anything faster here: a speed-up of at least ``threshold`` against its reference at some batch.

    >>> table = pd.DataFrame({"variant": ["torch fp32", "sparse"] * 2, "batch": [1, 1, 64, 64],
    ...                       "ms_per_batch": [1.0, 1.02, 10.0, 9.9]})
    >>> print(verdicts(table, {"sparse": Technique("Sparsity", "torch fp32", "same kernels")})[0].text)
    Sparsity: 0.98x at batch 1, 1.01x at batch 64 against torch fp32 — no faster here: same kernels.
    """
    milliseconds = {(row.variant, row.batch): row.ms_per_batch for row in table.itertuples()}
    batches = list(dict.fromkeys(table["batch"]))
    found = []
    for label, technique in techniques.items():
        timed = [b for b in batches if (label, b) in milliseconds and (technique.reference, b) in milliseconds]
        if not timed:
            continue
        speed_ups = {int(b): milliseconds[(technique.reference, b)] / milliseconds[(label, b)] for b in timed}
        fast = [b for b, ratio in speed_ups.items() if ratio >= threshold]
        slow = [b for b, ratio in speed_ups.items() if ratio < threshold]
        figures = ", ".join(f"{ratio:.2f}x at batch {b}" for b, ratio in speed_ups.items())
        text = f"{technique.name}: {figures} against {technique.reference}"
        if not fast:
            text += f" — no faster here: {technique.why_not_faster}."
        elif slow:
            text += (f" — faster here at batch {_batches(fast)} only; at batch {_batches(slow)} no faster: "
                     f"{technique.why_not_faster}.")
        else:
            text += " — faster here."
        found.append(Verdict(label, technique, speed_ups, bool(fast), text))
    return found


def _batches(batches: list[int]) -> str:
    return " and ".join(map(str, batches))
