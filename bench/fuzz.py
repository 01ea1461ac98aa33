"""Fuzz the engine: many random cases (small model × recipe), every invariant checked per case.

Run ``python bench/fuzz.py`` from the repository root (10,000 cases; ``--cases N``,
``--seed S``; ``--recompress`` also compresses each case again from its canonical JSON).

The cases and the check are ``tests/fuzz_cases.py``'s, the same that ``tests/test_fuzz.py``
runs 400 at a time: random stacks of Linear/Conv1d/Conv2d layers (single weights, 1×1
kernels, grouped convs, all-zero, tied, huge and tiny weights), and random recipes over every
option of the recipe, one in eight with an invalid field. A case passes when ``compress``
succeeds with every invariant holding, or refuses an invalid recipe with a CompressionError.

Hypothesis draws the cases (seeded: the same ``--seed`` gives the same cases). A failure does
not stop the run: the first case of each kind of failure (exception type and message, tensor
names and numbers left out) is shrunk by hypothesis to a minimal reproducer, later ones are
only counted, and the run goes on with the cases it still owes, from the next seed. It prints
the cases run, the outcomes, the counts per prune method, scheme, granularity, bits and so on,
each failure with its reproducer, and the seconds taken; the exit status is 1 on any failure.
"""
from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "tests"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings  # noqa: E402

import fuzz_cases  # noqa: E402

# The order in which label groups are printed.
LABEL_GROUPS = ("form", "method", "amount", "threshold", "scope", "scheme", "granularity", "symmetric", "bits", "format", "overrides")


@dataclass
class Failure:
    """One kind of failure: how often it happened and its smallest case."""

    kind: tuple[str, str]
    count: int
    model: fuzz_cases.ModelSpec
    recipe: dict[str, Any] | str
    error: BaseException


def failure_kind(error: BaseException) -> tuple[str, str]:
    """Exception type and message, without the tensor name, the details and the numbers.

    The checks word their messages "<tensor>: <what broke> (<details>)".
    """
    message = str(error).splitlines()[0] if str(error) else ""
    if isinstance(error, AssertionError):
        message = re.split(r" \(|: ", re.sub(r"^[\w.]+: ", "", message), maxsplit=1)[0]
    message = re.sub(r"\d+(\.\d+)?(e[+-]?\d+)?", "#", message)[:160]
    if not isinstance(error, AssertionError):  # a crash: where it happened says more than the text
        frames = traceback.extract_tb(error.__traceback__)
        where = next((f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames) if "/compression/" in f.filename), "")
        message = f"{where} {message}".strip()
    return type(error).__name__, message


def run(cases: int, first_seed: int, recompress: bool) -> tuple[int, collections.Counter, dict, int]:
    """Check ``cases`` cases; returns the number run, label counts, failures by kind, seeds used."""
    labels: collections.Counter = collections.Counter()
    failures: dict[tuple[str, str], Failure] = {}
    done = 0
    round_seed = first_seed
    while done < cases:
        shrinking: dict[str, Any] = {"kind": None}

        @seed(round_seed)
        @settings(
            max_examples=cases - done,
            database=None,
            deadline=None,
            derandomize=False,
            phases=[Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
            verbosity=Verbosity.quiet,
        )
        @given(fuzz_cases.cases())
        def body(case: tuple[fuzz_cases.ModelSpec, dict[str, Any] | str]) -> None:
            nonlocal done
            model, recipe = case
            if shrinking["kind"] is not None:  # shrinking: fail again only on the same kind of failure
                try:
                    fuzz_cases.check_case(model, recipe, recompress)
                except Exception as error:
                    kind = failure_kind(error)
                    if kind == shrinking["kind"]:
                        failures[kind].model, failures[kind].recipe, failures[kind].error = model, recipe, error
                        raise
                    failures.setdefault(kind, Failure(kind, 0, model, recipe, error))  # seen only while shrinking
                return
            done += 1
            labels.update(fuzz_cases.case_labels(recipe))
            try:
                outcome = fuzz_cases.check_case(model, recipe, recompress)
            except Exception as error:
                labels["outcome:failed"] += 1
                kind = failure_kind(error)
                if kind in failures:
                    failures[kind].count += 1
                    return
                failures[kind] = Failure(kind, 1, model, recipe, error)
                shrinking["kind"] = kind
                raise
            labels[f"outcome:{outcome.outcome}"] += 1
            if outcome.outcome == "refused":
                labels["refusal:" + re.sub(r"\d+(\.\d+)?", "#", outcome.message)[:90]] += 1
            if done % 1000 == 0:
                print(f"  {done} cases, {labels['outcome:failed']} failed", flush=True)

        round_seed += 1
        try:
            body()
        except Exception:  # a new kind of failure, now shrunk: go on with the cases still owed
            continue
        break  # every case owed was run (or hypothesis found nothing more to draw)
    return done, labels, failures, round_seed - first_seed


def print_counts(labels: collections.Counter) -> None:
    groups: dict[str, list[tuple[str, int]]] = collections.defaultdict(list)
    for label, count in labels.items():
        group, _, value = label.partition(":")
        groups[group].append((value or group, count))
    for group in LABEL_GROUPS:
        if group in groups:
            values = sorted(groups[group], key=lambda item: (-item[1], item[0]))
            print(f"  {group:<12} " + ", ".join(f"{value} {count}" for value, count in values))
    refusals = sorted(groups.get("refusal", []), key=lambda item: -item[1])
    if refusals:
        print("most common refusals:")
        for message, count in refusals[:8]:
            print(f"  {count:>5}  {message}")


def print_failure(failure: Failure) -> None:
    recipe = failure.recipe if isinstance(failure.recipe, str) else json.dumps(failure.recipe)
    count = f"{failure.count} x" if failure.count else "seen while shrinking another failure:"
    print(f"\n{count} {failure.kind[0]}: {failure.kind[1]}")
    print(f"  message:  {str(failure.error).splitlines()[0] if str(failure.error) else ''}")
    print(f"  model:    {failure.model.describe()}")
    print(f"  recipe:   {recipe}")
    print(f"  reproduce (in tests/): fuzz_cases.check_case({failure.model!r}, {failure.recipe!r})")
    frames = traceback.format_exception(failure.error)
    print("  " + "  ".join(frames[-3:]).rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000, help="cases to run (default 10,000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first round of cases (default 0)")
    parser.add_argument("--recompress", action="store_true", help="also compress each case again from its canonical JSON")
    args = parser.parse_args()
    # Warnings that are expected on these inputs (k-means on fewer distinct values than
    # clusters, float32 overflow inside scikit-learn on weights of 1e30) would drown the report.
    warnings.simplefilter("ignore")

    start = time.perf_counter()
    done, labels, failures, rounds = run(args.cases, args.seed, args.recompress)
    elapsed = time.perf_counter() - start

    failed = labels["outcome:failed"]
    print(f"cases: {done} (seed {args.seed}, {rounds} round{'s' if rounds != 1 else ''})")
    print(f"outcomes: compressed {labels['outcome:compressed']}, refused {labels['outcome:refused']}, failed {failed}")
    print("counts (base recipe sections; a section left out counts as its default):")
    print_counts(labels)
    for failure in sorted(failures.values(), key=lambda f: -f.count):
        print_failure(failure)
    print(f"\nsummary: {done} cases, {failed} failures in {len(failures)} kind{'s' if len(failures) != 1 else ''}, "
          f"{elapsed:.1f} s ({1000 * elapsed / max(done, 1):.1f} ms per case)")
    sys.exit(1 if failures or done < args.cases else 0)


if __name__ == "__main__":
    main()
