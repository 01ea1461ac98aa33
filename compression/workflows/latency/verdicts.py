"""What a latency table says: for each technique, whether it made anything faster here, in words."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import pandas as pd

from compression.display_text import DisplayText

NO_SPEEDUP = 1.1  # a speed-up below this, at every batch, is reported as none


@dataclass(frozen=True)
class Technique:
    """What a variant changes from its ``reference`` (a label in the same set), in plain words,
    and why that would not run faster here: shown only where the numbers say it did not."""

    name: str
    reference: str
    why_not_faster: str  # a DisplayText where the engine wrote it, so that a dashboard can translate it


@dataclass(frozen=True)
class Verdict:
    """One technique's measured speed-up at each batch against its reference, and in words."""

    label: str
    technique: Technique
    speed_ups: dict[int, float]  # batch → reference ms / this variant's ms
    faster: bool  # at least NO_SPEEDUP at some batch
    text: str  # a DisplayText: its code tells which of the three conclusions, its values the figures


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
        figures = tuple(DisplayText("speed_up_at_batch", f"{ratio:.2f}x at batch {b}", ratio=ratio, batch=b)
                        for b, ratio in speed_ups.items())
        name, reference, why = technique.name, technique.reference, technique.why_not_faster
        measured = f"{name}: {', '.join(figures)} against {reference}"
        if not fast:
            text = DisplayText("verdict_no_faster", f"{measured} — no faster here: {why}.",
                               technique=name, figures=figures, reference=reference, why=why)
        elif slow:
            text = DisplayText("verdict_faster_at_some_batches",
                               f"{measured} — faster here at batch {_batches(fast)} only; at batch {_batches(slow)} no "
                               f"faster: {why}.", technique=name, figures=figures, reference=reference,
                               fast=tuple(fast), slow=tuple(slow), why=why)
        else:
            text = DisplayText("verdict_faster", f"{measured} — faster here.",
                               technique=name, figures=figures, reference=reference)
        found.append(Verdict(label, technique, speed_ups, bool(fast), text))
    return found


def _batches(batches: list[int]) -> str:
    return " and ".join(map(str, batches))  # as the catalogs' "{fast:and}" says a series (ui/text/engine_text.py)
