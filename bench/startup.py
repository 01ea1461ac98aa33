"""Start-up cost: how long until the engine answers, against ``import torch`` in the same run.

Each command runs in a fresh Python process, in a fresh clone of this repository's HEAD with
no bytecode cache (``PYTHONDONTWRITEBYTECODE=1``), so every run compiles and imports as a
first-time user's would. The commands run in turns (one round = each command once), so a
slow moment on this machine hits all of them alike; each figure is the median of the rounds.

    python bench/startup.py [--rounds 5]

Targets (issue 10): ``import compression`` ≤ 1.3× ``import torch``; ``python -m compression
models`` ≤ 1.6×. ``import compression.compress`` (the kernel: recipe, pruning, quantization,
packing) is shown beside them, since the package's lazy face alone imports nothing heavy.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER = "import torch"
COMMANDS = {
    PEER: [sys.executable, "-c", "import torch"],
    "import compression": [sys.executable, "-c", "import compression"],
    "import compression.compress": [sys.executable, "-c", "import compression.compress"],
    "python -m compression models": [sys.executable, "-m", "compression", "models"],
    "python -m compression info mlp": [sys.executable, "-m", "compression", "info", "mlp"],
}
TARGETS = {"import compression": 1.3, "python -m compression models": 1.6}


def fresh_clone(folder: Path) -> Path:
    """A clone of HEAD: no ``__pycache__`` and no files but the committed ones."""
    clone = folder / "clone"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    return clone


def seconds(command: list[str], cwd: Path) -> float:
    environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=environment, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        clone = fresh_clone(Path(folder))
        for command in COMMANDS.values():  # once untimed: the OS file cache holds torch after it
            seconds(command, clone)
        times: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for _ in range(args.rounds):
            for name, command in COMMANDS.items():
                times[name].append(seconds(command, clone))
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"wall time, median of {args.rounds} fresh processes (fresh clone, no bytecode cache)")
    for name, values in times.items():
        spread = f"{min(values):.2f}–{max(values):.2f}"
        print(f"  {name:<32} {medians[name]:6.2f} s  [{spread}]")
    print(f"ratios against `{PEER}` ({medians[PEER]:.2f} s), same run:")
    for name in COMMANDS:
        if name == PEER:
            continue
        ratio = medians[name] / medians[PEER]
        target = f"  (target ≤ {TARGETS[name]}x: {'met' if ratio <= TARGETS[name] else 'NOT met'})" if name in TARGETS else ""
        print(f"  {name:<32} {ratio:5.2f}x{target}")


if __name__ == "__main__":
    main()
