"""Trade-offs sweeps in the background (:mod:`ui.background_runs`): one run per model and grid.

Every finished point goes to the model's sweep journal (``compression.workflows.journal``: a
synced JSON line keyed by the weights and evaluation data fingerprints and the recipe), one
journal per model whatever the grid, so a new run of any grid takes the points some run of it
finished from the journal and measures only the rest.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

import compression
from compression.metrics import METRICS
from compression.recipe import Recipe
from compression.workflows.journal import Journal, PointKey
from compression.workflows.model_source import ModelSource, fingerprints
from compression.workflows.sweep import SWEEP_TASK, grid_recipes, pareto_mask
from ui import background_runs, sweep_pool
from ui.background_runs import BackgroundRun, Measurements


@dataclass(frozen=True)
class SweepGrid:
    """Amounts × bits × schemes over a base recipe (its canonical JSON), as ``compression.sweep`` takes them."""

    amounts: tuple[float, ...]
    bits: tuple[int, ...]
    schemes: tuple[str, ...]
    base: str

    @cached_property
    def points(self) -> list[tuple[str, float, int, Recipe]]:
        return grid_recipes(self.amounts, self.bits, self.schemes, self.base)

    @cached_property
    def recipes(self) -> list[str]:
        """Each configuration's recipe JSON once, in grid order (float formats ignore the bits)."""
        return list(dict.fromkeys(recipe.to_json() for *_, recipe in self.points))


def journal_path(model: compression.LoadedModel) -> Path:
    """The model's sweep journal: one per weights and evaluation data, whatever the grid."""
    weights, data = fingerprints(model)
    return background_runs.folder() / f"sweep-{weights}-{data}.jsonl"


def _key(model: compression.LoadedModel, grid: SweepGrid) -> tuple[str, Path, SweepGrid]:
    return "sweep", journal_path(model), grid


def live(model: compression.LoadedModel, grid: SweepGrid) -> BackgroundRun | None:
    """The run measuring this grid of this model now, if any."""
    return background_runs.live(_key(model, grid))


def latest(model: compression.LoadedModel, base: str) -> SweepGrid | None:
    """The grid of the run started last on this model and base recipe, while it runs: what a
    new session (a reload) opens with."""
    path = journal_path(model)
    grids = [key[2] for key in background_runs.live_keys() if key[:2] == ("sweep", path) and key[2].base == base]
    return grids[-1] if grids else None


def start(model: compression.LoadedModel, grid: SweepGrid, pool: sweep_pool.Pool,
          travelling: compression.LoadedModel | ModelSource, cache: Measurements) -> BackgroundRun:
    """The run of this grid: the one measuring it now, else a new one on ``pool`` (``travelling``:
    the model or its source, :func:`ui.sweep_pool.travelling`) seeded with ``cache``; its
    result is ``compression.sweep``'s table."""
    key = _key(model, grid)

    def measure(run: BackgroundRun) -> pd.DataFrame:
        with sweep_pool.executor_for(pool, travelling) as executor:
            return compression.sweep(travelling, grid.amounts, grid.bits, grid.schemes, grid.base,
                                     cache=cache, progress=run.heard(cache), executor=executor, journal=key[1])

    return background_runs.start(key, measure)


def journaled(model: compression.LoadedModel, grid: SweepGrid) -> Measurements:
    """The grid's points that the model's journal holds."""
    weights, data = fingerprints(model)
    recorded = Journal(journal_path(model)).read()
    return {text: recorded[key] for text in grid.recipes if (key := PointKey(SWEEP_TASK, weights, data, text)) in recorded}


def partial_frame(grid: SweepGrid, measured: Measurements) -> pd.DataFrame | None:
    """The grid's finished points as rows of ``compression.sweep``'s table, the Pareto front
    among them; None before the first."""
    rows = [{"scheme": scheme, "amount": amount, "bits": bits, **measured[text], "recipe": text}
            for scheme, amount, bits, recipe in grid.points if (text := recipe.to_json()) in measured]
    if not rows:
        return None
    frame = pd.DataFrame(rows).drop_duplicates(subset="recipe", ignore_index=True)
    higher_is_better = METRICS[frame["metric"].iloc[0]].higher_is_better
    frame["pareto"] = pareto_mask(frame["encoded_bytes"].to_numpy(), frame["value"].to_numpy(), higher_is_better)
    return frame
