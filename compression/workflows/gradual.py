"""Gradual magnitude pruning: prune a little, fine-tune, repeat, on Zhu & Gupta's schedule.

One-shot pruning shows what removing weights does; gradual pruning shows what survives when
the network may adapt. The sparsity follows the AGP (automated gradual pruner) schedule of
Zhu & Gupta, "To prune, or not to prune" (2017): steep at first, while there are redundant
weights to remove, then flat as the network approaches the final sparsity:

    s_k = s_f + (s_i - s_f) (1 - k / n)^3,   k = 0 .. n

After each pruning step the model is fine-tuned on its training split with the pruned
weights held at zero. It is scored on the held-out split twice per step, right after the cut
and after the fine-tuning: the saw-tooth of a drop at each cut and a recovery in training.

>>> schedule = AgpSchedule(initial=0.0, final=0.8, steps=4)
>>> [round(s, 4) for s in schedule.planned()]
[0.0, 0.4625, 0.7, 0.7875, 0.8]
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from compression.errors import DataError, RecipeError
from compression.evaluation import evaluate
from compression.metrics import ACCURACY
from compression.model import LoadedModel, TrainingData
from compression.pruning import compute_masks
from compression.recipe import PruneSpec


@dataclass(frozen=True)
class AgpSchedule:
    """Initial and final sparsity, pruning steps, and fine-tuning epochs after each step."""

    initial: float = 0.0
    final: float = 0.8
    steps: int = 8
    epochs_per_step: int = 1

    def __post_init__(self) -> None:
        for name in ("initial", "final"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise RecipeError(f"schedule.{name} must be a sparsity in [0, 1); got {value!r}.")
        if self.initial > self.final:
            raise RecipeError(f"schedule.initial ({self.initial}) must not exceed schedule.final ({self.final}).")
        for name, low, high in (("steps", 1, 100), ("epochs_per_step", 0, 50)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise RecipeError(f"schedule.{name} must be an integer from {low} to {high}; got {value!r}.")

    def sparsity(self, step: int) -> float:
        """s_k of the AGP schedule; step 0 gives the initial sparsity, step n the final one."""
        if not 0 <= step <= self.steps:
            raise ValueError(f"step must be from 0 to {self.steps}; got {step}.")
        return self.final + (self.initial - self.final) * (1.0 - step / self.steps) ** 3

    def planned(self) -> list[float]:
        """The sparsity after each pruning step: what the schedule will do, before it runs."""
        return [self.sparsity(step) for step in range(self.steps + 1)]


def training_data(model: LoadedModel) -> TrainingData:
    """The labelled rows ``model`` was trained on, where its source brings them (the digits
    sample models do)."""
    if model.training is None:
        raise DataError(
            f"{model.name!r} has no training data here: fine-tuning needs labelled training rows, which "
            "ship for the digits sample models; pass data=TrainingData(...) for others."
        )
    return model.training


@dataclass(frozen=True)
class GradualStep:
    """One pruning step: target and reached sparsity, θ, loss, and the metric after its
    fine-tuning (``value``) and right after the cut, before it (``value_before_fine_tuning``)."""

    step: int
    target: float
    sparsity: float
    threshold: float | None
    train_loss: float | None  # mean loss of the fine-tuning after this step (None: no epochs)
    value: float
    value_before_fine_tuning: float  # equal to ``value`` when the step has no epochs


@dataclass(frozen=True)
class GradualResult:
    """The pruned, fine-tuned model and the record of every step."""

    model: LoadedModel  # the base model's data and layers, its module the fine-tuned one
    schedule: AgpSchedule | None  # None: pruned once (``one_shot_prune``)
    steps: list[GradualStep] = field(default_factory=list)

    @property
    def module(self) -> nn.Module:
        return self.model.module


Progress = Callable[[int, int, GradualStep], None]

# Methods that cut to an amount, so a schedule can raise it step by step (n:m has no amount).
GRADUAL_METHODS = ("magnitude", "random", "structured")


def gradual_prune(
    model: LoadedModel,
    schedule: AgpSchedule,
    *,
    data: TrainingData | None = None,
    method: str = "magnitude",
    scope: str = "global",
    norm: str = "l1",
    learning_rate: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    progress: Progress | None = None,
) -> GradualResult:
    """Prune ``model``'s compressible weights along ``schedule``, fine-tuning after each step.

    Each step prunes by ``method`` to the step's sparsity (``scope`` "global": one θ for all
    layers; "layer": the same fraction of each; ``norm`` scores channels for "structured"),
    then ``schedule.epochs_per_step`` epochs of Adam on ``data`` (default: the model's
    training split) with the pruned weights held at zero. Seeded (shuffling, and the scores of
    "random"): the same arguments give the same weights. ``model`` is not changed.
    """
    plan = [(target, schedule.epochs_per_step) for target in schedule.planned()]
    module, record = _prune_and_fine_tune(model, plan, data, _step_spec(method, scope, norm, seed),
                                          learning_rate, batch_size, seed, progress)
    return GradualResult(replace(model, module=module, cache={}), schedule, record)


def one_shot_prune(
    model: LoadedModel,
    amount: float,
    *,
    epochs: int = 0,
    data: TrainingData | None = None,
    method: str = "magnitude",
    scope: str = "global",
    norm: str = "l1",
    learning_rate: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
) -> GradualResult:
    """Prune once to ``amount``, then fine-tune ``epochs`` epochs with the pruned weights held
    at zero: the control that tells what the schedule adds beyond the training it includes.

    The arguments mean what they mean for ``gradual_prune``; the one step is recorded.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise RecipeError(f"epochs must be an integer >= 0; got {epochs!r}.")
    module, record = _prune_and_fine_tune(model, [(amount, epochs)], data, _step_spec(method, scope, norm, seed),
                                          learning_rate, batch_size, seed, None)
    return GradualResult(replace(model, module=module, cache={}), None, record)


