"""One sweep grid on every executor: inline, the local pool at 1 and 2 workers, a local Ray cluster.

The grid (MiniLM, amounts × bits × schemes: 20 recipes by default) runs through
``compression.sweep``: inline in this process (torch on one thread, the arithmetic of a
worker), on a fresh local pool of 1 and of 2 spawned workers, on a Ray cluster of 2 CPUs that
this script starts in its own process (bound to 127.0.0.1, no dashboard, its logs in a
temporary folder) and stops after, and inline again: the speed-ups are against the mean of the
two inline runs, since other processes' load drifts over the minutes the runs take. A fresh pool or cluster each time, so the wall time holds
what a user pays for one sweep: the workers' start, their imports and their loading of the
model. ``--warm`` runs each grid again on the same pool, its models loaded: the steady cost.

Printed per run: wall seconds, the seconds the tasks themselves ran (timed in the workers,
``Executor.task_seconds``), the speed-up against inline, and the overhead per task,
(wall − task seconds / workers) / tasks: what running a point on that executor costs beyond
the point. Every table is checked against inline's (sizes exact, metrics to 1e-6 relative).
The load average is printed at the start and at the end: on a shared machine the other
processes take cores from the workers, and the speed-up with them.

    python bench/sweep_scale.py [--sentences 64] [--amounts 0.2,0.4,0.6,0.8,0.9] [--bits 8,4]
                                [--schemes linear,pow2] [--warm] [--no-ray]
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compression.io.loading import load_model  # noqa: E402
from compression.workflows.executor import Executor  # noqa: E402
from compression.workflows.latency.timing import torch_threads  # noqa: E402
from compression.workflows.local_executor import LocalExecutor  # noqa: E402
from compression.workflows.model_source import ModelSource, model_source  # noqa: E402
from compression.workflows.sweep import sweep  # noqa: E402

SIZES = ["dense_fp32_bytes", "encoded_bytes", "file_bytes"]
METRICS = ["value", "baseline_value", "sparsity"]
RAY_CPUS = 2


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",")]


def difference(table: pd.DataFrame, reference: pd.DataFrame) -> float:
    """The largest relative difference of the metrics; an AssertionError where the tables differ
    beyond 1e-6 relative, or where any size, recipe or column differs at all."""
    assert list(table.columns) == list(reference.columns)
    pd.testing.assert_frame_equal(table[SIZES], reference[SIZES], check_exact=True)
    pd.testing.assert_frame_equal(table, reference, rtol=1e-6, atol=0)
    scale = reference[METRICS].abs().where(reference[METRICS] != 0, 1.0)
    return float(((table[METRICS] - reference[METRICS]).abs() / scale).to_numpy().max())


def timed_sweep(executor: Executor, model: ModelSource, grid: dict) -> tuple[pd.DataFrame, float, float]:
    """The table, the wall seconds and the seconds the tasks ran, for one sweep on ``executor``."""
    busy, start = executor.task_seconds, time.perf_counter()
    table = sweep(model, **grid, executor=executor)
    return table, time.perf_counter() - start, executor.task_seconds - busy


def ray_cluster() -> tuple[object, str]:
    """Ray, started in this process on 2 CPUs at 127.0.0.1, shipping this checkout's packages."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # else ray.init writes ~/.ray/auth_token, and every
    # later `ray start` on this machine asks for that token
    import ray

    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay short
    ray.init(num_cpus=RAY_CPUS, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             logging_level=logging.ERROR, _temp_dir=temp, object_store_memory=256 * 2**20,
             runtime_env={"py_modules": [str(ROOT / "compression"), str(ROOT / "sample_models")]})
    return ray, temp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=64, help="evaluation sentences of the corpus (default 64)")
    parser.add_argument("--amounts", type=floats, default=[0.2, 0.4, 0.6, 0.8, 0.9])
    parser.add_argument("--bits", type=lambda text: [int(part) for part in text.split(",")], default=[8, 4])
    parser.add_argument("--schemes", type=lambda text: text.split(","), default=["linear", "pow2"])
    parser.add_argument("--warm", action="store_true", help="run each pool's grid again, its models loaded")
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray cluster")
    args = parser.parse_args()
    print(f"load average at start: {load_average()} ({len(os.sched_getaffinity(0))} cores)", flush=True)

    folder = Path(tempfile.mkdtemp(prefix="sweep-scale-"))
    sentences = (ROOT / "sample_models" / "corpus.txt").read_text(encoding="utf-8").splitlines()[:args.sentences]
    data = folder / "sentences.txt"
    data.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    model = load_model("minilm", data)
    source = model_source(model, "minilm", data)
    grid = {"amounts": args.amounts, "bits": args.bits, "schemes": args.schemes}

    runs: list[tuple[str, int, float, float, int, float]] = []  # name, workers, wall, task s, tasks, difference

    def record(name: str, executor: Executor, reference: pd.DataFrame | None) -> pd.DataFrame:
        table, wall, busy = timed_sweep(executor, source, grid)
        gap = 0.0 if reference is None else difference(table, reference)
        runs.append((name, executor.workers, wall, busy, len(table), gap))
        print(f"{name:<14} {wall:7.1f} s wall  {busy:7.1f} s in tasks  ({len(table)} tasks)", flush=True)
        return table

    with torch_threads(1), Executor() as inline:
        reference = record("inline", inline, None)
    for workers in (1, 2):
        with LocalExecutor(workers) as pool:
            record(f"local {workers}", pool, reference)
            if args.warm:
                record(f"local {workers} warm", pool, reference)
    if not args.no_ray:
        from compression.workflows.ray_executor import RayExecutor

        ray, temp = ray_cluster()
        try:
            with RayExecutor(workers=RAY_CPUS) as cluster:
                record(f"ray {RAY_CPUS}", cluster, reference)
                if args.warm:
                    record(f"ray {RAY_CPUS} warm", cluster, reference)
        finally:
            ray.shutdown()
            shutil.rmtree(temp, ignore_errors=True)
    with torch_threads(1), Executor() as inline:
        record("inline again", inline, reference)
    shutil.rmtree(folder, ignore_errors=True)

    inline_wall = (runs[0][2] + runs[-1][2]) / 2  # the load drifts: inline before and after the others
    print(f"\nMiniLM on {args.sentences} sentences, {runs[0][4]} recipes "
          f"({len(args.amounts)} amounts x {len(args.bits)} bits x {len(args.schemes)} schemes):")
    print("speed-up: against the mean of the two inline runs")
    print(f"{'executor':<14} {'workers':>7} {'wall s':>8} {'task s':>8} {'speed-up':>8} {'overhead/task s':>15} "
          f"{'max rel. diff':>13}")
    for name, workers, wall, busy, tasks, gap in runs:
        overhead = (wall - busy / workers) / tasks
        print(f"{name:<14} {workers:>7} {wall:8.1f} {busy:8.1f} {inline_wall / wall:7.2f}x {overhead:15.2f} "
              f"{gap:13.1e}")
    print("every table the same as inline's (sizes exact, metrics to 1e-6 relative)")
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
