"""Train the digits models reproducibly and record their held-out accuracy.

``python -m sample_models.train`` rewrites ``sample_models/weights/``; with ``--check`` it
retrains in memory and exits non-zero unless the result matches the committed files. Training
is seeded, single-threaded and uses deterministic kernels, so two runs give identical files.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from sample_models.architectures import DIGITS_MODELS, build_architecture
from sample_models.digits import DigitsSplit, digits_split
from sample_models.trained import ACCURACY_FILE, WEIGHTS_DIR, weights_file

SEED = 0
CHECK_ATOL = 1e-5


@dataclass(frozen=True)
class Schedule:
    """Adam with seeded mini-batch shuffling for a fixed number of epochs."""

    epochs: int
    lr: float
    batch_size: int


SCHEDULES: dict[str, Schedule] = {
    "simplenet": Schedule(epochs=30, lr=2e-3, batch_size=32),
    "mlp": Schedule(epochs=30, lr=1e-3, batch_size=32),
    "bn_cnn": Schedule(epochs=20, lr=2e-3, batch_size=32),
}


def make_deterministic() -> None:
    """Fix the global torch state that training results depend on."""
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def train(name: str) -> nn.Module:
    """Train the digits model ``name`` from a seeded initialisation; returned in eval mode."""
    schedule = SCHEDULES[name]
    torch.manual_seed(SEED)
    model = build_architecture(name)
    split = digits_split(name)
    generator = torch.Generator().manual_seed(SEED)
    optimizer = torch.optim.Adam(model.parameters(), lr=schedule.lr)
    model.train()
    for _ in range(schedule.epochs):
        order = torch.randperm(len(split.y_train), generator=generator)
        for batch in order.split(schedule.batch_size):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(split.x_train[batch]), split.y_train[batch])
            loss.backward()
            optimizer.step()
    return model.eval()


def accuracy(model: nn.Module, split: DigitsSplit) -> float:
    """Fraction of the held-out split that ``model`` classifies correctly."""
    with torch.no_grad():
        predicted = model(split.x_test).argmax(dim=1)
    return (predicted == split.y_test).sum().item() / len(split.y_test)


def _mismatches(name: str, model: nn.Module, committed_accuracy: float | None) -> list[str]:
    """What differs between a freshly trained ``model`` and the committed files."""
    committed = load_file(weights_file(name))
    trained = model.state_dict()
    if committed.keys() != trained.keys():
        return [f"{name}: tensor names differ from {weights_file(name)}"]
    problems = [
        f"{name}.{key}: differs from the committed weights by more than {CHECK_ATOL}"
        for key, tensor in trained.items()
        if not torch.allclose(tensor, committed[key], atol=CHECK_ATOL)
    ]
    measured = accuracy(model, digits_split(name))
    if measured != committed_accuracy:
        problems.append(f"{name}: accuracy {measured} != committed {committed_accuracy}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true",
        help="retrain in memory and fail unless the result matches the committed files",
    )
    args = parser.parse_args(argv)
    make_deterministic()
    committed_accuracies = json.loads(ACCURACY_FILE.read_text()) if args.check else {}
    accuracies: dict[str, float] = {}
    problems: list[str] = []
    for name in DIGITS_MODELS:
        start = time.perf_counter()
        model = train(name)
        accuracies[name] = accuracy(model, digits_split(name))
        print(f"{name}: test accuracy {accuracies[name]:.4f} "
              f"({time.perf_counter() - start:.1f} s)")
        if args.check:
            problems += _mismatches(name, model, committed_accuracies.get(name))
        else:
            WEIGHTS_DIR.mkdir(exist_ok=True)
            save_file(model.state_dict(), weights_file(name))
    if args.check:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    ACCURACY_FILE.write_text(json.dumps(accuracies, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