def _step_spec(method: str, scope: str, norm: str, seed: int) -> PruneSpec:
    """How every step cuts; each step replaces the amount with its own sparsity."""
    if method not in GRADUAL_METHODS:
        raise RecipeError(f"method must be one of {', '.join(map(repr, GRADUAL_METHODS))} (a cut to an amount); "
                          f"got {method!r}.")
    if scope not in ("global", "layer"):
        raise RecipeError(f"scope must be 'global' or 'layer'; got {scope!r}.")
    return PruneSpec(method, 0.0, scope=scope, norm=norm, seed=seed)


def _prune_and_fine_tune(
    model: LoadedModel,
    plan: list[tuple[float, int]],
    data: TrainingData | None,
    cut: PruneSpec,
    learning_rate: float,
    batch_size: int,
    seed: int,
    progress: Progress | None,
) -> tuple[nn.Module, list[GradualStep]]:
    """A fine-tuned copy of ``model.module`` pruned as ``cut`` says to each (sparsity, epochs) of
    ``plan`` in turn, and the record of each step."""
    if model.evaluation is None or model.evaluation.metric != ACCURACY:
        raise DataError(f"gradual pruning scores steps by held-out accuracy; {model.name!r} has no labelled evaluation data.")
    data = data if data is not None else training_data(model)
    module = copy.deepcopy(model.module)
    weights = dict(module.named_parameters())
    pruned = {name: weights[name] for name in model.compressible}
    generator = torch.Generator().manual_seed(seed)
    record = []
    for step, (target, epochs) in enumerate(plan):
        spec = replace(cut, amount=target)
        current = {name: w.detach() for name, w in pruned.items()}
        masks = compute_masks(current, dict.fromkeys(pruned, spec), model.output_axes)  # in each weight's layout
        with torch.no_grad():
            for name, weight in pruned.items():
                weight.mul_(masks[name].keep)
        keeps = {name: mask.keep for name, mask in masks.items()}
        cut_value = evaluate(model, module.eval()).value
        loss = _fine_tune(module, pruned, keeps, data, epochs, learning_rate, batch_size, generator)
        zeros = sum(int((w == 0).sum()) for w in pruned.values())
        thresholds = {mask.threshold for mask in masks.values() if mask.threshold is not None and math.isfinite(mask.threshold)}
        entry = GradualStep(
            step=step,
            target=target,
            sparsity=zeros / sum(w.numel() for w in pruned.values()),
            threshold=thresholds.pop() if len(thresholds) == 1 else None,
            train_loss=loss,
            value=evaluate(model, module.eval()).value if epochs else cut_value,
            value_before_fine_tuning=cut_value,
        )
        record.append(entry)
        if progress is not None:
            progress(step + 1, len(plan), entry)
    for weight in module.parameters():
        weight.requires_grad_(False)
    return module.eval(), record


def _fine_tune(
    module: nn.Module,
    pruned: dict[str, nn.Parameter],
    keeps: dict[str, torch.Tensor],
    data: TrainingData,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    generator: torch.Generator,
) -> float | None:
    """Adam on cross-entropy; after every update the pruned weights are zeroed again.

    Returns the mean training loss over the epochs (None when there are none).
    """
    if epochs == 0:
        return None
    optimizer = torch.optim.Adam(module.parameters(), lr=learning_rate)
    module.train()
    total, batches = 0.0, 0
    for _ in range(epochs):
        order = torch.randperm(len(data.labels), generator=generator)
        for batch in order.split(batch_size):
            optimizer.zero_grad()
            loss = F.cross_entropy(module(data.inputs[batch]), data.labels[batch])
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for name, weight in pruned.items():
                    weight.mul_(keeps[name])
            total += loss.item()
            batches += 1
    module.eval()
    return total / batches
