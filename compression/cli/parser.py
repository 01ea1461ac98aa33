"""The argument tree of ``python -m compression``: every command, its options and its handler.

Each command's parser records the options it declares (``CommandParser.options``), so the
dashboard's command lines (``command_lines.py``) are spelled from this tree, not by hand.
"""
from __future__ import annotations

import argparse
from typing import Callable, NoReturn

from compression.cli.arguments import parse_floats, parse_input_shape_argument, parse_ints, parse_workers
from compression.cli.compress_commands import (
    command_apply,
    command_eval,
    command_info,
    command_models,
    command_sweep,
    command_unpack,
)
from compression.cli.export_commands import command_export, command_fuse, command_shrink
from compression.cli.workflow_commands import command_agp, command_distill, command_search, command_sensitivity
from compression.io.families import FAMILIES
from compression.recipe import PRUNE_SCOPES, STRUCTURED_NORMS
from compression.workflows.distillation import DistillConfig
from compression.workflows.executors import EXECUTORS
from compression.workflows.gradual import AgpSchedule
from compression.workflows.onnx_scoring import INT8_MODES, NO_INT8

DATA_HELP = ("evaluation data: .npz with x, or one array per input named after it (and optional labels y); "
             "text for a text model (.txt one document per line, .jsonl a text field per line); "
             "a folder or .zip of images in class subfolders for an image classifier")
INPUT_SHAPE_HELP = ("sizes of an input an ONNX or .pt2 file leaves open (or of a TorchScript file's inputs), the batch first: images=1,3,320,320 "
                    "(repeatable; the name may be left out for a model with one input)")
VERBOSE_HELP = "let the libraries' own warnings and logs through to stderr"


class RefusingParser(argparse.ArgumentParser):
    """An argument parser that refuses bad arguments as the commands refuse bad input: one line
    on stderr, exit status 2, and where to look instead of argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}; see `{self.prog} --help`.\n")


class CommandParser(RefusingParser):
    """An argument parser that keeps each option it declares by destination (``dense_out``)."""

    def __init__(self, *args, **kwargs) -> None:
        self.options: dict[str, argparse.Action] = {}
        super().__init__(*args, **kwargs)
        self.options.pop("help", None)  # -h, which argparse adds to every parser
        # The global --verbose, taken after the command too; unset there, it keeps the global value.
        self.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
        self.options.pop("verbose")

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if action.option_strings:
            self.options[action.dest] = action
        return action


def add_executor_options(sub: CommandParser, same: str) -> None:
    """--executor, --workers, --address: where the command's evaluations run (``same``: what
    comes out the same from each)."""
    sub.add_argument("--executor", choices=EXECUTORS, default="local",
                     help="where the points run: inline (this process), local (a process per core), "
                          f"ray (a running Ray cluster); the same {same} from each")
    sub.add_argument("--workers", type=parse_workers,
                     help="processes (local) or tasks at once (ray); default: one per core, or the cluster's CPUs")
    sub.add_argument("--address", help="the Ray cluster's address, e.g. 10.0.0.1:6379 "
                                       "(default: the one `ray start --head` started on this machine)")


def add_journal_options(sub: CommandParser) -> None:
    sub.add_argument("--journal", help="append every finished point to this file (one JSON line each)")
    sub.add_argument("--resume", action="store_true",
                     help="continue --journal: take the points it holds, compute only the rest")


def command_parsers() -> dict[str, CommandParser]:
    """Each command's parser by name, as ``build_parser`` declares them."""
    return _build()[1]


def build_parser() -> argparse.ArgumentParser:
    return _build()[0]


