"""Where a model's calibration rows come from: never from the rows it is evaluated on.

- digits models: their training split (``compression.io.zoo``);
- text encoders with a tokenizer: the bundled calibration corpus (``sample_models/
  calibration_corpus.txt``: docstring sentences none of which is among the 512 evaluation
  sentences), tokenized as the evaluation sentences are;
- causal LMs and seq2seq models with a tokenizer: windows of the sample LM's training text
  (the reference topics not held out), of the evaluation's window length;
- a user's ``.npz``: a quarter of its rows, chosen by their content (``split_off_calibration``);
  the rest are evaluated. Text and image files leave the model's own source in place.

Models evaluated on generated inputs (graphs without data, text models without a tokenizer)
have none: calibrating on noise would measure nothing.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch

from compression.display_text import DisplayText
from compression.io import text_data
from compression.model import CalibrationData, EvaluationData
from compression.recipe import MAX_CALIBRATION_SAMPLES

CALIBRATION_SHARE = 4  # one row in four of a user's data calibrates


def sentence_calibration(
    sentences: Sequence[str], tokenize: Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]]
) -> CalibrationData:
    """The calibration corpus as ``(input_ids, attention_mask)``, tokenized by ``tokenize``."""
    return CalibrationData(
        lambda: tokenize(list(sentences)),
        DisplayText("calibration_corpus", f"{len(sentences)} sentences of the bundled calibration corpus", count=len(sentences)),
    )


def causal_lm_calibration(text: str, source: str, *, tokenizer, context: int) -> CalibrationData:
    """Consecutive windows of ``context`` tokens of ``text`` (at most ``MAX_CALIBRATION_SAMPLES``)."""
    def build() -> tuple[torch.Tensor, ...]:
        stream = text_data.token_stream(tokenizer, [text], MAX_CALIBRATION_SAMPLES * context)
        return (text_data.windows(stream, context, MAX_CALIBRATION_SAMPLES, where=source),)

    return CalibrationData(build, DisplayText("calibration_windows", f"windows of {context} tokens of {source}",
                                              context=context, source=source))


def seq2seq_calibration(text: str, source: str, *, tokenizer, context: int, start_token: int) -> CalibrationData:
    """Windows of ``text`` as the evaluation feeds them: first half the source, second half
    the decoder's input shifted right behind ``start_token``."""
    def build() -> tuple[torch.Tensor, ...]:
        stream = text_data.token_stream(tokenizer, [text], MAX_CALIBRATION_SAMPLES * context)
        ids = text_data.windows(stream, context, MAX_CALIBRATION_SAMPLES, where=source)
        source_ids, decoder_inputs, _ = text_data.teacher_forcing(ids, start_token)
        return source_ids, torch.ones_like(source_ids), decoder_inputs

    return CalibrationData(build, DisplayText("calibration_passages", f"passages of {context} tokens of {source}",
                                              context=context, source=source))


def split_off_calibration(evaluation: EvaluationData, where: str) -> tuple[EvaluationData, CalibrationData | None]:
    """The rows of a user's data file ``where`` split by ``calibration_rows``: the evaluation
    keeps the rest, in file order, with their labels; None where no row calibrates (fewer
    than four distinct rows)."""
    calibrating = calibration_rows(evaluation.inputs)
    count = int(calibrating.sum())
    if count == 0:
        return evaluation, None
    kept = ~calibrating
    evaluated = replace(
        evaluation,
        inputs=tuple(tensor[kept] for tensor in evaluation.inputs),
        labels=None if evaluation.labels is None else evaluation.labels[kept],
        description=DisplayText("evaluated_rest", f"{evaluation.description}: {int(kept.sum())} evaluated, {count} set "
                                "aside for calibration", data=evaluation.description, evaluated=int(kept.sum()),
                                calibrating=count),
    )
    rows = tuple(tensor[calibrating] for tensor in evaluation.inputs)
    return evaluated, CalibrationData(lambda: rows, DisplayText(
        "calibration_set_aside", f"{count} rows of {where} set aside for calibration", count=count, file=where))


def calibration_rows(inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Which rows calibrate (True): those whose content digest sorts before the digest at
    position ⌊rows / 4⌋ of all rows' digests, sorted.

    The rule depends on the rows' values alone, not on their order, the file or the recipe.
    Identical rows have one digest, so they always fall on the same side: at most a quarter
    of the rows calibrate (fewer where copies straddle the cut), and at least one is evaluated.

    >>> calibration_rows((torch.arange(8.0).reshape(8, 1),)).sum().item()
    2
    """
    digests = _row_digests(inputs)
    cut = sorted(digests)[len(digests) // CALIBRATION_SHARE]
    return torch.tensor([digest < cut for digest in digests])


def _row_digests(inputs: tuple[torch.Tensor, ...]) -> list[bytes]:
    """The SHA-256 of each row's bytes across every input tensor."""
    count = int(inputs[0].shape[0])
    rows = [tensor.detach().contiguous().reshape(count, -1).view(torch.uint8).numpy() for tensor in inputs]
    digests = []
    for index in range(count):
        digest = hashlib.sha256()
        for tensor_rows in rows:
            digest.update(tensor_rows[index].tobytes())
        digests.append(digest.digest())
    return digests
