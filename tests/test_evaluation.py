"""evaluate: accuracy and fidelity of a module against the base model, cheaply and repeatably."""
from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compression.errors import CompressionError, DataError, ModelLoadError
from compression.evaluation import Evaluation, evaluate, model_outputs
from compression.metrics import NN_AGREEMENT, output_tensor
from compression.io.loading import load_model
from compression.metrics import ACCURACY, AGREEMENT, COSINE
from compression.model import EvaluationData, LoadedModel


def loaded(
    module: nn.Module, inputs: tuple[torch.Tensor, ...], metric: str, batch_size: int = 256
) -> LoadedModel:
    data = EvaluationData(inputs, None, metric, "test inputs", batch_size)
    return LoadedModel("test", "module", module.eval(), {}, inputs[:1], data)


def perturbed(module: nn.Module, scale: float = 0.5, seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    copied = copy.deepcopy(module)
    with torch.no_grad():
        for parameter in copied.parameters():
            parameter.add_(scale * torch.randn_like(parameter))
    return copied


@pytest.fixture(scope="module")
def mlp() -> LoadedModel:
    return load_model("mlp")


@pytest.fixture(scope="module")
def embedder() -> LoadedModel:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 8))
    return loaded(module, (torch.randn(300, 16),), COSINE)


def test_base_model_scores_its_own_baseline(mlp: LoadedModel) -> None:
    result = evaluate(mlp)
    x, = mlp.evaluation.inputs
    expected = (mlp.module(x).argmax(1) == mlp.evaluation.labels).double().mean().item()
    assert result == Evaluation(ACCURACY, expected, expected, {})


def test_accuracy_of_a_damaged_module_drops_and_baseline_stays(mlp: LoadedModel) -> None:
    damaged = perturbed(mlp.module, scale=0.3)
    result = evaluate(mlp, damaged)
    x, = mlp.evaluation.inputs
    expected = (damaged(x).argmax(1) == mlp.evaluation.labels).double().mean().item()
    assert result.value == pytest.approx(expected)
    assert result.value < result.baseline_value == evaluate(mlp).value


def test_evaluation_is_deterministic_and_leaves_modules_unchanged(mlp: LoadedModel) -> None:
    damaged = perturbed(mlp.module, scale=0.3)
    before = {k: v.clone() for k, v in damaged.state_dict().items()}
    assert evaluate(mlp, damaged) == evaluate(mlp, damaged)
    assert all(torch.equal(before[k], v) for k, v in damaged.state_dict().items())
    assert not mlp.module.training


def test_baseline_outputs_are_computed_once() -> None:
    calls = []
    module = nn.Linear(4, 3)
    same = copy.deepcopy(module)
    module.register_forward_hook(lambda *_: calls.append(1))
    model = loaded(module, (torch.randn(10, 4),), AGREEMENT, batch_size=5)
    evaluate(model)
    evaluate(model, same)
    evaluate(model, same)
    assert len(calls) == 2  # two batches, once


def test_agreement_is_the_fraction_of_unchanged_top1_classes() -> None:
    torch.manual_seed(0)
    module = nn.Linear(6, 4)
    x = torch.randn(200, 6)
    model = loaded(module, (x,), AGREEMENT)
    other = perturbed(module)
    result = evaluate(model, other)
    expected = (module(x).argmax(1) == other(x).argmax(1)).double().mean().item()
    assert (result.metric, result.value, result.baseline_value) == (AGREEMENT, pytest.approx(expected), 1.0)
    assert 0.0 < result.value < 1.0
    assert evaluate(model, copy.deepcopy(module)).value == 1.0


