"""Latency tables: their structure (timings themselves are measured by bench/latency.py, not asserted)."""
from __future__ import annotations

import pytest
import torch

from compression.errors import DataError
from compression.latency import batch_of, latency_table, median_milliseconds
from compression.loading import load_model


def test_a_batch_repeats_the_rows_it_has_when_asked_for_more() -> None:
    rows = (torch.arange(3.0).reshape(3, 1),)
    assert batch_of(rows, 5)[0].flatten().tolist() == [0.0, 1.0, 2.0, 0.0, 1.0]
    assert batch_of(rows, 2)[0].flatten().tolist() == [0.0, 1.0]


def test_the_median_counts_only_timed_calls_after_the_warmup() -> None:
    calls = []
    median_milliseconds(lambda: calls.append(1), warmup=2, repeats=5)
    assert len(calls) == 7


def test_one_row_per_variant_and_batch_with_the_first_variant_as_reference() -> None:
    mlp = load_model("mlp")
    table = latency_table(mlp, {"a": mlp.module, "b": mlp.module}, batches=(1, 8), repeats=2)
    assert list(zip(table["variant"], table["batch"])) == [("a", 1), ("b", 1), ("a", 8), ("b", 8)]
    assert table[table["variant"] == "a"]["speed_up"].tolist() == [1.0, 1.0]
    assert (table["ms_per_batch"] > 0).all()


def test_no_variant_is_refused() -> None:
    with pytest.raises(DataError, match="at least one variant"):
        latency_table(load_model("mlp"), {})
