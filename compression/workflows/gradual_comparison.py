"""Gradual pruning against one-shot pruning, with and without the same fine-tuning.

Gradual pruning trains while it prunes, so beating plain one-shot pruning shows little: any
fine-tuning would recover some accuracy. The fair control prunes once to the same sparsity and
then fine-tunes for as many epochs as the whole gradual run did; the difference to it is what
the schedule itself adds. All three arms prune by the recipe's method and scope and are packed
with the rest of the recipe (its quantization), so their metrics, sparsities and file sizes
compare like for like. The ``agp`` command and the Gradual pruning page both show this.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from compression.compress import CompressionResult, as_recipe, compress
from compression.errors import RecipeError
from compression.evaluation import evaluate
from compression.model import LoadedModel
from compression.recipe import PruneSpec, Recipe
from compression.workflows.gradual import (
    GRADUAL_METHODS,
    AgpSchedule,
    GradualResult,
    GradualStep,
    gradual_prune,
    one_shot_prune,
)

GRADUAL = "gradual"
ONE_SHOT = "one_shot"
ONE_SHOT_FINE_TUNED = "one_shot_fine_tuned"
ARMS = (GRADUAL, ONE_SHOT, ONE_SHOT_FINE_TUNED)

# (done, total, arm, step): each gradual step, then the fine-tuned control once it is trained.
ComparisonProgress = Callable[[int, int, str, GradualStep], None]


@dataclass(frozen=True)
class ArmScore:
    """One arm after packing: its metric, sparsity, fine-tuning epochs and sizes in bytes."""

    name: str
    value: float
    sparsity: float
    epochs: int
    file_bytes: int
    encoded_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``agp --json``."""
        return {"value": self.value, "file_bytes": self.file_bytes, "sparsity": self.sparsity, "epochs": self.epochs}


@dataclass(frozen=True)
class GradualComparison:
    """The gradual run (its steps and its packed model) and the three arms, in ``ARMS`` order."""

    metric: str
    prune: PruneSpec  # how every arm pruned: the recipe's method and scope, at the final sparsity
    packing: Recipe  # the rest of the recipe, which packed every arm
    gradual: GradualResult
    packed: CompressionResult  # the gradual model packed with the recipe's other sections
    arms: tuple[ArmScore, ...]

    def arm(self, name: str) -> ArmScore:
        return next(arm for arm in self.arms if arm.name == name)


def compare_gradual(
    model: LoadedModel,
    schedule: AgpSchedule,
    recipe: Recipe | Mapping[str, Any] | str | None = None,
    *,
    scope: str | None = None,
    seed: int = 0,
    progress: ComparisonProgress | None = None,
) -> GradualComparison:
    """Gradual pruning along ``schedule`` against one-shot pruning to ``schedule.final``, plain
    and followed by the gradual run's total epochs of fine-tuning.

    Pruning follows ``recipe``'s prune section (method, scope, norm; default magnitude,
    global) with the amounts the schedule sets; ``scope``, when given, replaces the recipe's.
    Per-layer prune overrides are not followed: every compressible weight follows the schedule.
    The rest of the recipe (quantization, its overrides, include, exclude) packs every arm.
    ``seed`` seeds the shuffling (and the scores of random pruning). ``model`` is not changed::

        comparison = compare_gradual(model, AgpSchedule(final=0.9, steps=6), {"quantize": {"bits": 8}})
        comparison.arm("one_shot_fine_tuned").value   # one-shot, then 7 epochs of fine-tuning
    """
    recipe = as_recipe(recipe)
    cut = pruning_of(recipe, schedule.final, scope)
    packing = without_pruning(recipe)
    how = {"method": cut.method, "scope": cut.scope, "norm": cut.norm, "seed": seed}
    total = schedule.steps + 2
    report = None if progress is None else (lambda done, _, step: progress(done, total, GRADUAL, step))
    gradual = gradual_prune(model, schedule, progress=report, **how)
    epochs = schedule.epochs_per_step * (schedule.steps + 1)
    one_shot = one_shot_prune(model, schedule.final, **how)
    tuned = one_shot_prune(model, schedule.final, epochs=epochs, **how)
    if progress is not None:
        progress(total, total, ONE_SHOT_FINE_TUNED, tuned.steps[-1])
    packed = compress(gradual.model, packing)
    arms = (
        _score(model, GRADUAL, packed, epochs),
        _score(model, ONE_SHOT, compress(one_shot.model, packing), 0),
        _score(model, ONE_SHOT_FINE_TUNED, compress(tuned.model, packing), epochs),
    )
    return GradualComparison(model.evaluation.metric, cut, packing, gradual, packed, arms)


def pruning_of(recipe: Recipe, amount: float, scope: str | None = None) -> PruneSpec:
    """The recipe-wide prune section at ``amount`` (magnitude, global where there is none),
    its scope replaced by ``scope`` when given."""
    base = recipe.prune or PruneSpec("magnitude", amount, scope="global")
    if base.method not in GRADUAL_METHODS:
        raise RecipeError(f"gradual pruning needs a prune.method that cuts to an amount "
                          f"({', '.join(map(repr, GRADUAL_METHODS))}); the recipe's is {base.method!r}.")
    fields = {**base.to_dict(), "amount": amount, "scope": scope or base.scope}
    fields.pop("threshold", None)
    return PruneSpec(**fields)


def without_pruning(recipe: Recipe) -> Recipe:
    """``recipe`` with its prune section and every override's prune part removed."""
    values = recipe.to_dict()
    values.pop("prune", None)
    overrides = {pattern: {key: section for key, section in override.items() if key != "prune"}
                 for pattern, override in values.pop("overrides", {}).items()}
    if any(overrides.values()):
        values["overrides"] = {pattern: override for pattern, override in overrides.items() if override}
    return Recipe.from_dict(values)


def _score(model: LoadedModel, name: str, packed: CompressionResult, epochs: int) -> ArmScore:
    return ArmScore(name, evaluate(model, packed.module).value, packed.report.sparsity, epochs,
                    packed.report.file_bytes, packed.report.encoded_bytes)
