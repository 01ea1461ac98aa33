"""Executors and journals: one sweep or sensitivity table, and one searched amount, wherever the
points run, and no finished point lost.

The Ray tests start their own cluster (``ray start --head`` bound to 127.0.0.1, no dashboard,
two CPUs, its logs in a temporary folder) and stop exactly its processes after; they are
skipped where Ray is not installed (``pip install -r requirements-ray.txt``).
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from compression.cli import EXIT_BAD_INPUT, main
from compression.errors import CompressionError, ModelLoadError, RecipeError
from compression.io.loading import load_model
from compression.recipe import Recipe
from compression.workflows.executor import Executor
from compression.workflows.executors import executor_named
from compression.workflows.journal import Journal, PointKey
from compression.workflows.latency.timing import torch_threads
from compression.workflows.local_executor import LocalExecutor
from compression.workflows.layer_scoring import LayerScorer
from compression.workflows.measurement import PointMeasurement, measure
from compression.workflows.model_source import ModelSource, model_source
from compression.workflows.search import search_sparsity
from compression.workflows.sensitivity import sensitivity, single_layer_recipe
from compression.workflows.sweep import measure_recipe, sweep

ROOT = Path(__file__).resolve().parents[1]
HAS_RAY = importlib.util.find_spec("ray") is not None
# Ray puts a node on its outward address unless told it is a one-machine cluster: then 127.0.0.1.
# Token authentication off: `ray start` turns it on wherever ~/.ray/auth_token exists (any local
# ray.init() writes one), and a driver given an explicit address then connects without a token.
RAY_ENVIRONMENT = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
                   "RAY_AUTH_MODE": "disabled"}
GRIDS = {"mlp": {"amounts": [0, 0.5, 0.9], "bits": [32, 4]}, "minilm": {"amounts": [0.5], "bits": [32, 8]}}
SIZE_COLUMNS = ["dense_fp32_bytes", "encoded_bytes", "file_bytes"]


def assert_same_table(table: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Sizes exact, metrics equal to 1e-6 relative, nothing else in the table."""
    assert list(table.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(table[SIZE_COLUMNS], expected[SIZE_COLUMNS], check_exact=True)
    pd.testing.assert_frame_equal(table, expected, rtol=1e-6, atol=0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The in-process sweeps on one thread, as the workers run: the machine's cores are shared,
    and torch waits at every parallel region for a core another process holds."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple]:
    """(model, its source) by name, loaded on first use; MiniLM on 8 sentences, so that a
    point takes seconds, not a minute."""

    @functools.cache
    def model(name: str) -> tuple:
        data = None
        if name == "minilm":
            sentences = (ROOT / "sample_models" / "corpus.txt").read_text(encoding="utf-8").splitlines()[:8]
            data = tmp_path_factory.mktemp("minilm") / "sentences.txt"
            data.write_text("\n".join(sentences) + "\n", encoding="utf-8")
        loaded = load_model(name, data)
        return loaded, model_source(loaded, name, data)

    return model


@pytest.fixture(scope="module")
def inline_table(models: Callable[[str], tuple]) -> Callable[[str], pd.DataFrame]:
    """The table of the in-process sweep, by model name, computed on first use."""
    return functools.cache(lambda name: sweep(models(name)[0], **GRIDS[name]))


@pytest.fixture(scope="module")
def local_pool():
    with LocalExecutor(workers=2) as pool:
        yield pool


@pytest.fixture(scope="module")
def ray_cluster() -> dict:
    """A local Ray cluster of this test module: its address and its processes' session."""
    if not HAS_RAY:
        pytest.skip("Ray is not installed (pip install -r requirements-ray.txt)")
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay short
    head = subprocess.run(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", "--port=0", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
        env={**os.environ, **RAY_ENVIRONMENT}, capture_output=True, text=True, start_new_session=True, timeout=120,
    )
    session = head.returncode == 0 and _session_of(Path(temp))
    try:
        assert head.returncode == 0, head.stdout + head.stderr
        with pytest.MonkeyPatch.context() as patch:
            for name, value in RAY_ENVIRONMENT.items():
                patch.setenv(name, value)  # read when ray is first imported, in this process too
            yield {"address": (Path(temp) / "ray_current_cluster").read_text().strip(), "session": session}
    finally:
        if session:
            _stop_session(session)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_executor(ray_cluster: dict):
    with executor_named("ray", address=ray_cluster["address"]) as executor:
        yield executor


@pytest.mark.parametrize("name", ["mlp", "minilm"])
def test_a_local_pool_gives_the_inline_table(name, models, inline_table, local_pool) -> None:
    assert_same_table(sweep(models(name)[1], **GRIDS[name], executor=local_pool), inline_table(name))


@pytest.mark.parametrize("name", ["mlp", "minilm"])
def test_ray_gives_the_inline_table(name, models, inline_table, ray_executor) -> None:
    assert_same_table(sweep(models(name)[1], **GRIDS[name], executor=ray_executor), inline_table(name))


def test_a_killed_ray_worker_is_replaced_and_the_sweep_completes_with_every_point_once(
    ray_cluster, ray_executor, tmp_path
) -> None:
    model = load_model("simplenet")  # a model the workers have not loaded: its first points run for a while
    grid = {"amounts": [0, 0.5, 0.9], "bits": [32, 8]}
    killed: list[int] = []

    def kill_a_running_worker() -> None:
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            for pid in _processes_in(ray_cluster["session"], b"ray::measure_point"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.005)

    killer = threading.Thread(target=kill_a_running_worker)
    killer.start()
    journal = Journal(tmp_path / "sweep.jsonl")
    table = sweep(model_source(model, "simplenet"), **grid, executor=ray_executor, journal=journal)
    killer.join()
    assert killed, "no worker was seen running a point"
    assert_same_table(table, sweep(model, **grid))
    lines = journal.path.read_text().splitlines()
    assert len(lines) == len(set(lines)) == len(table)


def test_an_interrupted_sweep_resumes_and_computes_only_the_missing_points(tmp_path) -> None:
    journal, table = tmp_path / "sweep.jsonl", tmp_path / "sweep.csv"
    amounts = ",".join(f"{step / 10:g}" for step in range(10))
    command = [sys.executable, "-m", "compression", "sweep", "mlp", "--amounts", amounts, "--bits", "32,4",
               "--executor", "inline", "--journal", str(journal), "--csv", str(table)]
    driver = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        while driver.poll() is None and not (journal.exists() and b"\n" in journal.read_bytes()):
            time.sleep(0.01)
        assert driver.poll() is None, "the sweep ended before it could be interrupted"
        os.killpg(driver.pid, signal.SIGKILL)  # the driver (and anything it started) dies mid-sweep
    finally:
        driver.wait()
    with journal.open("ab") as handle:
        handle.write(b'{"key": {"task": "sw')  # as a crash mid-write leaves it
    before = journal.read_bytes().rpartition(b"\n")[0] + b"\n"
    assert not table.exists()

    resumed = subprocess.run([*command, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    after = journal.read_bytes()
    assert after.startswith(before)  # the lines already there are never rewritten
    keys = [json.loads(line)["key"]["recipe"] for line in after.decode().splitlines()]
    assert len(keys) == len(set(keys)) == 20  # every point once: none computed twice
    expected = sweep(load_model("mlp"), [step / 10 for step in range(10)], [32, 4])
    assert_same_table(pd.read_csv(table), pd.read_csv(io.StringIO(expected.to_csv(index=False))))


def test_a_journal_ignores_a_torn_last_line_and_cuts_it_before_the_next(tmp_path) -> None:
    journal = Journal(tmp_path / "points.jsonl")
    first, second = (PointKey("sweep", "m", "d", f'{{"n": {n}}}') for n in (1, 2))
    journal.append(first, {"value": 1.0})
    with journal.path.open("ab") as handle:
        handle.write(b'{"key": {"task"')
    assert journal.read() == {first: {"value": 1.0}}
    Journal(journal.path).append(second, {"value": 2.0})
    assert Journal(journal.path).read() == {first: {"value": 1.0}, second: {"value": 2.0}}


def test_a_journal_refuses_a_damaged_line_before_the_last(tmp_path) -> None:
    path = tmp_path / "points.jsonl"
    path.write_bytes(b"not json\n{}\n")
    with pytest.raises(CompressionError, match="line 1 is not a journal entry"):
        Journal(path).read()


def test_a_sweep_takes_the_points_its_journal_holds(models, tmp_path) -> None:
    model, _ = models("mlp")
    journal = Journal(tmp_path / "points.jsonl")
    first = sweep(model, [0, 0.5], [8], journal=journal)
    computed = []
    second = sweep(model, [0, 0.5, 0.9], [8], journal=journal, progress=lambda done, total, key: computed.append(key))
    assert computed == ["", second["recipe"].iloc[-1]]  # only the new point ran
    assert_same_table(second.iloc[:2], first)
    assert len(journal.read()) == 3


def test_a_worker_refuses_a_model_whose_fingerprint_differs_from_the_drivers(models) -> None:
    _, source = models("mlp")
    other = ModelSource(source.source, source.data, "0" * 16, source.evaluation)
    with pytest.raises(ModelLoadError, match="other weights"):
        list(Executor().run(measure_recipe, other, [Recipe()]))


def test_a_pool_asks_for_the_models_source(models) -> None:
    with pytest.raises(RecipeError, match="model_source"):
        sweep(models("mlp")[0], [0], [8], executor="local")


@pytest.mark.parametrize("command", [["sweep", "--amounts", "0", "--bits", "8"], ["sensitivity"],
                                     ["search", "--tolerance", "0.01"]], ids=lambda command: command[0])
def test_the_command_line_says_how_to_add_ray_when_it_is_missing(command, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as where it is not installed
    status = main([command[0], "mlp", *command[1:], "--executor", "ray"])
    err = capsys.readouterr().err
    assert status == EXIT_BAD_INPUT and err.count("\n") == 1
    assert "pip install -r requirements-ray.txt" in err


def test_the_command_line_refuses_to_extend_a_journal_without_resume(capsys, tmp_path) -> None:
    journal = tmp_path / "points.jsonl"
    journal.write_text('{"key": {}, "measurement": {}}\n')
    status = main(["sweep", "mlp", "--amounts", "0", "--bits", "8", "--journal", str(journal)])
    assert status == EXIT_BAD_INPUT and "--resume" in capsys.readouterr().err


# --- sensitivity and the tolerance search on executors ----------------------------------------

SCANS = {"mlp": {"amounts": [0, 0.5, 0.9], "bits": [32, 4]},
         "minilm": {"amounts": [0.5], "bits": [8], "layers": ["transformer.encoder.layer.0.attention.self.query.weight",
                                                              "transformer.encoder.layer.5.output.dense.weight"]}}
SCAN_SIZES = ["encoded_bytes", "file_bytes"]


class RecordingExecutor(Executor):
    """The inline executor, noting every recipe it is asked to run."""

    def __init__(self) -> None:
        self.asked: list[Recipe] = []

    def run(self, task, model, recipes):
        self.asked.extend(recipes)
        return super().run(task, model, recipes)


def assert_same_scan(table: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(table.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(table[SCAN_SIZES], expected[SCAN_SIZES], check_exact=True)
    pd.testing.assert_frame_equal(table, expected, rtol=1e-6, atol=0)


@pytest.fixture(scope="module")
def inline_scan(models: Callable[[str], tuple]) -> Callable[[str], pd.DataFrame]:
    """The in-process sensitivity table (the fast scorer), by model name, computed on first use."""
    return functools.cache(lambda name: sensitivity(models(name)[0], **SCANS[name]))


@pytest.mark.parametrize("name", ["mlp", "minilm"])
def test_a_sensitivity_scan_on_a_local_pool_gives_the_inline_table(name, models, inline_scan, local_pool) -> None:
    assert_same_scan(sensitivity(models(name)[1], **SCANS[name], executor=local_pool), inline_scan(name))


def test_a_sensitivity_scan_on_ray_gives_the_inline_table(models, inline_scan, ray_executor) -> None:
    assert_same_scan(sensitivity(models("mlp")[1], **SCANS["mlp"], executor=ray_executor), inline_scan("mlp"))


def test_a_worker_builds_one_layer_scorer_and_keeps_it_for_every_point_it_is_sent() -> None:
    model = load_model("mlp")  # this test's own, standing for a worker's: the scorer goes in its cache

    def scorers() -> list:
        return [value for value in model.cache.values() if isinstance(value, LayerScorer)]

    task = PointMeasurement(fast=True)
    task(model, Recipe.from_dict(single_layer_recipe(model, "fc2.weight", prune={"amount": 0.5})))
    assert scorers() == []  # in the driver, the scorer is the task's own, gone with it
    for amount in (0.5, 0.9):
        shipped = pickle.loads(pickle.dumps(task))  # what a worker receives: the task without its scorer
        recipe = Recipe.from_dict(single_layer_recipe(model, "fc2.weight", prune={"amount": amount}))
        row, plain = shipped(model, recipe), measure(model, recipe)
        assert row["file_bytes"] == plain["file_bytes"] and row["value"] == pytest.approx(plain["value"], rel=1e-6)
    assert len(scorers()) == 1


def test_a_sensitivity_scan_takes_the_points_its_journal_holds(models, inline_scan, local_pool, tmp_path) -> None:
    journal = Journal(tmp_path / "scan.jsonl")
    sensitivity(models("mlp")[1], **SCANS["mlp"], executor=local_pool, journal=journal)
    again = RecordingExecutor()
    table = sensitivity(models("mlp")[0], **SCANS["mlp"], executor=again, journal=journal)
    assert again.asked == [] and len(journal.read()) == 3 * 4  # amount 0 and bits 32: one point per layer
    assert_same_scan(table, inline_scan("mlp"))


def test_a_journal_keys_a_scan_on_its_first_rows_apart_from_one_on_all(models, tmp_path) -> None:
    journal = Journal(tmp_path / "scan.jsonl")
    grid = {"amounts": [0.5], "bits": [], "layers": ["fc3.weight"]}
    sensitivity(models("mlp")[0], **grid, journal=journal)
    again = RecordingExecutor()
    sensitivity(models("mlp")[0], **grid, samples=100, executor=again, journal=journal)
    assert len(again.asked) == 1 and len(journal.read()) == 2


def test_a_k_ary_search_on_two_workers_finds_bisections_amount_in_fewer_rounds(models, local_pool) -> None:
    bisection = search_sparsity(models("mlp")[0], tolerance=0.01)
    k_ary = search_sparsity(models("mlp")[1], tolerance=0.01, executor=local_pool)
    assert (k_ary.amount, k_ary.rejected_above) == (bisection.amount, bisection.rejected_above)
    assert k_ary.rounds < bisection.rounds == bisection.evaluations
    assert k_ary.drop == pytest.approx(bisection.drop, rel=1e-6, abs=0)


@pytest.mark.parametrize("workflow", ["sensitivity", "search_sparsity"])
def test_an_unknown_executor_is_refused_with_the_names_it_could_be(workflow, models) -> None:
    run = {"sensitivity": sensitivity, "search_sparsity": functools.partial(search_sparsity, tolerance=0.01)}[workflow]
    with pytest.raises(RecipeError, match=r"executor must be one of 'inline', 'local', 'ray'; got 'dask'"):
        run(models("mlp")[0], executor="dask")
    with pytest.raises(RecipeError, match=r"executor must be an Executor or one of .*; got 2"):
        run(models("mlp")[0], executor=2)


def test_the_sensitivity_command_resumes_its_journal(tmp_path, capsys) -> None:
    journal, first, second = tmp_path / "scan.jsonl", tmp_path / "first.csv", tmp_path / "second.csv"
    command = ["sensitivity", "mlp", "--amounts", "0,0.9", "--bits", "4", "--executor", "inline",
               "--journal", str(journal)]
    assert main([*command, "--csv", str(first)]) == 0
    lines = journal.read_bytes()
    assert main([*command, "--csv", str(second), "--resume"]) == 0
    assert journal.read_bytes() == lines  # every point came from the journal
    assert first.read_text() == second.read_text()


def _session_of(temp: Path) -> int:
    """The session of the cluster whose logs are under ``temp``: ``ray start``'s, which its
    daemons and workers keep (workers have process groups of their own)."""
    for pid in _pids():
        if f"--log_dir={temp}/".encode() in _read(pid, "cmdline"):
            return os.getsid(pid)
    raise AssertionError(f"no Ray GCS server writes under {temp}")


def _processes_in(session: int, title: bytes = b"") -> list[int]:
    found = []
    for pid in _pids():
        try:
            if os.getsid(pid) == session and _read(pid, "cmdline").startswith(title):
                found.append(pid)
        except ProcessLookupError:
            continue
    return found


def _stop_session(session: int) -> None:
    """SIGKILL to the cluster's processes (a test cluster has nothing to save), then wait."""
    for pid in _processes_in(session):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _processes_in(session) and time.monotonic() < deadline:
        time.sleep(0.1)


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _read(pid: int, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""
