"""Gradual magnitude pruning: the AGP schedule, and pruning interleaved with fine-tuning."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from compression.compress import compress
from compression.errors import DataError, RecipeError
from compression.evaluation import evaluate
from compression.workflows.gradual import AgpSchedule, gradual_prune, one_shot_prune, training_data
from compression.io.loading import load_model

QUICK = AgpSchedule(initial=0.0, final=0.6, steps=2, epochs_per_step=1)


@pytest.fixture(scope="module")
def mlp():
    return load_model("mlp")


# --- the schedule ------------------------------------------------------------------------------


def test_the_schedule_starts_at_the_initial_and_ends_at_the_final_sparsity() -> None:
    schedule = AgpSchedule(initial=0.1, final=0.9, steps=5)
    assert schedule.sparsity(0) == pytest.approx(0.1)
    assert schedule.sparsity(5) == pytest.approx(0.9)


def test_the_schedule_is_zhu_and_gupta_cubic() -> None:
    schedule = AgpSchedule(initial=0.2, final=0.8, steps=10)
    for step in range(11):
        assert schedule.sparsity(step) == pytest.approx(0.8 + (0.2 - 0.8) * (1 - step / 10) ** 3)


def test_the_schedule_rises_fast_then_flattens() -> None:
    planned = AgpSchedule(initial=0.0, final=0.9, steps=6).planned()
    increments = [b - a for a, b in zip(planned, planned[1:])]
    assert all(i > 0 for i in increments)
    assert increments == sorted(increments, reverse=True)


@pytest.mark.parametrize(
    "fields",
    [{"final": 1.0}, {"initial": -0.1}, {"initial": 0.5, "final": 0.4}, {"steps": 0}, {"epochs_per_step": -1},
     {"steps": 2.5}, {"final": True}],
)
def test_a_bad_schedule_is_refused_naming_the_field(fields: dict) -> None:
    with pytest.raises(RecipeError, match="schedule."):
        AgpSchedule(**{**dataclasses.asdict(AgpSchedule()), **fields})


# --- gradual pruning ---------------------------------------------------------------------------


def test_every_step_reaches_the_planned_sparsity(mlp) -> None:
    result = gradual_prune(mlp, QUICK)
    assert [step.target for step in result.steps] == pytest.approx(QUICK.planned())
    assert [step.sparsity for step in result.steps] == pytest.approx(QUICK.planned(), abs=1e-3)


def test_pruned_weights_stay_zero_through_fine_tuning(mlp) -> None:
    result = gradual_prune(mlp, QUICK)
    state = result.module.state_dict()
    zeros = sum(int((state[name] == 0).sum()) for name in mlp.compressible)
    total = sum(state[name].numel() for name in mlp.compressible)
    assert zeros / total == pytest.approx(QUICK.final, abs=1e-3)


def test_the_given_model_is_not_changed(mlp) -> None:
    before = {name: tensor.clone() for name, tensor in mlp.module.state_dict().items()}
    gradual_prune(mlp, QUICK)
    after = mlp.module.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_the_same_seed_gives_the_same_weights(mlp) -> None:
    first, second = gradual_prune(mlp, QUICK, seed=3), gradual_prune(mlp, QUICK, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first.module.state_dict().values(), second.module.state_dict().values()))


def test_progress_is_reported_after_every_step(mlp) -> None:
    seen = []
    gradual_prune(mlp, QUICK, progress=lambda done, total, step: seen.append((done, total, step.step)))
    assert seen == [(1, 3, 0), (2, 3, 1), (3, 3, 2)]


def test_each_step_is_scored_on_the_held_out_split(mlp) -> None:
    result = gradual_prune(mlp, QUICK)
    assert result.steps[-1].value == pytest.approx(evaluate(mlp, result.module).value)


# --- the saw-tooth: each step scored right after its cut and after its fine-tuning ---------------

SAW = AgpSchedule(initial=0.3, final=0.8, steps=1, epochs_per_step=1)


@pytest.fixture(scope="module")
def saw_tooth(mlp):
    return gradual_prune(mlp, SAW)


def test_the_first_step_is_scored_right_after_its_cut_before_any_training(mlp, saw_tooth) -> None:
    cut = compress(mlp, {"prune": {"method": "magnitude", "amount": 0.3, "scope": "global"}})
    assert saw_tooth.steps[0].value_before_fine_tuning == evaluate(mlp, cut.module).value


def test_a_later_step_is_scored_on_the_fine_tuned_model_cut_again(mlp, saw_tooth) -> None:
    tuned = one_shot_prune(mlp, 0.3, epochs=1)  # the gradual run's step 0, trained alike
    cut = compress(tuned.model, {"prune": {"method": "magnitude", "amount": 0.8, "scope": "global"}})
    assert saw_tooth.steps[1].value_before_fine_tuning == evaluate(mlp, cut.module).value


def test_fine_tuning_moves_the_metric_away_from_the_score_right_after_the_cut(saw_tooth) -> None:
    assert all(step.value != step.value_before_fine_tuning for step in saw_tooth.steps)
    assert saw_tooth.steps[-1].value > saw_tooth.steps[-1].value_before_fine_tuning  # 80 %: training recovers


def test_without_fine_tuning_both_scores_of_a_step_are_one(mlp) -> None:
    result = gradual_prune(mlp, dataclasses.replace(SAW, epochs_per_step=0))
    assert all(step.value == step.value_before_fine_tuning for step in result.steps)


def test_the_chart_draws_the_saw_tooth_cut_then_fine_tuned_at_each_step(saw_tooth) -> None:
    from ui import charts

    figure = charts.gradual_chart(SAW.planned(), saw_tooth.steps, "accuracy")
    line = figure.data[-1]
    first, last = saw_tooth.steps
    assert list(line.x) == [0, 0.5, 1, 1.5]
    assert list(line.y) == [first.value_before_fine_tuning, first.value, last.value_before_fine_tuning, last.value]
    assert list(line.marker.symbol) == ["triangle-down", "circle"] * 2
    assert list(figure.data[0].y) == pytest.approx(SAW.planned())


def test_gradual_pruning_keeps_far_more_accuracy_than_one_shot_at_90_percent() -> None:
    simplenet = load_model("simplenet")
    result = gradual_prune(simplenet, AgpSchedule(initial=0.0, final=0.9, steps=6, epochs_per_step=1))
    one_shot = compress(simplenet, {"prune": {"method": "magnitude", "amount": 0.9, "scope": "global"}})
    assert result.steps[-1].value > evaluate(simplenet, one_shot.module).value + 0.2


def test_the_result_compresses_like_any_model(mlp) -> None:
    result = gradual_prune(mlp, QUICK)
    report = compress(result.model, {"quantize": {"scheme": "linear", "bits": 4}}).report
    assert report.sparsity >= QUICK.final - 1e-3


def test_each_step_prunes_by_the_given_method_and_scope(mlp) -> None:
    result = gradual_prune(mlp, QUICK, method="structured", scope="layer")
    state = result.module.state_dict()
    for name in mlp.compressible:
        rows = state[name].reshape(state[name].shape[0], -1)
        zero_rows = int((rows == 0).all(dim=1).sum())
        assert zero_rows == pytest.approx(QUICK.final * rows.shape[0], abs=1)  # whole channels, per layer


def test_a_method_without_an_amount_is_refused_naming_the_ones_allowed(mlp) -> None:
    with pytest.raises(RecipeError, match="'magnitude', 'random', 'structured'.*got 'n:m'"):
        gradual_prune(mlp, QUICK, method="n:m")


# --- one-shot pruning with fine-tuning (the control) ---------------------------------------------


def test_one_shot_pruning_reaches_the_amount_in_one_recorded_step(mlp) -> None:
    result = one_shot_prune(mlp, 0.6, epochs=2)
    assert result.schedule is None and len(result.steps) == 1
    assert result.steps[0].sparsity == pytest.approx(0.6, abs=1e-3) and result.steps[0].train_loss is not None


def test_one_shot_pruning_without_epochs_is_plain_magnitude_pruning(mlp) -> None:
    result = one_shot_prune(mlp, 0.6)
    expected = compress(mlp, {"prune": {"method": "magnitude", "amount": 0.6, "scope": "global"}})
    assert result.steps[0].train_loss is None
    assert all(torch.equal(result.module.state_dict()[name], expected.module.state_dict()[name]) for name in mlp.compressible)


def test_one_shot_fine_tuning_keeps_the_pruned_weights_zero_and_the_input_unchanged(mlp) -> None:
    before = {name: tensor.clone() for name, tensor in mlp.module.state_dict().items()}
    result = one_shot_prune(mlp, 0.6, epochs=1)
    pruned = one_shot_prune(mlp, 0.6)
    for name in mlp.compressible:
        assert not result.module.state_dict()[name][pruned.module.state_dict()[name] == 0].any()
    assert all(torch.equal(before[name], tensor) for name, tensor in mlp.module.state_dict().items())


@pytest.mark.parametrize("epochs", [-1, 1.5, True])
def test_one_shot_pruning_refuses_a_bad_epoch_count(mlp, epochs) -> None:
    with pytest.raises(RecipeError, match="epochs must be an integer"):
        one_shot_prune(mlp, 0.5, epochs=epochs)


def test_a_model_without_training_data_is_refused_with_what_to_give(mlp) -> None:
    with pytest.raises(DataError, match="training data"):
        training_data(dataclasses.replace(mlp, training=None))


def test_a_model_without_labelled_evaluation_data_is_refused(mlp) -> None:
    with pytest.raises(DataError, match="labelled"):
        gradual_prune(dataclasses.replace(mlp, evaluation=None), QUICK)
