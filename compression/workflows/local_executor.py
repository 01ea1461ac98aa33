"""The local executor: a pool of processes on this machine, one per core by default.

Spawned, not forked: a fork would copy this process's torch thread pools and locks mid-use.
Each worker pins torch to one thread when it starts and loads the model on its first point.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import warnings
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

import torch

from compression.model import LoadedModel
from compression.recipe import Recipe
from compression.workflows.executor import Executor, Finished, Task, check_workers, measure_point, require_source
from compression.workflows.model_source import ModelSource


class LocalExecutor(Executor):
    """``workers`` spawned processes (default: one per core this process may use)."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = cores() if workers is None else check_workers(workers)
        self._pool: ProcessPoolExecutor | None = None

    def run(self, task: Task, model: LoadedModel | ModelSource, recipes: Sequence[Recipe]) -> Finished:
        source = require_source(model, self.name)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=start_worker)
        running: dict[Future, int] = {
            self._pool.submit(measure_point, task, source, recipe.to_json()): index
            for index, recipe in enumerate(recipes)
        }
        try:
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    result, seconds = future.result()
                    self.task_seconds += seconds
                    yield running.pop(future), result
        finally:
            for future in running:
                future.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def start_worker() -> None:
    """A worker's setup: torch on one thread; Ctrl-C left to the driver, which stops the pool;
    library warnings and logs kept off the terminal (the driver loaded the same model and has
    shown its notes; stderr is for refusals)."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
