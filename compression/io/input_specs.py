"""Input sizes a file leaves open: the sizes the user gives (``--input-shape NAME=1,3,320,320``),
the sizes guessed by running the model, and the batch it is scored in.

A dynamic axis gets the user's size, else the first candidate the model runs on: image-like
axes (after the channels of a float input of rank 3 and more) try sizes that are multiples
of 32, as detectors and classifiers need (224 first, the common training size); other axes
(sequence lengths, audio samples) try small sizes first. Axes sharing a name share a size.
An input no size helps (an integer scalar such as a sample rate) keeps a ``problem``: the
model still loads and compresses, and only scoring asks for data.

>>> parse_input_shape("images=1,3,320,320")
('images', (1, 3, 320, 320))
>>> parse_input_shape("8,64")
(None, (8, 64))
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import torch

from compression.errors import CompressionError, ModelLoadError
from compression.io.evaluation_data import DEFAULT_BATCH_SIZE
from compression.model_inputs import GIVEN, GUESSED, STATIC, Dimension, ModelInput

# Tried in pairs, one size for image-like axes and one for the others, until the model runs.
IMAGE_SIZES = (224, 256, 320, 384, 512, 640, 32, 64, 128)
LENGTH_SIZES = (8, 16, 32, 64, 128, 256, 512, 1024, 2048)
EXAMPLE_ROWS = 2  # rows of an example input when the batch is free
# Values of one batch, and of all generated evaluation rows: a large row (an image) gets a
# small batch and fewer rows, where a small one keeps batches of 256 and 256 rows.
BATCH_VALUES = 1 << 22
EVALUATION_VALUES = 1 << 23
GENERATED_ROWS = 256

InputShapes = Mapping[str | None, Sequence[int]]
# The formats --input-shape applies to: files whose inputs may have open sizes (ONNX, .pt2) or
# record none (TorchScript); a Hugging Face folder's inputs are set by its family.
SHAPED_FORMATS = ("onnx", "torch_export", "torchscript")


def parse_input_shape(text: str) -> tuple[str | None, tuple[int, ...]]:
    """``NAME=1,3,320,320`` (or the sizes alone, for a model with one input) as (name, shape)."""
    name, _, sizes = text.rpartition("=")
    try:
        shape = tuple(int(part) for part in sizes.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1 or (_ and not name.strip()):
        raise CompressionError(
            f"an input shape is NAME=sizes with positive integer sizes, the batch first "
            f"(images=1,3,320,320; the name may be left out for a model with one input); got {text!r}."
        )
    return (name.strip() or None), shape


def with_given_shapes(specs: Sequence[ModelInput], shapes: InputShapes | None, where: str) -> tuple[ModelInput, ...]:
    """The specs with the user's sizes on their dynamic axes; a shape that names no input, or
    contradicts a static size or the rank, is refused."""
    if not shapes:
        return tuple(specs)
    names = [spec.name for spec in specs]
    listed = ", ".join(map(repr, names)) or "none recorded in the file"
    given: dict[str, tuple[int, ...]] = {}
    for name, shape in shapes.items():
        if name is None and len(specs) != 1:
            raise ModelLoadError(f"{where} takes {len(specs)} inputs ({listed}); name the input: --input-shape NAME=sizes.")
        name = names[0] if name is None else name
        if name not in names:
            raise ModelLoadError(f"--input-shape names input {name!r}, which {where} does not take; its inputs: {listed}.")
        given[name] = tuple(int(size) for size in shape)
    return tuple(_given(spec, given[spec.name], where) if spec.name in given else spec for spec in specs)


def given_input_specs(names: Sequence[str], shapes: InputShapes, where: str) -> tuple[ModelInput, ...]:
    """Float32 inputs of the user's sizes, for a file that records none (TorchScript): one per
    name the model takes (``input0``… in the order given where its names are unknown)."""
    if not names:
        names = [name or f"input{index}" for index, name in enumerate(shapes)]
    if None in shapes and len(names) != 1:
        raise ModelLoadError(f"{where} takes {len(names)} inputs ({', '.join(map(repr, names))}); "
                             "name the input: --input-shape NAME=sizes.")
    given = {names[0] if name is None else name: shape for name, shape in shapes.items()}
    unknown = [name for name in given if name not in names]
    missing = [name for name in names if name not in given]
    if unknown or missing:
        wrong = f"names input {unknown[0]!r}, which {where} does not take" if unknown else f"gives no sizes for {missing[0]!r}"
        raise ModelLoadError(f"--input-shape {wrong}; give sizes for each of its inputs: {', '.join(map(repr, names))}.")
    return tuple(ModelInput(name, "float32", tuple(Dimension(int(size), GIVEN) for size in given[name]))
                 for name in names)


def _given(spec: ModelInput, shape: tuple[int, ...], where: str) -> ModelInput:
    sizes = ",".join(str(size) if size is not None else "N" for size in spec.shape)
    if len(shape) != len(spec.dims):
        raise ModelLoadError(
            f"--input-shape {spec.name}={','.join(map(str, shape))}: {where}'s input {spec.name!r} has "
            f"{len(spec.dims)} axes ({spec.shape_text}); give {spec.name}={sizes}."
        )
    dims = []
    for axis, (dim, size) in enumerate(zip(spec.dims, shape)):
        if dim.origin == STATIC and dim.size != size:
            raise ModelLoadError(
                f"--input-shape {spec.name}={','.join(map(str, shape))}: axis {axis} of {spec.name!r} is "
                f"fixed at {dim.size} in {where} ({spec.shape_text})."
            )
        dims.append(dim if dim.origin == STATIC else Dimension(size, GIVEN, dim.name))
    return replace(spec, dims=tuple(dims))


def example_input(spec: ModelInput, rows: int) -> torch.Tensor:
    """Rows shaped like the input (zeros; integers as ones, which keep token ids and masks valid).

    The batch axis comes first whatever the graph's layout (``compression.model_inputs``).
    """
    sizes = [rows if axis == spec.batch_axis else size for axis, size in enumerate(spec.shape)]
    if spec.batch_axis is not None:
        sizes.insert(0, sizes.pop(spec.batch_axis))
    else:
        sizes.insert(0, rows)
    dtype = getattr(torch, spec.dtype)
    return torch.zeros(sizes, dtype=dtype) if dtype.is_floating_point else torch.ones(sizes, dtype=dtype)


def batch_size(specs: Sequence[ModelInput]) -> int | None:
    """The batch the file fixes or the user gave; None when it is free."""
    for spec in specs:
        if spec.batch_axis is not None:
            dim = spec.dims[spec.batch_axis]
            return dim.size if dim.origin in (STATIC, GIVEN) else None
    return None


def row_values(specs: Sequence[ModelInput]) -> int:
    """How many values one evaluation row holds, over all inputs."""
    total = 0
    for spec in specs:
        count = 1
        for axis, size in enumerate(spec.shape):
            count *= 1 if axis == spec.batch_axis else (size or 1)
        total += count
    return total


def scoring_batch(specs: Sequence[ModelInput]) -> int:
    """The batch to score in: the fixed or given one, else 256 rows, fewer (a power of two)
    where rows are large."""
    fixed = batch_size(specs)
    if fixed is not None:
        return fixed
    batch = DEFAULT_BATCH_SIZE
    while batch > 1 and batch * row_values(specs) > BATCH_VALUES:
        batch //= 2
    return batch


def generated_rows(specs: Sequence[ModelInput], batch: int) -> int:
    """How many random evaluation rows to make: 256, fewer where rows are large, at least a batch."""
    return max(batch, min(GENERATED_ROWS, EVALUATION_VALUES // max(row_values(specs), 1)))


def with_batch(specs: Sequence[ModelInput], batch: int) -> tuple[ModelInput, ...]:
    """The specs with a free batch axis set to the scoring batch (a guess)."""
    updated = []
    for spec in specs:
        dims = list(spec.dims)
        axis = spec.batch_axis
        if axis is not None and dims[axis].size is None:
            dims[axis] = Dimension(batch, GUESSED, dims[axis].name)
        updated.append(replace(spec, dims=tuple(dims)))
    return tuple(updated)


def guess_sizes(specs: Sequence[ModelInput], run: Callable[..., object], errors: tuple[type[BaseException], ...]) -> tuple[ModelInput, ...]:
    """The specs with their free non-batch axes set to the first candidate sizes ``run`` accepts.

    ``run`` is called on example rows (``example_input``); an exception in ``errors`` means the
    sizes do not fit. Where no candidate fits, the first input with a free axis gets a problem.
    Nothing is tried while an input has a problem already (the model cannot run at all).
    """
    free = [(i, axis) for i, spec in enumerate(specs) for axis, dim in enumerate(spec.dims)
            if dim.size is None and axis != spec.batch_axis]
    if any(spec.problem for spec in specs):
        return tuple(specs)
    rows = batch_size(specs) or EXAMPLE_ROWS
    failure = None
    for image_size, length in zip(IMAGE_SIZES, LENGTH_SIZES):
        trial = _with_sizes(specs, free, image_size, length)
        try:
            run(*(example_input(spec, rows) for spec in trial))
        except errors as error:
            failure = error
            if not free:
                break
            continue
        return trial
    first = specs[free[0][0]] if free else specs[0]
    if free:
        problem = f"has no size the model runs on (tried {', '.join(map(str, IMAGE_SIZES))}: {_first_line(failure)})"
    else:
        problem = f"does not run at these sizes ({_first_line(failure)})"
    return tuple(replace(spec, problem=problem) if spec is first else spec for spec in specs)


def _with_sizes(specs: Sequence[ModelInput], free: list[tuple[int, int]], image_size: int, length: int) -> tuple[ModelInput, ...]:
    """Free axes set to ``image_size`` (image-like) or ``length``; axes sharing a name, to one size."""
    image_like = {(i, axis) for i, axis in free if _image_like(specs[i], axis)}
    named_images = {specs[i].dims[axis].name for i, axis in image_like if specs[i].dims[axis].name}
    updated = [list(spec.dims) for spec in specs]
    for i, axis in free:
        dim = specs[i].dims[axis]
        size = image_size if (i, axis) in image_like or (dim.name and dim.name in named_images) else length
        updated[i][axis] = Dimension(size, GUESSED, dim.name)
    return tuple(replace(spec, dims=tuple(dims)) for spec, dims in zip(specs, updated))


def _image_like(spec: ModelInput, axis: int) -> bool:
    """An axis after the batch and the channels of a float input of rank 3 or more."""
    return spec.dtype.startswith(("float", "bfloat")) and len(spec.dims) >= 3 and axis >= 2


def _first_line(error: BaseException | None) -> str:
    text = str(error).strip() if error is not None else ""
    line = text.splitlines()[0] if text else type(error).__name__
    return line if len(line) <= 200 else line[:199] + "…"
