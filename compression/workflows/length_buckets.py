"""Evaluation sentences in batches of similar length, each cut to its own longest sentence.

Text evaluation data is padded to the longest sentence of all (MiniLM's 512 sentences: 38
tokens, for a mean of 14), and a transformer's cost grows with the padded length. Padding is
masked, so a sentence's embedding does not depend on how much of it its batch carries: sorted
by length and cut to each batch's longest, the same rows cost 8,512 tokens instead of 19,456.
The scores must not move, so ``bucketed`` is used only where the caller has checked that the
base model's summary is the same both ways (``same_summary``), up to float rounding.

>>> mask = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0]])
>>> data = EvaluationData((mask * 7, mask), None, "cosine_similarity", "three sentences", batch_size=2)
>>> buckets = bucketed(data)
>>> [part.inputs[1].tolist() for part in buckets.parts]
[[[1, 0], [1, 1]], [[1, 1, 1]]]
>>> buckets.rows.tolist()
[1, 2, 0]
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from compression.metrics import Summary
from compression.model import EvaluationData

# Rows per bucket, at most: smaller buckets pad less (MiniLM: 9,984 tokens at 128 rows, 8,512
# at 64, 7,904 at 32) but multiply smaller matrices. One pass over MiniLM's 512 sentences on one
# thread: 7.0 s CPU padded, 3.2 s in buckets of 128, 2.7 s of 64, 2.9 s of 32.
BUCKET_ROWS = 64
# Summaries agree when equal up to this (float32 rounding of a different batch shape; the
# unit-length embeddings of MiniLM differ by at most 3e-7).
SUMMARY_RTOL = 1e-4
SUMMARY_ATOL = 1e-5


@dataclass(frozen=True)
class Buckets:
    """The evaluation data as ``parts`` (one forward call each, rows ``rows[start:stop]`` of the
    original order, in turn) and the way back to the original row order."""

    parts: tuple[EvaluationData, ...]
    rows: torch.Tensor  # the original index of each row, parts concatenated
    by_length: bool  # whether rows were sorted and cut (else: the evaluator's own batches)

    def in_original_order(self, summaries: list[Summary]) -> Summary:
        """The parts' summaries joined, rows put back in the data's own order."""
        inverse = torch.empty_like(self.rows)
        inverse[self.rows] = torch.arange(len(self.rows))
        return {key: torch.cat([summary[key] for summary in summaries])[inverse] for key in summaries[0]}


def padding_mask(data: EvaluationData) -> torch.Tensor | None:
    """The attention mask among ``data.inputs``: a 0/1 integer matrix of rows that each start
    with ones and end with zeros (right padding), shaped as every other input, with some row
    padded. None where there is none, or no padding to remove."""
    shape = data.inputs[0].shape
    if len(data.inputs) < 2 or len(shape) != 2 or any(tensor.shape != shape for tensor in data.inputs):
        return None
    prefix = torch.arange(shape[1])
    masks = [
        tensor for tensor in data.inputs
        if not tensor.is_floating_point() and bool(((tensor == 0) | (tensor == 1)).all())
        and bool((tensor == (prefix < tensor.sum(dim=1, keepdim=True)).to(tensor.dtype)).all())
        and bool((tensor[:, 0] == 1).all())
    ]
    if len(masks) != 1 or bool((masks[0][:, -1] == 1).all()):
        return None
    return masks[0]


def in_batches(data: EvaluationData) -> Buckets:
    """The data in its own order and batches (``batch_size`` rows, the last one padded as the
    evaluator pads it): the parts a model without a padding mask is run on."""
    parts = tuple(
        replace(data, inputs=tuple(tensor[start:start + data.batch_size] for tensor in data.inputs),
                labels=None if data.labels is None else data.labels[start:start + data.batch_size])
        for start in range(0, data.size, data.batch_size)
    )
    return Buckets(parts, torch.arange(data.size), by_length=False)


def bucketed(data: EvaluationData, rows_per_bucket: int = BUCKET_ROWS) -> Buckets:
    """The rows sorted by length (stably), in buckets of at most ``rows_per_bucket`` rows (and
    the data's batch size), each cut to its longest row; ``in_batches`` where no padding mask."""
    mask = padding_mask(data)
    if mask is None:
        return in_batches(data)
    lengths = mask.sum(dim=1)
    order = torch.argsort(lengths, stable=True)
    size = max(1, min(rows_per_bucket, data.batch_size))
    parts = []
    for start in range(0, data.size, size):
        rows = order[start:start + size]
        longest = int(lengths[rows].max())
        parts.append(replace(
            data,
            inputs=tuple(tensor[rows, :longest] for tensor in data.inputs),
            labels=None if data.labels is None else data.labels[rows],
            batch_size=len(rows),  # one call per bucket, nothing repeated to fill a batch
        ))
    return Buckets(tuple(parts), order, by_length=True)


def same_summary(first: Summary, second: Summary) -> bool:
    """Whether two summaries of the same rows agree: the same keys and shapes, integer parts
    equal, float parts equal up to ``SUMMARY_RTOL``/``SUMMARY_ATOL``."""
    if first.keys() != second.keys():
        return False
    for key, tensor in first.items():
        other = second[key]
        if tensor.shape != other.shape or tensor.dtype != other.dtype:
            return False
        close = torch.allclose(tensor, other, rtol=SUMMARY_RTOL, atol=SUMMARY_ATOL) if tensor.is_floating_point() \
            else torch.equal(tensor, other)
        if not close:
            return False
    return True
