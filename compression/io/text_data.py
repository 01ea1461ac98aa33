"""Evaluation text for language models: token windows, their next-token targets, and the
protocol that turns them into a perplexity; the same protocol for the user's documents.

Protocol (causal LM): the text is tokenized as one stream (no special tokens) and cut into
consecutive windows of ``context`` tokens (the model's maximum, at most ``MAX_CONTEXT``),
stride = context, so no token is scored twice; in each window every token after the first is
scored once, from the tokens before it in that window; perplexity is exp of the mean negative
log-likelihood over all scored tokens (``compression.metrics``). At most ``MAX_WINDOWS``
windows are used. Seq2seq models are scored teacher-forced on the same stream: each window's
first half is the source, its second half the target, decoded with the target shifted right.

Several documents (a ``.txt``'s lines, a ``.jsonl``'s texts) are joined into that one stream
with the tokenizer's end-of-text token between them (a newline's tokens where it has none),
as language models see documents in training: short documents (one line each) still fill
windows, and a window may run from the end of one document into the next. The held-out text
is one document, so its stream is its own tokens. Text encoders take each document as one
sentence (at most ``MAX_SENTENCES``) and are scored by cosine fidelity of the embeddings.

>>> ids = torch.arange(10)
>>> windows(ids, context=4).tolist()
[[0, 1, 2, 3], [4, 5, 6, 7]]
>>> next_token_targets(torch.tensor([[5, 6, 7]])).tolist()
[[6, 7, -100]]
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from compression.display_text import DisplayText
from compression.errors import DataError
from compression.metrics import COSINE, IGNORED_TOKEN, PERPLEXITY
from compression.model import EvaluationData

MAX_CONTEXT = 128
MAX_WINDOWS = 256
RANDOM_ROWS = 16
RANDOM_SEED = 0
MAX_SENTENCES = 1024
_LOGIT_BYTES = 1 << 26  # logits of one batch at most (64 MiB): how many windows go together

# A family's protocol, bound to its model's tokenizer: (documents, what they are) → evaluation data.
TextEvaluation = Callable[[Sequence[str], str], EvaluationData]


def windows(ids: torch.Tensor, context: int, limit: int = MAX_WINDOWS, where: str = "the evaluation text") -> torch.Tensor:
    """Consecutive, non-overlapping windows of ``context`` tokens (the tail that fills no
    window is left out), at most ``limit`` of them."""
    count = min(len(ids) // context, limit)
    if count == 0:
        raise DataError(f"{where} has {len(ids)} tokens, fewer than one window of {context}.")
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


def token_stream(tokenizer, documents: Sequence[str], limit: int) -> torch.Tensor:
    """The documents as one stream of token ids, the end-of-text token between them; documents
    are encoded only until the stream holds ``limit`` tokens."""
    eos = getattr(tokenizer, "eos_token_id", None)
    separator = torch.tensor([eos], dtype=torch.int64) if isinstance(eos, int) else encode(tokenizer, "\n")
    pieces: list[torch.Tensor] = []
    length = 0
    for index, document in enumerate(documents):
        piece = encode(tokenizer, document)
        pieces += [separator, piece] if index else [piece]
        length += len(piece) + (len(separator) if index else 0)
        if length >= limit:
            break
    return torch.cat(pieces)


def causal_lm_evaluation(
    documents: Sequence[str], source: str, *, tokenizer, context: int, vocab_size: int
) -> EvaluationData:
    """Perplexity of every next token in windows of ``context`` tokens of the documents' stream."""
    stream = token_stream(tokenizer, documents, MAX_WINDOWS * context)
    input_ids = windows(stream, context, where=source)
    description = DisplayText("token_windows", f"{len(input_ids)} windows of {context} tokens of {source}, every next token scored",
                              count=len(input_ids), context=context, source=source)
    return EvaluationData((input_ids,), next_token_targets(input_ids), PERPLEXITY, description,
                          logit_batch(context, vocab_size))


def seq2seq_evaluation(
    documents: Sequence[str], source: str, *, tokenizer, context: int, vocab_size: int, start_token: int
) -> EvaluationData:
    """Teacher-forced perplexity of each window's second half given its first half."""
    ids = windows(token_stream(tokenizer, documents, MAX_WINDOWS * context), context, where=source)
    source_ids, decoder_inputs, target = teacher_forcing(ids, start_token)
    description = DisplayText("passages", f"{len(ids)} passages of {source}: the second half of each, teacher-forced from its first half",
                              count=len(ids), source=source)
    return EvaluationData((source_ids, torch.ones_like(source_ids), decoder_inputs), target, PERPLEXITY,
                          description, logit_batch(decoder_inputs.shape[1], vocab_size))


def sentence_evaluation(
    documents: Sequence[str], source: str, *,
    tokenize: Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]], batch_size: int,
) -> EvaluationData:
    """Each document one sentence (the first ``MAX_SENTENCES``), scored by embedding fidelity."""
    input_ids, attention_mask = tokenize(list(documents[:MAX_SENTENCES]))
    description = DisplayText("sentences", f"{len(input_ids)} {source} (fidelity to the original embeddings)",
                              count=len(input_ids), source=source)
    return EvaluationData((input_ids, attention_mask), None, COSINE, description, batch_size)


def sentence_inputs(tokenizer, sentences: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` padded to the longest sentence, cut at ``max_length``."""
    if tokenizer.pad_token is None:  # decoder tokenizers (GPT-2) have none
        tokenizer.pad_token = tokenizer.eos_token
    encoded = tokenizer(sentences, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return encoded["input_ids"].to(torch.int64), encoded["attention_mask"].to(torch.int64)


def logit_batch(length: int, vocab_size: int) -> int:
    """How many sequences of ``length`` tokens go in one batch: their logits within 64 MiB."""
    return max(1, min(16, _LOGIT_BYTES // (4 * length * vocab_size)))
