"""The Ray executor: every point a Ray task on a running cluster (``ray start --head``).

Ray is optional (``pip install -r requirements-ray.txt``) and imported when the executor
starts. The driver ships its own ``compression`` and ``sample_models`` packages to the cluster
(a runtime environment's ``py_modules``), so every machine runs the driver's code; each
machine needs the same Python, Ray and requirements, and a model file at the same path (zoo
names load anywhere). A worker that dies mid-task is replaced and its task run again
(``max_retries``); an error the task itself raises is not retried, it is the answer.
"""
from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from compression.errors import CompressionError
from compression.model import LoadedModel
from compression.recipe import Recipe
from compression.workflows.executor import Executor, Finished, Task, check_workers, measure_point, require_source
from compression.workflows.model_source import ModelSource

INSTALL_HINT = "pip install -r requirements-ray.txt"
TASK_RETRIES = 3  # a task whose worker died runs again up to this many times
CONNECT_SECONDS = 10  # Ray itself retries an unreachable address for minutes
_PROJECT = Path(__file__).resolve().parents[2]
_PACKAGES = ("compression", "sample_models")


class RayExecutor(Executor):
    """Ray tasks on the cluster at ``address`` (``"auto"``: the one started on this machine),
    at most ``workers`` at once (default: the cluster's CPUs), one CPU each."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        self.address = address or "auto"
        self._ray = _import_ray()
        self._connected_here = False
        if not self._ray.is_initialized():
            packages = [str(_PROJECT / name) for name in _PACKAGES if (_PROJECT / name).is_dir()]
            try:
                _check_reachable(self.address)
                self._ray.init(address=self.address, logging_level=logging.ERROR, log_to_driver=False,
                               runtime_env={"py_modules": packages})
            except ConnectionError as error:
                raise CompressionError(
                    f"no Ray cluster answers at {self.address!r} ({' '.join(str(error).split())}): start one with "
                    f"`ray start --head`, or give the head's address{_token_hint()}."
                ) from None
            self._connected_here = True
        cpus = int(self._ray.cluster_resources().get("CPU", 1))
        self.workers = max(1, cpus) if workers is None else check_workers(workers)
        self._task = self._ray.remote(measure_point).options(num_cpus=1, max_retries=TASK_RETRIES)

    def run(self, task: Task, model: LoadedModel | ModelSource, recipes: Sequence[Recipe]) -> Finished:
        ray = self._ray
        source = ray.put(require_source(model, self.name))  # once through the object store
        waiting = list(enumerate(recipes))
        running: dict[Any, int] = {}
        try:
            while waiting or running:
                while waiting and len(running) < self.workers:  # at most ``workers`` points at once
                    index, recipe = waiting.pop(0)
                    running[self._task.remote(task, source, recipe.to_json())] = index
                ready, _ = ray.wait(list(running), num_returns=1)
                index = running.pop(ready[0])
                yield index, self._result(ready[0])
        finally:
            for reference in running:
                ray.cancel(reference)

    def close(self) -> None:
        if self._connected_here and self._ray.is_initialized():
            self._ray.shutdown()  # this driver's connection; the cluster keeps running
        self._connected_here = False

    def _result(self, reference: Any) -> dict[str, Any]:
        try:
            result, seconds = self._ray.get(reference)
        except self._ray.exceptions.RayTaskError as error:
            if isinstance(error.cause, CompressionError):
                raise error.cause from None  # bad input, said as the engine says it
            raise
        self.task_seconds += seconds
        return result


def _check_reachable(address: str) -> None:
    """Raise ConnectionError within ``CONNECT_SECONDS`` where nothing listens at HOST:PORT."""
    host, _, port = address.rpartition(":")
    if address == "auto" or "://" in address or not port.isdigit():
        return  # Ray finds "auto" itself, and a Ray Client address speaks another protocol
    with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS):
        pass


def _token_hint() -> str:
    """Where a token may be what failed: ``ray start`` turns token authentication on wherever
    ~/.ray/auth_token exists, and a driver given an address sends the token only when told to."""
    if os.environ.get("RAY_AUTH_MODE") or not (Path.home() / ".ray" / "auth_token").exists():
        return ""
    return "; a cluster started where ~/.ray/auth_token exists asks for that token: set RAY_AUTH_MODE=token"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise CompressionError(f"the ray executor needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray
