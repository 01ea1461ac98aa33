"""The executor interface, its in-process form, and the step every worker runs.

A task is a module-level function of (loaded model, recipe) returning a dict of plain values;
the pools send it by name with the model's source (``model_source.py``) and the recipe's
canonical JSON, never the module. A worker loads the model once per process, checks its
fingerprints, and runs torch on one thread (one core's share), so the numbers do not depend
on where a point ran.

>>> from compression.io.loading import load_model
>>> def amount(model, recipe):  # a task
...     return {"amount": recipe.prune.amount}
>>> with Executor() as inline:
...     list(inline.run(amount, load_model("mlp"), [Recipe.from_dict({"prune": {"amount": 0.5}})]))
[(0, {'amount': 0.5})]
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from compression.errors import RecipeError
from compression.model import LoadedModel
from compression.recipe import Recipe
from compression.workflows.model_source import ModelSource, loaded_model

Task = Callable[[LoadedModel, Recipe], dict[str, Any]]
Finished = Iterator[tuple[int, dict[str, Any]]]  # (index of the recipe, what the task returned)


class Executor:
    """Runs a task on every recipe; ``run`` yields each result as it finishes, in any order.

    This base runs in this process, one point after another (the ``inline`` executor, the
    API's default). Use an executor as a context manager: a pool or a cluster connection
    lives until ``close``, so successive runs reuse the workers and the models they loaded.

    ``task_seconds`` sums the seconds the tasks ran, each timed where it ran (a worker's model
    loading left out): wall time beyond task_seconds / workers is what the executor costs.
    """

    name = "inline"
    workers = 1
    task_seconds = 0.0

    def run(self, task: Task, model: LoadedModel | ModelSource, recipes: Sequence[Recipe]) -> Finished:
        loaded = loaded_model(model) if isinstance(model, ModelSource) else model
        for index, recipe in enumerate(recipes):
            result, seconds = timed(task, loaded, recipe)
            self.task_seconds += seconds
            yield index, result

    def close(self) -> None:
        """Release the workers (none in-process)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def measure_point(task: Task, source: ModelSource, recipe_json: str) -> tuple[dict[str, Any], float]:
    """One point in a worker: ``task`` on the model of ``source`` (loaded once per process), and
    the seconds the task took."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)  # one core's share, whatever the worker's launcher set
    return timed(task, loaded_model(source), Recipe.from_json(recipe_json))


def timed(task: Task, model: LoadedModel, recipe: Recipe) -> tuple[dict[str, Any], float]:
    start = time.perf_counter()
    result = task(model, recipe)
    return result, time.perf_counter() - start


def check_workers(workers: Any) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise RecipeError(f"workers must be a whole number >= 1; got {workers!r}.")
    return workers


def require_source(model: LoadedModel | ModelSource, executor: str) -> ModelSource:
    """The source a pool's workers load; a loaded model cannot travel to them."""
    if not isinstance(model, ModelSource):
        raise RecipeError(
            f"the {executor} executor loads the model in each worker from its source: pass "
            "model_source(model, source) (compression.workflows.model_source), not the loaded model."
        )
    return model
