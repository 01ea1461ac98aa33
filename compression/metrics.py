"""What a score means: which way is better, and how it is computed batch by batch.

A metric keeps a small *summary* of each batch of outputs (the predicted class, the negative
log-likelihood of each next token, an embedding row) instead of the outputs themselves, so an
LM's logits (batch × tokens × vocabulary) never pile up; the base model's summary is computed
once and kept. ``score`` compares a compressed module's summary with the base model's.

Direction: accuracy, agreements and cosines are better higher; perplexity and relative error
lower. ``drop`` is always worse minus baseline, positive = worse, whatever the direction.

>>> METRICS["perplexity"].drop(baseline=20.0, value=25.0)
5.0
>>> METRICS["accuracy"].drop(baseline=0.98, value=0.95) > 0
True
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from compression.errors import DataError, ModelLoadError

# Metric names; the strings appear in recipes' results, CSV files and --json output.
ACCURACY = "accuracy"
AGREEMENT = "top1_agreement"  # fraction of inputs whose arg-max class is unchanged
COSINE = "cosine_similarity"  # mean cosine similarity of output vectors (embeddings)
PERPLEXITY = "perplexity"  # exp of the mean negative log-likelihood of the next token
NEXT_TOKEN_AGREEMENT = "next_token_agreement"  # fraction of positions whose arg-max token is unchanged
OUTPUT_COSINE = "output_cosine"  # mean cosine of every output, row by row (graphs of any kind)

NN_AGREEMENT = "nn_agreement"
RELATIVE_ERROR = "relative_error"
IGNORED_TOKEN = -100  # a target position that is not scored (padding, a window's first token)
_SIMILARITY_ROWS = 1024  # rows of the N x N similarity matrix held at once

Summary = dict[str, torch.Tensor]  # per-row tensors, concatenated over batches along dim 0


@dataclass(frozen=True)
class Metric:
    """One metric: its direction and the three steps of scoring.

    ``summarize(output, labels)`` keeps what scoring needs from one batch of module output;
    ``baseline(summary, labels)`` gives the base model's value; ``score(summary, base,
    labels)`` gives a compressed module's value and extras against the base summary.
    """

    name: str
    higher_is_better: bool
    needs_labels: bool
    summarize: Callable[[object, torch.Tensor | None], Summary]
    baseline: Callable[[Summary, torch.Tensor | None], float]
    score: Callable[[Summary, Summary, torch.Tensor | None], tuple[float, dict[str, float]]]
    baseline_extras: Mapping[str, float] = field(default_factory=dict)
    relative_tolerance: bool = False  # a search tolerance on it is a fraction of the baseline
    every_output: bool = False  # it reads every output tensor (output_tensors), not only output_tensor's

    def drop(self, baseline: float, value: float) -> float:
        """How much worse ``value`` is than ``baseline``: positive = worse, in the metric's units."""
        return baseline - value if self.higher_is_better else value - baseline

    def allowed_drop(self, baseline: float, tolerance: float) -> float:
        """The largest drop a search tolerance accepts: absolute, or relative to the baseline
        for metrics such as perplexity whose scale depends on the model and the text."""
        return tolerance * abs(baseline) if self.relative_tolerance else tolerance

    def better(self, value: float, other: float) -> bool:
        return value > other if self.higher_is_better else value < other


def metric(name: str) -> Metric:
    """The metric called ``name``, or a DataError listing the known ones."""
    try:
        return METRICS[name]
    except KeyError:
        raise DataError(f"metric must be one of {', '.join(METRICS)}; got {name!r}.") from None


# --- outputs -------------------------------------------------------------------------------


