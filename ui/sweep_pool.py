"""The server's one pool for grids of evaluations, shared by every session (issue 15).

Made on first use, once per server process and configuration, from the environment:

- ``COMPRESSION_LAB_EXECUTOR``: ``local`` (the default: a pool of spawned processes on this
  machine), ``ray`` or ``inline`` (the server's own process, one point after another: tests);
- ``COMPRESSION_LAB_WORKERS``: the local pool's processes (default ``min(cores, MAX_WORKERS)``),
  or the most Ray tasks at once (default: the cluster's CPUs);
- ``COMPRESSION_LAB_RAY_ADDRESS``: a running Ray cluster (``HOST:PORT``); set, it makes ``ray``
  the default. Off by default. Without Ray installed, or with no cluster answering, the local
  pool runs the points and the page says why in one line.

One grid at a time holds the pool (:meth:`Pool.turn`): the workers are the bound, so a second
grid waits for the first rather than halving it. The workers load the model themselves from its
source (``compression.workflows.model_source``); a model that has none they can open (a folded
model lives only in this process, an upload only on this machine) runs in this process instead.
"""
from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import streamlit as st

import compression
from compression.workflows.executor import Executor
from compression.workflows.executors import EXECUTORS, executor_named
from compression.workflows.local_executor import cores
from compression.workflows.model_source import ModelSource, model_source
from compression.workflows.ray_executor import INSTALL_HINT
from ui import cache
from ui.model_ids import FOLDED_PREFIX, UPLOAD_PREFIX, ModelChoice, load_options
from ui.text import t

EXECUTOR_VARIABLE = "COMPRESSION_LAB_EXECUTOR"
WORKERS_VARIABLE = "COMPRESSION_LAB_WORKERS"
RAY_ADDRESS_VARIABLE = "COMPRESSION_LAB_RAY_ADDRESS"
MAX_WORKERS = 8  # a server shares its cores with its sessions' own pages


class Settings(NamedTuple):
    """The pool the environment asks for, as written there ("": unset)."""

    executor: str
    workers: str
    address: str


class Fallback(NamedTuple):
    """Why the points do not run where the settings ask."""

    reason: str  # "ray_missing", "ray_unreachable" or "setting_ignored"
    detail: str


@dataclass
class Pool:
    """The executor, the settings it was made from, and why it is not the one asked for, if so."""

    executor: Executor
    settings: Settings
    fallback: Fallback | None = None
    _turn: threading.Lock = field(default_factory=threading.Lock)

    @contextlib.contextmanager
    def turn(self) -> Iterator[Executor]:
        """The executor, held by one grid at a time."""
        with self._turn:
            yield self.executor


def settings() -> Settings:
    """The settings in the environment now."""
    return Settings(*(os.environ.get(name, "").strip() for name in (EXECUTOR_VARIABLE, WORKERS_VARIABLE, RAY_ADDRESS_VARIABLE)))


_lock = threading.Lock()
_pools: dict[Settings, Pool] = {}  # one, unless the environment changes while the server runs (tests)


def shared() -> Pool:
    """This process's pool for the settings in the environment, made on first use."""
    wanted = settings()
    with _lock:
        if wanted not in _pools:
            _pools[wanted] = _made(wanted)
            atexit.register(_pools[wanted].executor.close)
        return _pools[wanted]


def _made(wanted: Settings) -> Pool:
    workers = int(wanted.workers) if wanted.workers.isdigit() and int(wanted.workers) > 0 else None
    name = wanted.executor or ("ray" if wanted.address else "local")
    ignored = [f"{WORKERS_VARIABLE}={wanted.workers}"] if wanted.workers and workers is None else []
    if name not in EXECUTORS:
        ignored.append(f"{EXECUTOR_VARIABLE}={name}")
        name = "local"
    fallback = Fallback("setting_ignored", ", ".join(ignored)) if ignored else None
    local_workers = workers or min(cores(), MAX_WORKERS)
    if name == "ray":
        if importlib.util.find_spec("ray") is None:
            fallback = Fallback("ray_missing", INSTALL_HINT)
        else:
            try:
                return Pool(executor_named("ray", workers=workers, address=wanted.address or None), wanted, fallback)
            except compression.CompressionError as error:
                fallback = Fallback("ray_unreachable", str(error))
        name = "local"
    return Pool(executor_named(name, workers=None if name == "inline" else local_workers), wanted, fallback)


def stays_here(choice: ModelChoice, pool: Pool) -> bool:
    """Whether the model's points run in this process although the pool has workers: a folded
    model lives only in this process's memory, an upload only on this machine (a Ray cluster's
    other machines lack the file)."""
    if pool.executor.name == "inline":
        return False
    uploaded = load_options(choice.model_id).source_id.startswith(UPLOAD_PREFIX) or choice.data_id is not None
    return choice.model_id.startswith(FOLDED_PREFIX) or (uploaded and pool.executor.name == "ray")


def travelling(choice: ModelChoice, model: compression.LoadedModel, pool: Pool) -> compression.LoadedModel | ModelSource:
    """What a sweep is given for the model: its source where the pool's workers load it
    themselves, else the loaded model (run in this process)."""
    if pool.executor.name == "inline" or stays_here(choice, pool):
        return model
    source, data, keywords = cache.load_arguments(choice.model_id, choice.data_id)
    return model_source(model, source, data, **keywords)


def describe(pool: Pool, stays_here: bool) -> None:
    """One caption on where the points run, and one on why not where asked, if so."""
    executor = pool.executor
    if stays_here:
        st.caption(t("sweep_pool.stays_here"))
    elif executor.name == "ray":
        st.caption(t("sweep_pool.on_ray", address=pool.settings.address or "auto", workers=executor.workers))
    elif executor.name == "local":
        st.caption(t("sweep_pool.on_local", workers=executor.workers))
    else:
        st.caption(t("sweep_pool.inline"))
    if pool.fallback is None:
        return
    if pool.fallback.reason == "ray_missing":
        st.caption(t("sweep_pool.ray_missing", command=pool.fallback.detail))
    elif pool.fallback.reason == "ray_unreachable":
        st.caption(t("sweep_pool.ray_unreachable", error=pool.fallback.detail))
    else:
        st.caption(t("sweep_pool.setting_ignored", setting=pool.fallback.detail))


def executor_for(pool: Pool, model: compression.LoadedModel | ModelSource) -> contextlib.AbstractContextManager[Executor]:
    """Where a workflow given ``model`` (:func:`travelling`'s answer) runs: the pool in its turn
    for a source, this process (an inline executor, no turn to wait for) for a loaded model."""
    return pool.turn() if isinstance(model, ModelSource) else contextlib.nullcontext(Executor())


def time_left(seconds: float | None) -> str:
    """" · about 3 min 12 s left" after a progress bar's count; nothing before there is a rate."""
    if seconds is None:
        return ""
    return t("sweep_pool.time_left", minutes=int(seconds // 60), seconds=int(seconds % 60))
