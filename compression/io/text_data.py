"""Evaluation text for language models: token windows, their next-token targets, and the
protocol that turns them into a perplexity.

Protocol (causal LM): the text is tokenized as one stream (no special tokens) and cut into
consecutive windows of ``context`` tokens (the model's maximum, at most ``MAX_CONTEXT``),
stride = context, so no token is scored twice; in each window every token after the first is
scored once, from the tokens before it in that window; perplexity is exp of the mean negative
log-likelihood over all scored tokens (``compression.metrics``). At most ``MAX_WINDOWS``
windows are used. Seq2seq models are scored teacher-forced on the same stream: each window's
first half is the source, its second half the target, decoded with the target shifted right.

>>> ids = torch.arange(10)
>>> windows(ids, context=4).tolist()
[[0, 1, 2, 3], [4, 5, 6, 7]]
>>> next_token_targets(torch.tensor([[5, 6, 7]])).tolist()
[[6, 7, -100]]
"""
from __future__ import annotations

import torch

from compression.errors import DataError
from compression.metrics import IGNORED_TOKEN

MAX_CONTEXT = 128
MAX_WINDOWS = 256
RANDOM_ROWS = 16
RANDOM_SEED = 0


def windows(ids: torch.Tensor, context: int, limit: int = MAX_WINDOWS) -> torch.Tensor:
    """Consecutive, non-overlapping windows of ``context`` tokens (the tail that fills no
    window is left out), at most ``limit`` of them."""
    count = min(len(ids) // context, limit)
    if count == 0:
        raise DataError(f"the evaluation text has {len(ids)} tokens, fewer than one window of {context}.")
    return ids[: count * context].reshape(count, context).to(torch.int64)


def next_token_targets(input_ids: torch.Tensor) -> torch.Tensor:
    """Each position's target is the next token of its window; the last position has none."""
    targets = torch.full_like(input_ids, IGNORED_TOKEN)
    targets[:, :-1] = input_ids[:, 1:]
    return targets


def teacher_forcing(input_ids: torch.Tensor, start_token: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(source, decoder inputs, targets)``: each window's first half as the source, its second
    half as the target, fed to the decoder shifted right behind ``start_token``."""
    half = input_ids.shape[1] // 2
    source, target = input_ids[:, :half], input_ids[:, half : 2 * half]
    decoder_inputs = torch.cat([torch.full_like(target[:, :1], start_token), target[:, :-1]], dim=1)
    return source, decoder_inputs, target


def random_token_ids(vocab_size: int, length: int, rows: int = RANDOM_ROWS) -> torch.Tensor:
    """Seeded random token ids: what a model without a tokenizer is scored on."""
    generator = torch.Generator().manual_seed(RANDOM_SEED)
    return torch.randint(0, vocab_size, (rows, length), generator=generator)


def encode(tokenizer, text: str) -> torch.Tensor:
    """``text`` as one stream of token ids, without special tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # a fast tokenizer: no "longer than the model's maximum" warning
        return torch.tensor(backend.encode(text, add_special_tokens=False).ids, dtype=torch.int64)
    return torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.int64)
