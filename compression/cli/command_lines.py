"""Shell lines that redo a result with ``python -m compression``, for the dashboard to show.

Options are spelled from the parser's own declarations (``parser.command_parsers``): rename a
flag there and every line the dashboard shows follows; name an option a command does not have
and this refuses it.

>>> command_line("fuse", "bn_cnn", out="bn_cnn-fused.pt2")
'python -m compression fuse bn_cnn --out bn_cnn-fused.pt2'
>>> command_line("apply", "mlp", recipe='{"prune":{"amount":0.5}}', out="mlp.packed", data=None)
'python -m compression apply mlp --recipe \\'{"prune":{"amount":0.5}}\\' --out mlp.packed'
"""
from __future__ import annotations

import shlex

from compression.cli.parser import command_parsers

PROGRAM = ("python", "-m", "compression")


def command_line(command: str, *arguments: str, **options: str | float | bool | None) -> str:
    """``python -m compression <command> <arguments> --<option> <value> ...`` as one shell line.

    ``options`` are keyed by destination (``dense_out`` for ``--dense-out``); None and False
    leave an option out, True gives a switch (``json=True``: ``--json``).
    """
    parsers = command_parsers()
    if command not in parsers:
        raise ValueError(f"command must be one of {', '.join(parsers)}; got {command!r}.")
    declared = parsers[command].options
    argv = [*PROGRAM, command, *arguments]
    for name, value in options.items():
        if name not in declared:
            raise ValueError(f"`{command}` has no option {name!r}; its options: {', '.join(declared)}.")
        if value is None or value is False:
            continue
        flag = declared[name].option_strings[-1]
        argv += [flag] if value is True else [flag, str(value)]
    return shlex.join(argv)