def test_cosine_is_the_mean_row_cosine_with_neighbour_agreement(embedder: LoadedModel) -> None:
    other = perturbed(embedder.module, scale=0.3)
    x, = embedder.evaluation.inputs
    base, changed = embedder.module(x).detach(), other(x).detach()
    result = evaluate(embedder, other)

    def neighbours(rows: torch.Tensor) -> torch.Tensor:
        similarity = F.cosine_similarity(rows[:, None, :], rows[None, :, :], dim=2)
        return similarity.fill_diagonal_(-2.0).argmax(1)

    assert result.value == pytest.approx(F.cosine_similarity(base, changed, dim=1).mean().item(), abs=1e-6)
    same_neighbour = (neighbours(base) == neighbours(changed)).double().mean().item()
    assert result.extras[NN_AGREEMENT] == pytest.approx(same_neighbour)
    assert result.value < 1.0 and result.extras[NN_AGREEMENT] < 1.0


def test_cosine_of_an_identical_module_is_one(embedder: LoadedModel) -> None:
    result = evaluate(embedder, copy.deepcopy(embedder.module))
    assert result.value == pytest.approx(1.0) and result.value <= 1.0
    assert result.extras == {NN_AGREEMENT: 1.0}
    assert evaluate(embedder) == Evaluation(COSINE, 1.0, 1.0, {NN_AGREEMENT: 1.0})


def test_neighbour_search_over_many_rows_runs_in_blocks() -> None:
    torch.manual_seed(0)
    module = nn.Linear(4, 4)
    model = loaded(module, (torch.randn(2500, 4),), COSINE, batch_size=1000)
    assert evaluate(model, copy.deepcopy(module)).extras[NN_AGREEMENT] == 1.0


def test_static_batch_programs_always_get_their_batch_size() -> None:
    seen = []

    class StaticBatch(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(len(x))
            assert len(x) == 4, "exported with a static batch of 4"
            return x * 2

    outputs = model_outputs(StaticBatch(), (torch.arange(10.0)[:, None],), batch_size=4)
    assert seen == [4, 4, 4]
    assert torch.equal(outputs, torch.arange(10.0)[:, None] * 2)


def test_model_without_evaluation_data_asks_for_a_data_file() -> None:
    model = LoadedModel("scripted.pt", "torchscript", nn.Linear(2, 2), {}, (), None)
    with pytest.raises(DataError, match=r"'scripted.pt' has no evaluation data.*--data x\.npz"):
        evaluate(model)


def test_module_with_outputs_of_another_shape_is_refused(mlp: LoadedModel) -> None:
    shapes = r"outputs of shape \(450, 5\) but the base model 'mlp' gives \(450, 10\)"
    with pytest.raises(CompressionError, match=shapes):
        evaluate(mlp, nn.Sequential(mlp.module, nn.Linear(10, 5)))


@pytest.mark.parametrize(
    "output, expected",
    [
        ((torch.ones(2, 3), torch.zeros(2)), torch.ones(2, 3)),
        ([torch.ones(2, 3)], torch.ones(2, 3)),
        (OrderedDict(logits=torch.ones(2, 3), hidden=torch.zeros(2)), torch.ones(2, 3)),
        (
            OrderedDict(last_hidden_state=torch.arange(12.0).reshape(2, 3, 2)),
            torch.tensor([[2.0, 3.0], [8.0, 9.0]]),  # the mean over tokens
        ),
    ],
)
def test_non_tensor_outputs_are_reduced_to_the_tensor_to_score(output, expected: torch.Tensor) -> None:
    assert torch.equal(output_tensor(output), expected)


def test_outputs_without_a_tensor_are_refused() -> None:
    with pytest.raises(ModelLoadError, match="returned str, which holds no tensor"):
        output_tensor("label")


def test_samples_scores_only_the_first_rows_with_their_own_baseline() -> None:
    from compression.io.loading import load_model

    model = load_model("mlp")
    full = evaluate(model)
    first = evaluate(model, samples=50)
    split_labels = model.evaluation.labels[:50]
    outputs = model.module(model.evaluation.inputs[0][:50]).argmax(dim=1)
    assert first.value == pytest.approx(float((outputs == split_labels).double().mean()))
    assert evaluate(model).value == full.value