def output_tensor(output: object) -> torch.Tensor:
    """The tensor to score in what a module returned.

    A tensor as is; a Hugging Face output's ``logits``, or its ``last_hidden_state`` averaged
    over tokens; otherwise the first tensor of a tuple, list or mapping.
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        if isinstance(output.get("logits"), torch.Tensor):
            return output["logits"]
        if isinstance(output.get("last_hidden_state"), torch.Tensor):
            return output["last_hidden_state"].mean(dim=1)
    tensors = output_tensors(output)
    if tensors:
        return tensors[0]
    raise ModelLoadError(
        f"the model returned {type(output).__name__}, which holds no tensor to score; it must "
        "return a tensor, a tuple or mapping whose first value is a tensor, or a Hugging Face "
        "output with logits or last_hidden_state."
    )


def output_tensors(output: object) -> tuple[torch.Tensor, ...]:
    """Every tensor a module returned, in order (nested tuples, lists and mappings flattened)."""
    if isinstance(output, torch.Tensor):
        return (output,)
    values = output.values() if isinstance(output, Mapping) else output if isinstance(output, (tuple, list)) else ()
    return tuple(tensor for value in values for tensor in output_tensors(value))


def _rows(outputs: torch.Tensor) -> torch.Tensor:
    return outputs.reshape(outputs.shape[0], -1)


# --- classifiers ---------------------------------------------------------------------------


def _classes(output: object, labels: torch.Tensor | None) -> Summary:
    return {"classes": _rows(output_tensor(output)).argmax(dim=1)}


def _class_accuracy(summary: Summary, labels: torch.Tensor | None) -> float:
    if labels is None:
        raise DataError("metric 'accuracy' needs labels; give a data file with integer labels 'y'.")
    return (summary["classes"] == labels).double().mean().item()


def _accuracy_score(summary: Summary, base: Summary, labels: torch.Tensor | None) -> tuple[float, dict[str, float]]:
    return _class_accuracy(summary, labels), {}


def _agreement_score(summary: Summary, base: Summary, labels: torch.Tensor | None) -> tuple[float, dict[str, float]]:
    return (summary["classes"] == base["classes"]).double().mean().item(), {}


# --- embeddings ----------------------------------------------------------------------------


def _embedding_rows(output: object, labels: torch.Tensor | None) -> Summary:
    return {"rows": _rows(output_tensor(output)).float()}


def _cosine_score(summary: Summary, base: Summary, labels: torch.Tensor | None) -> tuple[float, dict[str, float]]:
    cosine = F.cosine_similarity(summary["rows"].double(), base["rows"].double(), dim=1)
    cosine = cosine.clamp(-1.0, 1.0)  # rounding can give 1 + 4e-16 for identical rows
    same = (nearest_neighbours(summary["rows"]) == nearest_neighbours(base["rows"])).double().mean().item()
    return cosine.mean().item(), {NN_AGREEMENT: same}


def nearest_neighbours(rows: torch.Tensor) -> torch.Tensor:
    """Index of each row's most cosine-similar other row, computed in blocks of rows."""
    unit = F.normalize(_rows(rows).float(), dim=1)
    count = unit.shape[0]
    nearest = torch.empty(count, dtype=torch.long)
    for start in range(0, count, _SIMILARITY_ROWS):
        stop = min(start + _SIMILARITY_ROWS, count)
        similarity = unit[start:stop] @ unit.T
        similarity[torch.arange(stop - start), torch.arange(start, stop)] = -torch.inf
        nearest[start:stop] = similarity.argmax(dim=1)
    return nearest


# --- language models -----------------------------------------------------------------------


def _next_tokens(output: object, labels: torch.Tensor | None) -> Summary:
    """Per position: the arg-max next token and, with targets, the target's negative log-likelihood.

    ``labels`` holds the target token of each position (``IGNORED_TOKEN`` where none counts);
    the logits stay inside this batch.
    """
    logits = output_tensor(output)
    summary = {"argmax": logits.argmax(dim=-1).to(torch.int32)}
    if labels is not None:
        counted = labels != IGNORED_TOKEN
        log_probabilities = torch.log_softmax(logits.float(), dim=-1)
        targets = labels.clamp(min=0).unsqueeze(-1)
        nll = -log_probabilities.gather(-1, targets).squeeze(-1)
        summary["nll"] = torch.where(counted, nll, torch.zeros_like(nll)).double()
        summary["counted"] = counted
    return summary


def _perplexity(summary: Summary, labels: torch.Tensor | None) -> float:
    counted = int(summary["counted"].sum())
    if counted == 0:
        raise DataError("perplexity needs at least one scored token; the evaluation text is too short.")
    return math.exp(float(summary["nll"].sum()) / counted)


def _perplexity_score(summary: Summary, base: Summary, labels: torch.Tensor | None) -> tuple[float, dict[str, float]]:
    counted = summary["counted"]
    same = (summary["argmax"] == base["argmax"])[counted].double().mean().item()
    return _perplexity(summary, labels), {NEXT_TOKEN_AGREEMENT: same}


def _next_token_agreement(summary: Summary, base: Summary, labels: torch.Tensor | None) -> tuple[float, dict[str, float]]:
    return (summary["argmax"] == base["argmax"]).double().mean().item(), {}


# --- any graph -----------------------------------------------------------------------------


def _all_outputs(output: object, labels: torch.Tensor | None) -> Summary:
    return {f"output{index}": _rows(tensor).float() for index, tensor in enumerate(output_tensors(output))}


def _output_fidelity(summary: Summary, base: Summary, labels: torch.Tensor | None) -> tuple[float, dict[str, float]]:
    """Mean row cosine over every output, and the largest relative error ‖y′ − y‖ / ‖y‖ of any."""
    cosines, errors = [], []
    for key, reference in base.items():
        ours = summary[key].double()
        reference = reference.double()
        cosines.append(F.cosine_similarity(ours, reference, dim=1).clamp(-1.0, 1.0).mean().item())
        scale = float(reference.norm())
        errors.append(float((ours - reference).norm()) / scale if scale else float((ours - reference).norm()))
    return sum(cosines) / len(cosines), {RELATIVE_ERROR: max(errors)}


def _one(summary: Summary, labels: torch.Tensor | None) -> float:
    return 1.0


METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric(ACCURACY, True, True, _classes, _class_accuracy, _accuracy_score),
        Metric(AGREEMENT, True, False, _classes, _one, _agreement_score),
        Metric(COSINE, True, False, _embedding_rows, _one, _cosine_score, {NN_AGREEMENT: 1.0}),
        Metric(PERPLEXITY, False, True, _next_tokens, _perplexity, _perplexity_score,
               {NEXT_TOKEN_AGREEMENT: 1.0}, relative_tolerance=True),
        Metric(NEXT_TOKEN_AGREEMENT, True, False, _next_tokens, _one, _next_token_agreement),
        Metric(OUTPUT_COSINE, True, False, _all_outputs, _one, _output_fidelity, {RELATIVE_ERROR: 0.0},
               every_output=True),
    )
}
