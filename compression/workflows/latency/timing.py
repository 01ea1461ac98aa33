"""Timing variants of a model: the median milliseconds per batch, each variant timed in turns."""
from __future__ import annotations

import contextlib
import functools
import math
import statistics
import time
from typing import Callable, Iterator, Mapping

import pandas as pd
import torch
from torch import nn

from compression.display_text import DisplayText
from compression.errors import DataError
from compression.model import LoadedModel

Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what was just timed)


def batch_of(inputs: tuple[torch.Tensor, ...], rows: int) -> tuple[torch.Tensor, ...]:
    """``rows`` rows of each input, repeating the rows given when there are fewer."""
    available = int(inputs[0].shape[0])
    if available == 0:
        raise DataError("no input rows to time a batch with.")
    index = torch.arange(rows) % available
    return tuple(tensor[index] for tensor in inputs)


def median_milliseconds_in_turns(
    calls: list[Callable[[], object]],
    *,
    warmup: int = 3,
    repeats: int = 15,
    sample_ms: float = 2.0,
    after_round: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """The median milliseconds of each call by ``clock`` (seconds; default wall-clock), timed
    in ``repeats`` rounds.

    Each call is first made ``warmup`` times untimed; one sample is then enough back-to-back
    calls to fill about ``sample_ms`` (sized on the last warm-up call), so a call of a few
    microseconds is not timed alone. In each round every call gives one sample, the order
    rotating from round to round, so a burst of load from other processes slows all of them
    alike instead of the one timed then. ``after_round(r)`` is called after round ``r`` (from 1).

    >>> made = []
    >>> medians = median_milliseconds_in_turns([lambda: made.append("a"), lambda: made.append("b")],
    ...                                        warmup=1, repeats=2, sample_ms=0)
    >>> "".join(made), len(medians)
    ('ababba', 2)
    """
    per_sample = []
    for call in calls:
        once_ms = None
        for _ in range(warmup):
            start = clock()
            call()
            once_ms = (clock() - start) * 1000
        per_sample.append(1 if once_ms is None else max(1, math.ceil(sample_ms / max(once_ms, 1e-3))))
    times: list[list[float]] = [[] for _ in calls]
    for round_index in range(repeats):
        shift = round_index % len(calls)
        for index in [*range(shift, len(calls)), *range(shift)]:
            call, count = calls[index], per_sample[index]
            start = clock()
            for _ in range(count):
                call()
            times[index].append((clock() - start) * 1000 / count)
        if after_round is not None:
            after_round(round_index + 1)
    return [statistics.median(samples) for samples in times]


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(count)`` (unchanged where None), then restore.

    One thread is the steady choice on a machine that other processes also use: with more,
    torch waits at every parallel region for a core another process holds (bench/latency.py).
    """
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise DataError(f"threads must be a positive integer or None; got {count!r}.")
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def latency_table(
    model: LoadedModel,
    variants: Mapping[str, nn.Module],
    *,
    batches: tuple[int, ...] = (1, 64),
    repeats: int = 15,
    progress: Progress | None = None,
    cpu_time: bool = False,
) -> pd.DataFrame:
    """One row per (variant, batch): median ms per batch and the speed-up against the first variant.

    The variants of a batch are timed in turns (``median_milliseconds_in_turns``), by the
    wall clock, or with ``cpu_time`` by the calling thread's CPU time: the work alone, whatever
    other programs load the machine with, but only where all of it runs on this thread (torch
    with one thread, onnxruntime with ``intra_op_num_threads=1``). ``progress``,
    where given, is called after each round with the rounds done, the rounds in all and a line
    saying which, so a caller can draw a progress bar.

    >>> import compression
    >>> mlp = compression.load_model("mlp")
    >>> table = latency_table(mlp, {"base": mlp.module}, batches=(1,), repeats=2)
    >>> list(table.columns), float(table["speed_up"].iloc[0])
    (['variant', 'batch', 'ms_per_batch', 'speed_up'], 1.0)
    """
    if not variants:
        raise DataError("give at least one variant to time.")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise DataError(f"repeats must be a positive integer, the timed rounds per batch; got {repeats!r}.")
    inputs = model.evaluation.inputs if model.evaluation is not None else model.example_inputs
    rows = []
    total = len(batches) * repeats
    with torch.inference_mode():
        for batch_index, batch in enumerate(batches):
            rows_of_batch = batch_of(inputs, batch)
            calls = [functools.partial(module, *rows_of_batch) for module in variants.values()]

            def report(done: int, batch_index: int = batch_index, batch: int = batch) -> None:
                if progress is not None:
                    progress(batch_index * repeats + done, total, DisplayText(
                        "timing_round", f"batch {batch}, round {done} of {repeats}", batch=batch, round=done,
                        rounds=repeats))

            medians = median_milliseconds_in_turns(calls, repeats=repeats, after_round=report,
                                                   clock=time.thread_time if cpu_time else time.perf_counter)
            for label, milliseconds in zip(variants, medians):
                rows.append({"variant": label, "batch": batch, "ms_per_batch": milliseconds,
                             "speed_up": medians[0] / milliseconds})
    table = pd.DataFrame(rows)
    # Objects, not pandas' string dtype, which would make a DisplayText label a plain str without its code.
    table["variant"] = pd.Series([row["variant"] for row in rows], dtype=object)
    return table
