"""A background run (``ui.background_runs``) on a page: its progress drawn until it ends, then
its result taken into the session — the same for the Trade-offs sweep and the Sensitivity scan.

The session that pressed Run waits in its own script run, redrawing; any other session (another
user's, or this one's after a reload) follows in a fragment polled every second.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

import compression
from ui import background_runs, sweep_pool
from ui.background_runs import BackgroundRun, Progress
from ui.text import t

# (run, bar placeholder, chart placeholder, points drawn so far) → points drawn now
Draw = Callable[[BackgroundRun, Any, Any, int], int]


def progress_bar(run: BackgroundRun, bar: Any, label: Callable[..., str]) -> Progress | None:
    """The run's share done into ``bar``, captioned ``label(done=, total=, left=)`` (left: the
    time left, in words); None (and a waiting bar) while the pool has not started it."""
    if not run.started:
        bar.progress(0.0, text=t("sweep_pool.waiting"))
        return None
    progress = run.progress()
    bar.progress(progress.done / max(progress.total, 1),
                 text=label(done=progress.done, total=progress.total, left=sweep_pool.time_left(progress.seconds_left)))
    return progress


def adopt(run: BackgroundRun, keep: Callable[[Any], None], points: dict[str, Any],
          stopped: Callable[[Exception], str]) -> None:
    """The finished run's result to ``keep`` and its measured points into ``points`` (later runs
    and searches reuse them), or ``stopped(error)`` where an engine refusal stopped it (a bug is raised)."""
    if run.error is not None:
        if not isinstance(run.error, compression.CompressionError):
            raise run.error
        st.error(stopped(run.error))
        return
    keep(run.result)
    for key, measured in run.progress().measured.items():
        points.setdefault(key, measured)


def see_through(run: BackgroundRun, draw: Draw, adopted: Callable[[BackgroundRun], None], started_here: bool) -> None:
    """Draw ``run`` until it ends, then ``adopted(run)``. A run this script run did not start is
    followed in a polled fragment, and the rest of the page waits for it (``st.stop``)."""
    if not started_here:
        if not run.finished:
            _follow(run, draw, adopted)
            st.stop()
        adopted(run)
        return
    bar, chart, shown = st.empty(), st.empty(), -1
    while not run.finished:
        shown = draw(run, bar, chart, shown)
        run.wait(background_runs.POLL_SECONDS)
    bar.empty()
    chart.empty()
    adopted(run)


@st.fragment(run_every=background_runs.POLL_SECONDS)
def _follow(run: BackgroundRun, draw: Draw, adopted: Callable[[BackgroundRun], None]) -> None:
    """Redrawn every second while the run goes on; the whole page once it ends."""
    if not run.finished:
        draw(run, st.empty(), st.empty(), -1)
        return
    adopted(run)
    if run.error is None:
        st.rerun()
