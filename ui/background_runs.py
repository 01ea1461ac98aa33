"""Grids of evaluations in threads of their own, one per key, shared by the sessions that ask.

A press of Run on the Trade-offs or the Sensitivity page starts its grid here, so the work
outlives the page run that started it: a reload, a page switch or another session asking for
the same work finds the same run (:func:`live`) and draws its points as they arrive, never a
second run. The engine's workflows fill a cache as points finish and call ``progress`` after
each; a run copies the cache at each call (in the run's own thread, the cache's only writer),
so a page reads the points so far without touching the dict being filled. Every point also goes
to a journal in the server's sweep folder (:func:`folder`), so what a run finished outlives it
(an error mid-way, a server restart with ``COMPRESSION_LAB_SWEEP_DIR`` set).
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, NamedTuple

SWEEP_DIR_VARIABLE = "COMPRESSION_LAB_SWEEP_DIR"
POLL_SECONDS = 1.0  # how often a page redraws a run it did not start

Measurements = dict[str, dict[str, Any]]  # a workflow's cache: point key → its measurement


class Progress(NamedTuple):
    """What a run has finished so far."""

    done: int
    total: int
    measured: Measurements
    seconds_left: float | None  # at the rate so far; None before a point measured by this run


class BackgroundRun:
    """One piece of work in its thread: its progress, then its result or the error that stopped it."""

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.result: Any = None
        self.error: Exception | None = None  # handed to the pages showing the run
        self._lock = threading.Lock()
        self._done = self._total = self._reused = 0
        self._measured: Measurements = {}
        self._started: float | None = None  # the workflow's first progress call: the pool has taken it
        self._finished = threading.Event()

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    @property
    def started(self) -> bool:
        """Whether the work has begun (else it waits for the pool: another grid holds it)."""
        return self._started is not None

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the end; whether it has come."""
        return self._finished.wait(seconds)

    def progress(self) -> Progress:
        """The points done, of how many, their measurements and the time left."""
        with self._lock:
            done, total, measured, started, reused = self._done, self._total, self._measured, self._started, self._reused
        seconds_left = None
        if started is not None and done > reused:  # the pool's rate, its workers in parallel
            seconds_left = (time.monotonic() - started) / (done - reused) * (total - done)
        return Progress(done, total, measured, seconds_left)

    def heard(self, cache: Measurements) -> Callable[[int, int, str], None]:
        """The ``progress`` callback for a workflow filling ``cache``: each call keeps a copy."""

        def progress(done: int, total: int, _: str) -> None:
            copy = dict(cache)
            with self._lock:
                if self._started is None:  # the first call: what the journal and the cache held
                    self._started, self._reused = time.monotonic(), done
                self._done, self._total, self._measured = done, total, copy

        return progress

    def _work(self, measure: Callable[[BackgroundRun], Any]) -> None:
        try:
            self.result = measure(self)
        except Exception as error:  # the thread's end: the pages showing the run say it, or raise it
            self.error = error
        finally:
            with _lock:
                if _live.get(self.key) is self:
                    del _live[self.key]
            self._finished.set()


_lock = threading.Lock()  # over the two below; never held while calling out
_live: dict[Hashable, BackgroundRun] = {}  # the runs not finished, by key
_folder: list[Path] = []  # the sweep folder made for this process, when the environment names none


def live(key: Hashable) -> BackgroundRun | None:
    """The run working on ``key`` now, if any."""
    with _lock:
        return _live.get(key)


def live_keys() -> list[Hashable]:
    """The keys of the runs working now, the latest started last."""
    with _lock:
        return list(_live)


def start(key: Hashable, measure: Callable[[BackgroundRun], Any]) -> BackgroundRun:
    """The run working on ``key``: the one there is, else a new thread running ``measure(run)``
    (which passes ``run.heard(cache)`` to the workflow as its progress)."""
    with _lock:
        if key in _live:
            return _live[key]
        run = _live[key] = BackgroundRun(key)
    threading.Thread(target=run._work, args=(measure,), name=f"background run {key!r:.60}", daemon=True).start()
    return run


def folder() -> Path:
    """Where the journals lie: ``COMPRESSION_LAB_SWEEP_DIR`` (kept across restarts), else a
    temporary folder made once per server process and removed at its exit."""
    named = os.environ.get(SWEEP_DIR_VARIABLE, "").strip()
    if named:
        Path(named).mkdir(parents=True, exist_ok=True)
        return Path(named).resolve()
    with _lock:
        if not _folder:
            _folder.append(Path(tempfile.mkdtemp(prefix="compression-lab-sweeps-")))
            atexit.register(shutil.rmtree, _folder[0], ignore_errors=True)
        return _folder[0]
