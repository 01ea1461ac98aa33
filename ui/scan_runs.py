"""Sensitivity scans in the background (:mod:`ui.background_runs`): one run per model and rows scored.

Every finished point goes to the model's scan journal (keyed by the weights, the rows scored and
the one-layer recipe), so a scan stopped mid-way resumes with only the points it lacks. While a
scan runs, the page draws the curves of the layers whose points are all in: the rows the engine
builds for them from the points so far (:func:`partial_frame`), equal to the finished table's.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

import compression
from compression.workflows.executor import Executor, Finished, Task
from compression.recipe import Recipe
from compression.workflows.journal import Journal
from compression.workflows.measurement import cache_key, scored_fingerprints
from compression.workflows.model_source import ModelSource, fingerprints
from compression.workflows.sensitivity import SENSITIVITY_TASK, sensitivity
from ui import background_runs, sweep_pool
from ui.background_runs import BackgroundRun, Measurements


def journal_path(model: compression.LoadedModel) -> Path:
    """The model's scan journal: one per weights and evaluation data (its keys name the rows scored)."""
    weights, data = fingerprints(model)
    return background_runs.folder() / f"sensitivity-{weights}-{data}.jsonl"


def _key(model: compression.LoadedModel, samples: int | None) -> tuple[str, Path, int | None]:
    return "sensitivity", journal_path(model), samples


def live(model: compression.LoadedModel, samples: int | None) -> BackgroundRun | None:
    """The scan of this model on these rows running now, if any."""
    return background_runs.live(_key(model, samples))


def start(model: compression.LoadedModel, samples: int | None, pool: sweep_pool.Pool,
          travelling: compression.LoadedModel | ModelSource, cache: Measurements) -> BackgroundRun:
    """The scan of this model: the one running now, else a new one on ``pool`` seeded with
    ``cache``; its result is ``sensitivity``'s table."""
    key = _key(model, samples)

    def measure(run: BackgroundRun) -> pd.DataFrame:
        with sweep_pool.executor_for(pool, travelling) as executor:
            return sensitivity(travelling, samples=samples, cache=cache, progress=run.heard(cache),
                               executor=executor, journal=Journal(key[1]))

    return background_runs.start(key, measure)


def journaled(model: compression.LoadedModel, samples: int | None) -> Measurements:
    """The scan's points on these rows that the model's journal holds, as the scan's cache keeps them."""
    weights, data = scored_fingerprints(model, samples)
    return {cache_key(Recipe.from_json(point.recipe), samples): measured
            for point, measured in Journal(journal_path(model)).read().items()
            if (point.task, point.model, point.data) == (SENSITIVITY_TASK, weights, data)}


class _Unmeasured(Exception):
    """A layer has points the cache lacks."""


class _MeasuresNothing(Executor):
    """An executor that runs no point: a scan given it is built from the cache alone."""

    def run(self, task: Task, model: compression.LoadedModel | ModelSource, recipes: list) -> Finished:
        if recipes:
            raise _Unmeasured
        return iter(())


def partial_frame(model: compression.LoadedModel, samples: int | None, measured: Measurements) -> pd.DataFrame | None:
    """The scan's rows for the layers, in model order, whose points are all in ``measured``
    (the pool takes the points in that order); None before the first layer is complete."""
    frames = []
    for layer in model.compressible:
        try:
            frames.append(sensitivity(model, layers=[layer], samples=samples, cache=dict(measured), executor=_MeasuresNothing()))
        except _Unmeasured:
            break
    return pd.concat(frames, ignore_index=True) if frames else None
