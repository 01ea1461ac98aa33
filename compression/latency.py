"""Latency measured on this machine: the median wall-clock time of one batch through a module.

Sizes and metrics say what a compression keeps; only a timing says whether it runs faster,
and that depends on the kernels and the CPU: unstructured zeros go through the same dense
kernels, int8 pays off only where the CPU and the layer sizes let it. So the numbers are
measured, per batch size, against the first variant timed in the same call.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Mapping

import pandas as pd
import torch
from torch import nn

from compression.errors import DataError
from compression.model import LoadedModel


def batch_of(inputs: tuple[torch.Tensor, ...], rows: int) -> tuple[torch.Tensor, ...]:
    """``rows`` rows of each input, repeating the rows given when there are fewer."""
    available = int(inputs[0].shape[0])
    if available == 0:
        raise DataError("no input rows to time a batch with.")
    index = torch.arange(rows) % available
    return tuple(tensor[index] for tensor in inputs)


def median_milliseconds(call: Callable[[], object], *, warmup: int = 3, repeats: int = 15) -> float:
    """Median wall-clock milliseconds of ``call()`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def latency_table(
    model: LoadedModel,
    variants: Mapping[str, nn.Module],
    *,
    batches: tuple[int, ...] = (1, 64),
    repeats: int = 15,
) -> pd.DataFrame:
    """One row per (variant, batch): median ms per batch and the speed-up against the first variant.

    >>> import compression
    >>> mlp = compression.load_model("mlp")
    >>> table = latency_table(mlp, {"base": mlp.module}, batches=(1,), repeats=2)
    >>> list(table.columns), float(table["speed_up"].iloc[0])
    (['variant', 'batch', 'ms_per_batch', 'speed_up'], 1.0)
    """
    if not variants:
        raise DataError("give at least one variant to time.")
    inputs = model.evaluation.inputs if model.evaluation is not None else model.example_inputs
    rows = []
    with torch.inference_mode():
        for batch in batches:
            rows_of_batch = batch_of(inputs, batch)
            reference = None
            for label, module in variants.items():
                milliseconds = median_milliseconds(lambda: module(*rows_of_batch), repeats=repeats)
                reference = reference if reference is not None else milliseconds
                rows.append({"variant": label, "batch": batch, "ms_per_batch": milliseconds,
                             "speed_up": reference / milliseconds})
    return pd.DataFrame(rows)
