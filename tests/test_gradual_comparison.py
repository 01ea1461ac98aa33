"""Gradual pruning against one-shot pruning, plain and with the same fine-tuning (the fair control)."""
from __future__ import annotations

import pytest
import torch

from compression.compress import compress
from compression.errors import RecipeError
from compression.evaluation import evaluate
from compression.io.loading import load_model
from compression.recipe import Recipe
from compression.workflows.gradual import AgpSchedule, one_shot_prune
from compression.workflows.gradual_comparison import (
    ARMS,
    GRADUAL,
    ONE_SHOT,
    ONE_SHOT_FINE_TUNED,
    compare_gradual,
    pruning_of,
    without_pruning,
)

QUICK = AgpSchedule(initial=0.0, final=0.6, steps=2, epochs_per_step=1)
EPOCHS = QUICK.epochs_per_step * (QUICK.steps + 1)


@pytest.fixture(scope="module")
def mlp():
    return load_model("mlp")


@pytest.fixture(scope="module")
def compared(mlp):
    before = {name: tensor.clone() for name, tensor in mlp.module.state_dict().items()}
    seen = []
    comparison = compare_gradual(mlp, QUICK, progress=lambda done, total, arm, step: seen.append((done, total, arm)))
    return comparison, before, seen


def test_the_three_arms_come_in_order(compared) -> None:
    comparison, _, _ = compared
    assert [arm.name for arm in comparison.arms] == list(ARMS) == [GRADUAL, ONE_SHOT, ONE_SHOT_FINE_TUNED]


def test_every_arm_reaches_the_final_sparsity(compared) -> None:
    comparison, _, _ = compared
    assert [arm.sparsity for arm in comparison.arms] == pytest.approx([QUICK.final] * 3, abs=1e-3)


def test_the_control_fine_tunes_as_many_epochs_as_the_whole_gradual_run(compared, mlp) -> None:
    comparison, _, _ = compared
    assert comparison.arm(GRADUAL).epochs == comparison.arm(ONE_SHOT_FINE_TUNED).epochs == EPOCHS == 3
    assert comparison.arm(ONE_SHOT).epochs == 0
    control = one_shot_prune(mlp, QUICK.final, epochs=EPOCHS)
    assert comparison.arm(ONE_SHOT_FINE_TUNED).value == pytest.approx(control.steps[-1].value)


def test_plain_one_shot_is_the_apis_one_shot_compression(compared, mlp) -> None:
    comparison, _, _ = compared
    one_shot = compress(mlp, {"prune": {"method": "magnitude", "amount": QUICK.final, "scope": "global"}})
    assert comparison.arm(ONE_SHOT).value == pytest.approx(evaluate(mlp, one_shot.module).value)
    # The same values encoded alike; the files differ only by the recipe text they carry.
    assert comparison.arm(ONE_SHOT).encoded_bytes == one_shot.report.encoded_bytes


def test_the_gradual_arm_is_the_gradual_runs_packed_model(compared) -> None:
    comparison, _, _ = compared
    assert comparison.arm(GRADUAL).value == pytest.approx(comparison.gradual.steps[-1].value)
    assert comparison.arm(GRADUAL).file_bytes == comparison.packed.report.file_bytes


def test_the_given_model_is_not_changed(compared, mlp) -> None:
    _, before, _ = compared
    assert all(torch.equal(before[name], tensor) for name, tensor in mlp.module.state_dict().items())


def test_progress_reports_each_gradual_step_then_the_control(compared) -> None:
    _, _, seen = compared
    assert seen == [(1, 4, GRADUAL), (2, 4, GRADUAL), (3, 4, GRADUAL), (4, 4, ONE_SHOT_FINE_TUNED)]


def test_fine_tuning_recovers_what_one_shot_pruning_loses(compared) -> None:
    comparison, _, _ = compared
    assert comparison.arm(ONE_SHOT_FINE_TUNED).value > comparison.arm(ONE_SHOT).value


def test_every_arm_is_packed_with_the_recipes_quantization(mlp) -> None:
    schedule = AgpSchedule(initial=0.0, final=0.5, steps=1, epochs_per_step=0)
    plain = compare_gradual(mlp, schedule)
    quantized = compare_gradual(mlp, schedule, {"prune": {"method": "magnitude", "amount": 0.9},
                                                "quantize": {"scheme": "linear", "bits": 4}})
    assert quantized.packing.to_dict() == {"quantize": {"scheme": "linear", "bits": 4, "granularity": "per_channel",
                                                        "symmetric": True}}
    for name in ARMS:
        assert quantized.arm(name).file_bytes < plain.arm(name).file_bytes
        assert quantized.arm(name).sparsity == pytest.approx(0.5, abs=1e-3)  # the schedule's, not the recipe's 0.9


def test_pruning_follows_the_recipes_method_and_scope_unless_a_scope_is_given() -> None:
    recipe = Recipe.from_dict({"prune": {"method": "structured", "amount": 0.3, "scope": "layer", "norm": "l2"}})
    assert pruning_of(recipe, 0.8).to_dict() == {"method": "structured", "amount": 0.8, "scope": "layer", "norm": "l2"}
    assert pruning_of(recipe, 0.8, "global").scope == "global"
    assert pruning_of(Recipe(), 0.8).to_dict() == {"method": "magnitude", "amount": 0.8, "scope": "global"}
    threshold = Recipe.from_dict({"prune": {"method": "magnitude", "threshold": 0.1}})
    assert pruning_of(threshold, 0.8).amount == 0.8 and pruning_of(threshold, 0.8).threshold is None


def test_the_packing_recipe_keeps_everything_but_pruning() -> None:
    recipe = Recipe.from_dict({
        "prune": {"method": "magnitude", "amount": 0.5},
        "quantize": {"scheme": "linear", "bits": 4},
        "overrides": {"fc1.*": {"prune": None, "quantize": {"bits": 8}}, "fc3.*": {"prune": {"amount": 0.1}}},
        "exclude": ["*.bias"],
    })
    assert without_pruning(recipe).to_dict() == {
        "quantize": {"scheme": "linear", "bits": 4, "granularity": "per_channel", "symmetric": True},
        "overrides": {"fc1.*": {"quantize": {"bits": 8}}},
        "exclude": ["*.bias"],
    }


def test_a_method_without_an_amount_is_refused(mlp) -> None:
    with pytest.raises(RecipeError, match="needs a prune.method that cuts to an amount.*the recipe's is 'n:m'"):
        compare_gradual(mlp, QUICK, {"prune": {"method": "n:m"}})
