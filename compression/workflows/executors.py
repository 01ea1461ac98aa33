"""Where a grid of (model, recipe) evaluations runs, chosen by name.

- ``inline``: in this process, one point after another (the API's default; ``executor.py``);
- ``local``: a pool of processes on this machine, one per core by default (``local_executor.py``;
  the command line's default);
- ``ray``: Ray tasks on a running cluster (``ray_executor.py``; Ray is an optional install).

Every executor gives the same numbers, and nothing about it enters a result.

>>> with executor_named("local", workers=2) as pool:
...     pool.name, pool.workers
('local', 2)
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from compression.errors import RecipeError
from compression.workflows.executor import Executor
from compression.workflows.local_executor import LocalExecutor

EXECUTORS = ("inline", "local", "ray")


def executor_named(name: str, *, workers: int | None = None, address: str | None = None) -> Executor:
    """``inline``, ``local`` (``workers`` processes) or ``ray`` (the cluster at ``address``,
    at most ``workers`` tasks at once)."""
    if name not in EXECUTORS:
        raise RecipeError(f"executor must be one of {', '.join(map(repr, EXECUTORS))}; got {name!r}.")
    if address is not None and name != "ray":
        raise RecipeError(f"an address is for the ray executor; got executor {name!r} with address {address!r}.")
    if name == "inline":
        if workers not in (None, 1):
            raise RecipeError(f"the inline executor runs one point at a time; got workers={workers!r}.")
        return Executor()
    if name == "local":
        return LocalExecutor(workers)
    from compression.workflows.ray_executor import RayExecutor

    return RayExecutor(address, workers)


@contextlib.contextmanager
def running_on(executor: Executor | str) -> Iterator[Executor]:
    """The executor given (left open: the caller's), or one made by name and closed after.

    What the workflows' ``executor=`` takes: an ``Executor``, or a name of ``EXECUTORS``.
    """
    if isinstance(executor, Executor):
        yield executor
        return
    if not isinstance(executor, str):
        raise RecipeError(
            f"executor must be an Executor or one of {', '.join(map(repr, EXECUTORS))}; got {executor!r}."
        )
    with executor_named(executor) as made:
        yield made