def _build() -> tuple[argparse.ArgumentParser, dict[str, CommandParser]]:
    parser = RefusingParser(prog="python -m compression", description="Compress PyTorch models.")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)

    def command(name: str, handler: Callable, help_text: str, model: bool = True) -> CommandParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler, force=False)
        if model:
            sub.add_argument("model", help="a zoo name (see `models`) or a model file/folder")
            sub.add_argument("--family", choices=FAMILIES,
                             help="what kind of model it is, which decides the metric (default: told from the file)")
            sub.add_argument("--input-shape", action="append", type=parse_input_shape_argument, metavar="[NAME=]SIZES",
                             help=INPUT_SHAPE_HELP)
        return sub

    sub = command("models", command_models, "list the sample models", model=False)
    sub.add_argument("--json", action="store_true")

    sub = command("info", command_info, "layers, sizes and baseline metric of a model")
    sub.add_argument("--data", help=DATA_HELP)
    sub.add_argument("--json", action="store_true")

    sub = command("apply", command_apply, "compress a model and write the packed file")
    sub.add_argument("--recipe", required=True, help="recipe JSON file (or inline JSON)")
    sub.add_argument("--out", required=True, help="packed file to write")
    sub.add_argument("--dense-out", help="also write the dense weights as .safetensors")
    sub.add_argument("--data", help=DATA_HELP)
    sub.add_argument("--json", action="store_true")
    sub.add_argument("--force", action="store_true", help="replace existing output files")

    sub = command("unpack", command_unpack, "decode a packed file into dense .safetensors", model=False)
    sub.add_argument("file", help="packed file written by `apply`")
    sub.add_argument("--dense-out", required=True, help=".safetensors file to write")
    sub.add_argument("--force", action="store_true", help="replace an existing output file")
    sub.set_defaults(model=None)

    sub = command("eval", command_eval, "evaluate a model (optionally after a recipe)")
    sub.add_argument("--recipe", help="recipe JSON file (or inline JSON) to apply first")
    sub.add_argument("--data", help=DATA_HELP)
    sub.add_argument("--json", action="store_true")

    sub = command("sweep", command_sweep, "compress and evaluate a grid of amounts x bits")
    sub.add_argument("--amounts", type=parse_floats, required=True, help="e.g. 0,0.5,0.9")
    sub.add_argument("--bits", type=parse_ints, required=True, help="e.g. 8,4 (32 = no quantization)")
    sub.add_argument("--scheme", type=lambda s: s.split(","), default=["linear"],
                     help="comma-separated: linear, pow2, kmeans, fp16, bf16, fp8_e4m3, fp8_e5m2, gptq, awq "
                          "(gptq and awq calibrate on the model's calibration rows)")
    sub.add_argument("--recipe", help="base recipe for the other fields (scope, granularity, ...)")
    sub.add_argument("--data", help=DATA_HELP)
    sub.add_argument("--csv", help="write the table as CSV")
    sub.add_argument("--json", action="store_true")
    sub.add_argument("--force", action="store_true", help="replace an existing CSV file")
    add_executor_options(sub, "table")
    add_journal_options(sub)

    sub = command("agp", command_agp, "gradual magnitude pruning with fine-tuning (Zhu & Gupta's schedule), "
                  "against one-shot pruning with and without as much fine-tuning")
    defaults = AgpSchedule()
    sub.add_argument("--initial", type=float, default=defaults.initial, help="sparsity of the first step")
    sub.add_argument("--final", type=float, default=defaults.final, help="sparsity of the last step")
    sub.add_argument("--steps", type=int, default=defaults.steps, help="pruning steps after the first")
    sub.add_argument("--epochs-per-step", type=int, default=defaults.epochs_per_step,
                     help="fine-tuning epochs after each step")
    sub.add_argument("--scope", choices=["global", "layer"],
                     help="one cut over all layers (global) or per layer; default: the recipe's, else global")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--recipe", help="pruning method and scope, and quantize (or other) settings for the packed "
                                      "results; the schedule sets the amounts")
    sub.add_argument("--out", help="write the pruned, fine-tuned model as a packed file")
    sub.add_argument("--json", action="store_true")
    sub.add_argument("--force", action="store_true", help="replace an existing output file")

    sub = command("sensitivity", command_sensitivity, "metric drop when one layer at a time is pruned or quantized")
    sub.add_argument("--amounts", type=parse_floats, help="e.g. 0,0.5,0.9 (default 0 to 0.95)")
    sub.add_argument("--bits", type=parse_ints, help="e.g. 8,4,2 (32 = none; default 32,8,4,3,2)")
    sub.add_argument("--scheme", default="linear", help="quantization scheme for the bits rows (linear, pow2, "
                     "kmeans; gptq and awq read calibration rows)")
    sub.add_argument("--method", default="magnitude", help="pruning method for the amount rows (magnitude, random, "
                     "structured; wanda and sparsegpt read calibration rows)")
    sub.add_argument("--data", help=DATA_HELP)
    sub.add_argument("--csv", help="write the table as CSV")
    sub.add_argument("--json", action="store_true")
    sub.add_argument("--force", action="store_true", help="replace an existing CSV file")
    add_executor_options(sub, "table")
    add_journal_options(sub)

    sub = command("search", command_search, "the largest sparsity whose metric drop stays within a tolerance")
    sub.add_argument("--tolerance", type=float, required=True, help="largest allowed drop, e.g. 0.01")
    sub.add_argument("--per-layer", action="store_true",
                     help="spread the sparsity over layers by their measured sensitivity")
    sub.add_argument("--resolution", type=float, default=0.01, help="amount grid step (default 0.01)")
    sub.add_argument("--data", help=DATA_HELP)
    sub.add_argument("--json", action="store_true")
    add_executor_options(sub, "amount (with k workers, k amounts per round)")

    sub = command("distill", command_distill, "train a small student on the model's soft targets, and one on labels only")
    defaults = DistillConfig()
    sub.add_argument("--width", type=int, default=defaults.width, help="the student's hidden units")
    sub.add_argument("--temperature", type=float, default=defaults.temperature)
    sub.add_argument("--alpha", type=float, default=defaults.alpha, help="weight of the soft targets (0: labels only)")
    sub.add_argument("--epochs", type=int, default=defaults.epochs)
    sub.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    sub.add_argument("--seed", type=int, default=defaults.seed)
    sub.add_argument("--out", help="write the distilled student as a packed file")
    sub.add_argument("--json", action="store_true")
    sub.add_argument("--force", action="store_true", help="replace an existing output file")

    sub = command("export", command_export, "export a (compressed) model to ONNX, optionally int8, and score it with onnxruntime")
    sub.add_argument("--recipe", help="recipe JSON file (or inline JSON) to apply first")
    sub.add_argument("--format", choices=["onnx", "tflite"], default="onnx")
    sub.add_argument("--int8", choices=INT8_MODES, default=NO_INT8,
                     help="onnxruntime int8: dynamic, or static (calibrated on training rows) as QDQ or QOperator")
    sub.add_argument("--out", required=True, help="file to write (.onnx or .tflite)")
    sub.add_argument("--data", help=DATA_HELP)
    sub.add_argument("--json", action="store_true")
    sub.add_argument("--force", action="store_true", help="replace an existing output file")

    sub = command("fuse", command_fuse, "fold BatchNorm into the conv or linear layer before it")
    sub.add_argument("--data", help=DATA_HELP)
    sub.add_argument("--out", help="write the fused model as a torch.export program (.pt2)")
    sub.add_argument("--json", action="store_true")
    sub.add_argument("--force", action="store_true", help="replace an existing output file")

    sub = command("shrink", command_shrink,
                  "remove the output channels structured pruning would mask: a smaller dense model (.pt2)")
    sub.add_argument("--amount", type=float, required=True,
                     help="fraction of each layer's output channels to remove, in [0, 1)")
    sub.add_argument("--norm", choices=STRUCTURED_NORMS, default="l1",
                     help="channel score: mean |w| (l1) or RMS (l2)")
    sub.add_argument("--scope", choices=PRUNE_SCOPES, default="layer",
                     help="layer: the amount of each layer; global: one cut over all layers")
    sub.add_argument("--out", required=True, help="write the smaller model as a torch.export program (.pt2)")
    sub.add_argument("--data", help=DATA_HELP)
    sub.add_argument("--json", action="store_true")
    sub.add_argument("--force", action="store_true", help="replace an existing output file")
    return parser, commands.choices
