"""What a model's inputs are, as its file records them: one ``ModelInput`` per input, shown by
``info`` and the Model page, and the batch layout the evaluator relies on.

A dimension is static (the file fixes its size) or dynamic: named in the file (an ONNX
``dim_param``, a .pt2 symbol) or not, with the size the lab uses for it and where that size
came from: the file's example input, a guess, or the user (``--input-shape``).

>>> image = ModelInput("images", "float32", (Dimension(8, GUESSED, "batch"), Dimension(3)))
>>> str(image)
'images: float32 [batch=8 (guessed), 3]'

The evaluator slices every input along its first axis. A graph whose input keeps the batch
elsewhere (a recurrent state ``(layers, batch, hidden)``) or has none (a sample rate) is fed
through ``to_graph_layout``: its evaluation rows hold the batch first, and an input without
a batch axis is repeated on every row and given to the graph once.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from compression.display_text import DisplayText

STATIC = "static"  # the file fixes the size
EXAMPLE = "example"  # dynamic; the size of the file's own example input
GUESSED = "guessed"  # dynamic; a size the loader chose and checked by running the model
GIVEN = "given"  # dynamic; the size the user gave (--input-shape)


@dataclass(frozen=True)
class Dimension:
    """One axis of an input: its size (None where no size is known) and where the size came from."""

    size: int | None
    origin: str = STATIC
    name: str | None = None  # the file's name for a dynamic axis

    def __str__(self) -> str:
        return str(self.summary)

    @property
    def summary(self) -> str:
        """What ``str`` says (``batch=8 (guessed)``), tagged for a dashboard where the size is not static."""
        if self.origin == STATIC:
            return str(self.size)
        size = "?" if self.size is None else str(self.size)
        origin = _ORIGINS.get(self.origin, self.origin)
        if self.name:
            return DisplayText("named_dimension", f"{self.name}={size} ({origin})", name=self.name, size=size, origin=origin)
        return DisplayText("dimension", f"{size} ({origin})", size=size, origin=origin)


# Where a dynamic size came from, in words a dashboard translates.
_ORIGINS = {EXAMPLE: DisplayText("origin_example", "example"), GUESSED: DisplayText("origin_guessed", "guessed"),
            GIVEN: DisplayText("origin_given", "given")}


@dataclass(frozen=True)
class ModelInput:
    """One input of a model: name, dtype (``float32``, ``int64``) and dimensions.

    ``batch_axis`` is the axis that holds the rows (None: the input has none, and every batch
    shares it whole); ``problem`` says why no evaluation input can be made for it (the
    evaluation then needs the user's data).
    """

    name: str
    dtype: str
    dims: tuple[Dimension, ...]
    batch_axis: int | None = 0
    problem: str | None = None

    @property
    def shape(self) -> tuple[int | None, ...]:
        return tuple(dim.size for dim in self.dims)

    @property
    def shape_text(self) -> str:
        """``[batch=8 (guessed), 3]``, or ``scalar``; tagged for a dashboard."""
        if not self.dims:
            return DisplayText("scalar", "scalar")
        dims = tuple(dim.summary for dim in self.dims)
        return DisplayText("shape", f"[{', '.join(dims)}]", dims=dims)

    @property
    def summary(self) -> str:
        """What ``str`` says, tagged for a dashboard."""
        shape = self.shape_text
        return DisplayText("model_input", f"{self.name}: {self.dtype} {shape}", name=self.name, dtype=self.dtype,
                           shape=shape)

    def __str__(self) -> str:
        return str(self.summary)

    def to_dict(self) -> dict[str, object]:
        """Plain data for JSON: the sizes (None where unknown) and each axis in words."""
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape),
                "dims": [str(dim) for dim in self.dims], "problem": self.problem}


def guessed_sizes(specs: Sequence[ModelInput]) -> str:
    """The guessed sizes of axes other than the batch, in words (empty when none was guessed).

    >>> guessed_sizes([ModelInput("x", "float32", (Dimension(8, GUESSED, "n"), Dimension(224, GUESSED)))])
    'x axis 1=224'
    """
    parts = []
    for spec in specs:
        dims = [
            f"{dim.name or f'axis {axis}'}={dim.size}" for axis, dim in enumerate(spec.dims)
            if dim.origin == GUESSED and dim.size is not None and axis != spec.batch_axis
        ]
        if dims:
            parts.append(f"{spec.name} {', '.join(dims)}")
    return "; ".join(parts)


def scoring_refusal(model: str, specs: Sequence[ModelInput]) -> str | None:
    """Why the model cannot be scored, in two lines: which input, and how to give it; None
    when every input can be made."""
    spec = next((spec for spec in specs if spec.problem), None)
    if spec is None:
        return None
    if len(specs) == 1:
        data = "an .npz with the inputs under 'x' (--data x.npz)"
    else:
        data = f"an .npz with one array per input, named {', '.join(repr(s.name) for s in specs)} (--data)"
    if any(dim.origin != STATIC for dim in spec.dims):
        sizes = ",".join(str(dim.size) if dim.origin == STATIC else "N" for dim in spec.dims)
        data += f", or sizes it runs on: --input-shape {spec.name}={sizes}"
    return f"{model!r} cannot be scored: input {spec.name!r} ({spec.dtype} {spec.shape_text}) {spec.problem}.\nGive {data}."


def batch_axes(shapes: Sequence[Sequence[int | str | None]]) -> tuple[int | None, ...]:
    """The batch axis of each input, from the sizes a graph declares (an int, a name, None).

    The batch is the leading axis of the first input that has axes. When the graph names it,
    an input holds it where that name stands (a state ``(2, batch, 64)``: axis 1); an input
    without that name holds none if its leading axis is static (a table, a scalar). Otherwise
    every input with axes holds the batch first.

    >>> batch_axes([("batch", 64), (2, "batch", 64), ()])
    (0, 1, None)
    """
    leading = next((shape[0] for shape in shapes if len(shape)), None)
    axes = []
    for shape in shapes:
        if isinstance(leading, str) and leading in shape:
            axes.append(list(shape).index(leading))
        elif len(shape) and (not isinstance(leading, str) or not isinstance(shape[0], int)):
            axes.append(0)
        else:
            axes.append(None)
    return tuple(axes)


def to_graph_layout(tensor: torch.Tensor, batch_axis: int | None) -> torch.Tensor:
    """An evaluation input (rows first) as the graph takes it: the batch moved to its axis, or
    the first row of an input without a batch axis."""
    if batch_axis is None:
        return tensor[0]
    return tensor if batch_axis == 0 else tensor.movedim(0, batch_axis)


def to_rows(tensor: torch.Tensor, batch_axis: int | None, rows: int) -> torch.Tensor:
    """An input as a graph takes it, as evaluation rows (the inverse of ``to_graph_layout``):
    the batch moved first, or an input without a batch axis repeated on ``rows`` rows."""
    if batch_axis is None:
        return tensor.unsqueeze(0).expand(rows, *tensor.shape)
    return tensor if batch_axis == 0 else tensor.movedim(batch_axis, 0)
