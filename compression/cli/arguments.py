"""What the commands read from their arguments: number lists, recipes, models, output paths,
executors and journals.

Every check here fails with ``CommandError``, which the command line reports like bad input:
one line on stderr, exit status 2, no file written.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import compression
from compression.errors import CompressionError
from compression.io.input_specs import parse_input_shape
from compression.model_inputs import guessed_sizes
from compression.workflows.executor import Executor
from compression.workflows.executors import executor_named
from compression.workflows.journal import Journal
from compression.workflows.model_source import ModelSource, model_source


class CommandError(Exception):
    """A problem with the command line itself (paths, options), reported like bad input."""


def parse_floats(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def parse_ints(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def parse_workers(text: str) -> int:
    try:
        workers = int(text)
    except ValueError:
        workers = 0
    if workers < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return workers


def parse_input_shape_argument(text: str) -> tuple[str | None, tuple[int, ...]]:
    """``--input-shape NAME=1,3,320,320`` (or the sizes alone) as (name, shape)."""
    try:
        return parse_input_shape(text)
    except CompressionError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def read_recipe(value: str) -> compression.Recipe:
    """A recipe from a JSON file, or inline JSON when the value starts with '{'."""
    if value.lstrip().startswith("{"):
        return compression.Recipe.from_json(value)
    path = Path(value)
    if not path.is_file():
        raise CommandError(f"recipe file {value!r} does not exist.")
    return compression.Recipe.from_json(path.read_text(encoding="utf-8"))


def load(args: argparse.Namespace) -> compression.LoadedModel:
    """The command's model, with its ``--data`` and ``--input-shape`` where the command takes them.

    Input sizes the loader guessed are noted on standard output (not with --json, whose output
    is the JSON alone).
    """
    model = compression.load_model(args.model, getattr(args, "data", None), input_shapes=_input_shapes(args),
                                   family=args.family)
    guessed = guessed_sizes(model.input_specs)
    if guessed and not getattr(args, "json", False):
        print(f"note: guessed input sizes {guessed} (set them with --input-shape)")
    return model


def source_of(args: argparse.Namespace, model: compression.LoadedModel) -> ModelSource:
    """Where ``load(args)`` read ``model`` from, for workers that load it themselves."""
    return model_source(model, args.model, getattr(args, "data", None), input_shapes=_input_shapes(args),
                        family=args.family)


def executor_of(args: argparse.Namespace) -> Executor:
    """The executor ``--executor``, ``--workers`` and ``--address`` name."""
    return executor_named(args.executor, workers=args.workers, address=args.address)


def _input_shapes(args: argparse.Namespace) -> dict[str | None, tuple[int, ...]] | None:
    shapes: dict[str | None, tuple[int, ...]] = {}
    for name, shape in getattr(args, "input_shape", None) or ():
        if name in shapes:
            raise CommandError(f"--input-shape gives input {name or 'of the model'!r} twice; give each input once.")
        shapes[name] = shape
    return shapes or None


def _inputs_of(args: argparse.Namespace) -> list[Path]:
    paths = [Path(p) for p in (args.model, getattr(args, "data", None), getattr(args, "recipe", None)) if p]
    if getattr(args, "file", None):
        paths.append(Path(args.file))
    return [path.resolve() for path in paths if path.exists()]


def check_output(path: str | None, args: argparse.Namespace) -> Path | None:
    """An output path that is not an input, and not an existing file unless --force."""
    if path is None:
        return None
    target = Path(path)
    if target.resolve() in _inputs_of(args):
        raise CommandError(f"output {path!r} is also an input; choose another name.")
    if target.is_dir():
        raise CommandError(f"output {path!r} is a directory; give a file name.")
    if target.exists() and not args.force:
        raise CommandError(f"output {path!r} already exists; pass --force to replace it.")
    if not target.parent.resolve().is_dir():
        raise CommandError(f"output folder {str(target.parent)!r} does not exist.")
    return target


def check_journal(args: argparse.Namespace) -> Journal | None:
    """The ``--journal`` to append to: a new file, or with ``--resume`` one to continue."""
    if args.journal is None:
        if args.resume:
            raise CommandError("--resume continues a journal: give it with --journal PATH.")
        return None
    target = Path(args.journal)
    if target.resolve() in _inputs_of(args) or (args.csv is not None and target.resolve() == Path(args.csv).resolve()):
        raise CommandError(f"journal {args.journal!r} is also an input or an output; choose another name.")
    if target.is_dir():
        raise CommandError(f"journal {args.journal!r} is a directory; give a file name.")
    if not target.parent.resolve().is_dir():
        raise CommandError(f"journal folder {str(target.parent)!r} does not exist.")
    if target.exists() and target.stat().st_size and not args.resume:
        raise CommandError(f"journal {args.journal!r} already holds points; pass --resume to continue it, "
                           "or give another path.")
    return Journal(target)
