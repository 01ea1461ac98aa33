"""Sweeps and sensitivity scans in the background (issue 15): one pool per server process, one
run per model and grid shared by the sessions, points drawn as they arrive, and a stopped run
resumed from the journal without measuring a point twice.

Points run inline here (``COMPRESSION_LAB_EXECUTOR=inline``), so a test counts and holds them
by wrapping the sweep's task; the journals go to the test's own folder.
"""
from __future__ import annotations

import importlib.util
import json
import os
import socket
import threading
import time

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import compression
from compression.workflows import sensitivity as sensitivity_module
from compression.workflows import sweep as sweep_module
from tests.ui.conftest import APP
from tests.ui.test_pages import values
from ui import background_runs, cache, scan_runs, sweep_pool, sweep_runs
from ui.model_ids import ModelChoice

AMOUNTS, BITS = (0.0, 0.5), (4, 32)
GRID = sweep_runs.SweepGrid(AMOUNTS, BITS, ("linear",), compression.Recipe.from_dict({}).to_json())
MEASURE = sweep_module.measure_recipe


class CountedPoints:
    """The sweep's task, counted as points finish; every point after the first ``free`` waits
    for ``release`` (a sweep held mid-way)."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.finished = 0
        self.release = threading.Event()
        self._started = 0
        self._lock = threading.Lock()

    def __call__(self, model: compression.LoadedModel, recipe: compression.Recipe) -> dict:
        with self._lock:
            self._started += 1
            held = self._started > self.free
        if held:
            assert self.release.wait(120), "the test never released the held points"
        measured = MEASURE(model, recipe)
        with self._lock:
            self.finished += 1
        return measured


@pytest.fixture
def server(monkeypatch, tmp_path):
    """Inline points, a sweep folder of the test's own, no Ray."""
    monkeypatch.setenv(sweep_pool.EXECUTOR_VARIABLE, "inline")
    monkeypatch.setenv(background_runs.SWEEP_DIR_VARIABLE, str(tmp_path))
    monkeypatch.delenv(sweep_pool.RAY_ADDRESS_VARIABLE, raising=False)
    monkeypatch.delenv(sweep_pool.WORKERS_VARIABLE, raising=False)
    return tmp_path


def counted(monkeypatch, free: int = 100) -> CountedPoints:
    points = CountedPoints(free)
    monkeypatch.setattr(sweep_module, "measure_recipe", points)
    return points


def session(app: AppTest, grid: sweep_runs.SweepGrid | None = None) -> AppTest:
    """A new session on mlp's Trade-offs page; with ``grid``, its ranges chosen."""
    app.query_params["model"] = "mlp"
    app.run()
    app.switch_page("pages/tradeoffs.py")
    app.run()
    if grid is not None:
        app.multiselect(key="sweep_amounts").set_value(list(grid.amounts))
        app.multiselect(key="sweep_bits").set_value(list(grid.bits)).run()
    return app


def new_session() -> AppTest:
    """Another session of the same dashboard, as the ``app`` fixture makes it."""
    return AppTest.from_file(str(APP), default_timeout=120)


def progress_texts(app: AppTest) -> list[str]:
    return [element.proto.text for element in app.get("progress")]


def chart_points(app: AppTest, key: str) -> int:
    """Grid points drawn on the chart ``key``: the markers of the lines per bit width."""
    [chart] = [chart for chart in app.get("plotly_chart") if chart.key == key]
    lines = [trace for trace in json.loads(chart.proto.spec)["data"] if trace.get("mode") == "lines+markers"]
    return sum(len(values(trace["x"])) for trace in lines)


def inline_table(grid: sweep_runs.SweepGrid = GRID) -> pd.DataFrame:
    """``compression.sweep`` in this process, as the API runs it (before a test counts the points)."""
    return compression.sweep(compression.load_model("mlp"), grid.amounts, grid.bits, grid.schemes, grid.base)


def assert_sweep_table(app: AppTest, expected: pd.DataFrame) -> None:
    """The session's sweep is the table ``compression.sweep`` returns inline (sizes exact,
    metrics equal), and the page shows a row per point."""
    [frame] = app.session_state["sweeps"].values()
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    [shown] = app.dataframe
    assert len(shown.value) == len(expected)
    assert shown.value["encoded_bytes"].tolist() == expected["encoded_bytes"].tolist()


