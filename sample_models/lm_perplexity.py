"""Held-out perplexity of a causal LM, and the unigram and uniform baselines it must beat.

Protocol: the held-out text is tokenized as one stream (no special tokens added) and cut into
consecutive windows of the model's context length (stride = context length, the last window
may be shorter). In each window every token after the first is predicted from the tokens before
it in that window; each token is scored at most once, and the first token of each window is not
scored (nothing precedes it). Perplexity is exp of the mean negative log-likelihood (natural
log) over the scored tokens. The baselines score exactly the same tokens.

>>> frequencies_from = torch.tensor([0, 0, 1])  # p(0) = 3/5, p(1) = 2/5 after add-one
>>> round(unigram_perplexity(frequencies_from, torch.tensor([1, 0, 0, 1]), 2, context_length=4), 4)
1.9079
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def windows(token_ids: torch.Tensor, context_length: int) -> list[torch.Tensor]:
    """Consecutive windows of ``context_length`` tokens that hold at least one scored token."""
    return [window for window in token_ids.split(context_length) if len(window) > 1]


def scored_tokens(token_ids: torch.Tensor, context_length: int) -> torch.Tensor:
    """The tokens the protocol scores: every window's tokens after its first."""
    return torch.cat([window[1:] for window in windows(token_ids, context_length)])


@torch.no_grad()
def perplexity(
    model: nn.Module, token_ids: torch.Tensor, context_length: int, batch_size: int = 32
) -> float:
    """Perplexity of ``model`` (called as ``model(input_ids).logits``) on ``token_ids`` (1-D).

    Windows are batched by length, so the result does not depend on ``batch_size`` beyond
    floating-point rounding.
    """
    negative_log_likelihood, count = 0.0, 0
    by_length: dict[int, list[torch.Tensor]] = {}
    for window in windows(token_ids, context_length):
        by_length.setdefault(len(window), []).append(window)
    for same_length in by_length.values():
        for batch in torch.stack(same_length).split(batch_size):
            logits = model(batch).logits[:, :-1].float()
            targets = batch[:, 1:]
            negative_log_likelihood += F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"
            ).item()
            count += targets.numel()
    return math.exp(negative_log_likelihood / count)


def unigram_perplexity(
    training_ids: torch.Tensor, token_ids: torch.Tensor, vocab_size: int, context_length: int
) -> float:
    """Perplexity of add-one smoothed token frequencies in ``training_ids`` on the scored tokens."""
    counts = torch.bincount(training_ids, minlength=vocab_size).double() + 1.0
    log_probabilities = (counts / counts.sum()).log()
    scored = scored_tokens(token_ids, context_length)
    return math.exp(-log_probabilities[scored].mean().item())
