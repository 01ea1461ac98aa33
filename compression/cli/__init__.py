"""The command line: ``python -m compression <command>``, a thin layer over the public API.

    python -m compression models
    python -m compression info simplenet --json
    python -m compression apply mlp --recipe recipe.json --out mlp.packed --dense-out mlp.safetensors
    python -m compression unpack mlp.packed --dense-out mlp.safetensors
    python -m compression eval minilm
    python -m compression sweep mlp --amounts 0,0.5,0.9 --bits 8,4 --csv sweep.csv
    python -m compression agp simplenet --final 0.9 --steps 6 --out simplenet-agp.packed
    python -m compression fuse bn_cnn --out bn_cnn-fused.pt2
    python -m compression shrink simplenet --amount 0.5 --out simplenet-shrunk.pt2
    python -m compression export mlp --recipe recipe.json --format onnx --int8 dynamic --out mlp.onnx
    python -m compression sensitivity mlp --csv sensitivity.csv
    python -m compression distill mlp --width 16 --temperature 4 --alpha 0.7
    python -m compression search mlp --tolerance 0.01 [--per-layer]

On bad input every command exits with status 2 and one line on stderr, writes no partial
file, and refuses to overwrite an input or an existing file (unless --force for outputs).
Standard error carries nothing else: the libraries' warnings and logs are filtered while a
command runs (``quiet.py``; ``python -m compression --verbose <command>`` shows them), and the
engine's own notes go to standard output.
The argument tree is ``parser.py``; the commands live by kind in ``compress_commands.py``,
``workflow_commands.py`` and ``export_commands.py``.
"""
from __future__ import annotations

import sys
from typing import Sequence

from compression.cli.arguments import CommandError
from compression.cli.parser import build_parser
from compression.cli.quiet import library_noise_filtered
from compression.errors import CompressionError

EXIT_BAD_INPUT = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; 0 when it succeeds, ``EXIT_BAD_INPUT`` with one line on stderr when not."""
    args = build_parser().parse_args(argv)
    try:
        with library_noise_filtered(args.verbose, notes=not getattr(args, "json", False)):
            args.handler(args)
    except (CompressionError, CommandError) as error:
        _refuse(str(error))
        return EXIT_BAD_INPUT
    except OSError as error:
        _refuse(f"{error.strerror or error}: {error.filename or ''}".rstrip(": "))
        return EXIT_BAD_INPUT
    return 0


def _refuse(message: str) -> None:
    """``error: <message>`` on stderr as one line, whatever line breaks a library put in it."""
    print("error:", " ".join(message.split()), file=sys.stderr)