def wait_for(condition, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# --- the pool -----------------------------------------------------------------------------------


def test_the_pool_is_one_per_server_process_whatever_the_sessions_or_threads(monkeypatch, server):
    monkeypatch.setenv(sweep_pool.EXECUTOR_VARIABLE, "local")
    monkeypatch.setenv(sweep_pool.WORKERS_VARIABLE, "2")
    pools = []
    threads = [threading.Thread(target=lambda: pools.append(sweep_pool.shared())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(pools) == 8 and all(pool is pools[0] for pool in pools)
    assert (pools[0].executor.name, pools[0].executor.workers) == ("local", 2)


def test_two_sessions_see_the_same_pool(app, monkeypatch, server):
    monkeypatch.setenv(sweep_pool.EXECUTOR_VARIABLE, "local")
    first, second = session(app), session(new_session())
    for opened in (first, second):
        assert not opened.exception
        workers = min(len(os.sched_getaffinity(0)), sweep_pool.MAX_WORKERS)
        assert f"pool of {workers} processes, shared by every session" in " ".join(c.value for c in opened.caption)
    assert sweep_pool.shared() is sweep_pool.shared()


def test_without_ray_the_page_says_how_to_add_it_and_runs_on_the_local_pool(app, monkeypatch, server):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "ray" else find_spec(name, *rest))
    monkeypatch.delenv(sweep_pool.EXECUTOR_VARIABLE, raising=False)
    monkeypatch.setenv(sweep_pool.RAY_ADDRESS_VARIABLE, "127.0.0.1:1")
    session(app)
    captions = " ".join(caption.value for caption in app.caption)
    assert "Ray is not installed" in captions and "pip install -r requirements-ray.txt" in captions
    assert sweep_pool.shared().executor.name == "local"


def test_a_ray_address_where_no_cluster_answers_falls_back_to_the_local_pool(monkeypatch, server):
    pytest.importorskip("ray")
    monkeypatch.delenv(sweep_pool.EXECUTOR_VARIABLE, raising=False)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    monkeypatch.setenv(sweep_pool.RAY_ADDRESS_VARIABLE, f"127.0.0.1:{port}")
    pool = sweep_pool.shared()
    assert pool.executor.name == "local" and pool.fallback.reason == "ray_unreachable"
    assert f"127.0.0.1:{port}" in pool.fallback.detail


def test_a_folded_model_runs_in_the_servers_process(monkeypatch, server):
    monkeypatch.setenv(sweep_pool.EXECUTOR_VARIABLE, "local")
    pool = sweep_pool.shared()
    assert sweep_pool.stays_here(ModelChoice("folded/bn_cnn", None), pool)
    assert not sweep_pool.stays_here(ModelChoice("mlp", None), pool)
    model = cache.base_model("mlp", None)
    assert sweep_pool.travelling(ModelChoice("mlp", None), model, pool).source == "mlp"


# --- runs shared by the sessions, drawn as they arrive -------------------------------------------


def test_a_running_sweep_shows_its_points_so_far_and_then_the_whole_table(app, monkeypatch, server):
    expected = inline_table()
    points = counted(monkeypatch, free=2)
    model = cache.base_model("mlp", None)
    pool = sweep_pool.shared()
    run = sweep_runs.start(model, GRID, pool, model, {})
    wait_for(lambda: run.progress().done == 2)

    watching = session(app)  # a new session (a reload mid-sweep) opens on the running grid
    assert not watching.exception, [e.value for e in watching.exception]
    assert watching.multiselect(key="sweep_amounts").value == list(AMOUNTS)
    [text] = progress_texts(watching)
    assert text.startswith("2 of 4 points")
    assert chart_points(watching, "sweep_partial_2") == 2
    assert not watching.dataframe

    points.release.set()
    run.wait(120)
    watching.run()
    assert not watching.exception, [e.value for e in watching.exception]
    assert_sweep_table(watching, expected)
    assert points.finished == 4


def test_a_second_session_asking_for_the_same_grid_joins_the_run(app, monkeypatch, server):
    expected = inline_table()
    points = counted(monkeypatch, free=1)
    model = cache.base_model("mlp", None)
    run = sweep_runs.start(model, GRID, sweep_pool.shared(), model, {})  # as a first session's Run button does
    wait_for(lambda: run.progress().done == 1)
    first = session(app, GRID)

    second = session(new_session(), GRID)
    assert sweep_runs.live(model, GRID) is run
    assert progress_texts(second)[0].startswith("1 of 4 points")
    threading.Timer(1.0, points.release.set).start()
    [button] = [b for b in second.button if b.label == "Run sweep"]
    button.click().run()  # joins the run: waits for it, starts none
    assert_sweep_table(second, expected)
    first.run()
    assert_sweep_table(first, expected)
    assert points.finished == 4  # each point once, for both sessions


# --- resumed from the journal ---------------------------------------------------------------------


def test_a_stopped_sweep_shows_its_journal_and_resumes_without_measuring_a_point_twice(app, monkeypatch, server):
    expected = inline_table()
    model = cache.base_model("mlp", None)
    half = sweep_runs.SweepGrid((0.0,), BITS, GRID.schemes, GRID.base)
    compression.sweep(model, half.amounts, half.bits, half.schemes, half.base, journal=sweep_runs.journal_path(model))
    points = counted(monkeypatch)  # the run that wrote those two points is gone (a server restart)

    session(app, GRID)
    assert not app.exception, [e.value for e in app.exception]
    assert "2 of 4 points of this grid are already in this model's journal" in " ".join(c.value for c in app.caption)
    assert chart_points(app, "sweep_journaled") == 2
    [resume] = [b for b in app.button if b.label == "Resume sweep"]
    resume.click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert_sweep_table(app, expected)
    assert points.finished == 2  # only the two the journal lacked
    assert len(sweep_runs.journaled(model, GRID)) == 4


def test_the_run_button_measures_the_grid_on_the_pool_and_keeps_its_points(app, monkeypatch, server):
    expected = inline_table()
    points = counted(monkeypatch)
    session(app, GRID)
    [run] = [b for b in app.button if b.label == "Run sweep"]
    run.click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert_sweep_table(app, expected)
    assert points.finished == 4
    assert len(app.session_state["sweep_points"][ModelChoice("mlp", None)]) == 4


# --- the Sensitivity page's scan ------------------------------------------------------------------


class CountedScan(CountedPoints):
    """The scan's task (``PointMeasurement``) counted and held like the sweep's."""

    def __init__(self, free: int) -> None:
        super().__init__(free)
        self.tasks: list = []

    def task(self, samples: int | None = None, fast: bool = False):
        measure = SCAN_TASK(samples, fast)

        def counted(model, recipe):
            with self._lock:
                self._started += 1
                held = self._started > self.free
            if held:
                assert self.release.wait(120), "the test never released the held points"
            row = measure(model, recipe)
            with self._lock:
                self.finished += 1
            return row

        return counted


SCAN_TASK = sensitivity_module.PointMeasurement
POINTS_PER_LAYER = len(sensitivity_module.DEFAULT_AMOUNTS) + len(sensitivity_module.DEFAULT_BITS) - 1  # amount 0 = 32 bits


def counted_scan(monkeypatch, free: int = 10_000) -> CountedScan:
    points = CountedScan(free)
    monkeypatch.setattr(sensitivity_module, "PointMeasurement", points.task)
    return points


def scan_session(app: AppTest) -> AppTest:
    app.query_params["model"] = "mlp"
    app.run()
    app.switch_page("pages/sensitivity.py")
    return app.run()


def test_a_running_scan_draws_the_layers_measured_so_far_and_then_the_whole_table(app, monkeypatch, server):
    model = cache.base_model("mlp", None)
    expected = sensitivity_module.sensitivity(model)
    points = counted_scan(monkeypatch, free=POINTS_PER_LAYER)
    run = scan_runs.start(model, None, sweep_pool.shared(), model, {})
    wait_for(lambda: run.progress().done >= POINTS_PER_LAYER + 1)

    scan_session(app)
    assert not app.exception, [e.value for e in app.exception]
    [text] = progress_texts(app)
    done, total = run.progress().done, run.progress().total
    assert text.startswith(f"{done} of {total} measurements") and done < total
    curves = [chart for chart in app.get("plotly_chart") if chart.key == f"sensitivity_partial_{done}"]
    assert len(curves) == 1 and len(json.loads(curves[0].proto.spec)["data"]) == 1  # the first layer's curve
    points.release.set()
    run.wait(120)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    [frame] = app.session_state["sensitivity_runs"].values()
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    assert points.finished == len(model.compressible) * POINTS_PER_LAYER


def test_a_stopped_scan_shows_its_journal_and_resumes_without_measuring_a_point_twice(app, monkeypatch, server):
    model = cache.base_model("mlp", None)
    expected = sensitivity_module.sensitivity(model)
    first = list(model.compressible)[:1]
    sensitivity_module.sensitivity(model, layers=first, journal=scan_runs.journal_path(model))
    points = counted_scan(monkeypatch)

    scan_session(app)
    assert not app.exception, [e.value for e in app.exception]
    assert "1 of 3 layers are already measured in this model's journal" in " ".join(c.value for c in app.caption)
    assert [chart.key for chart in app.get("plotly_chart")] == ["sensitivity_journaled"]
    app.button(key="sensitivity_run").click().run()
    assert not app.exception, [e.value for e in app.exception]
    [frame] = app.session_state["sensitivity_runs"].values()
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    assert points.finished == 2 * POINTS_PER_LAYER  # the two layers the journal lacked
