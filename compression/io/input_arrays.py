"""A data file's arrays named after a model's inputs (a graph taking several), as evaluation rows.

Each array is shaped as the graph takes its input, with as many samples as the data has on
the input's batch axis; an input without a batch axis (a sample rate, a shared table) is given
once, as the graph takes it, and every batch gets it whole:

>>> import numpy as np  # doctest: +SKIP
>>> np.savez("speech.npz", audio=audio, state=np.zeros((2, len(audio), 64), "float32"),
...          sr=np.array(16000))  # doctest: +SKIP
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from compression.errors import DataError
from compression.model_inputs import STATIC, ModelInput, to_rows


def input_rows(arrays: Mapping[str, np.ndarray], specs: Sequence[ModelInput], where: str) -> tuple[torch.Tensor, ...]:
    """The arrays named after ``specs`` as evaluation inputs: rows first, one tensor per input."""
    names = ", ".join(repr(spec.name) for spec in specs)
    missing = [spec.name for spec in specs if spec.name not in arrays]
    if missing:
        raise DataError(
            f"{where} has no array for input(s) {', '.join(map(repr, missing))}; the model takes "
            f"{names}: give one array per input, named after it."
        )
    for spec in specs:
        _check_shape(arrays[spec.name], spec, where)
    counts = {spec.name: arrays[spec.name].shape[spec.batch_axis] for spec in specs if spec.batch_axis is not None}
    if len(set(counts.values())) > 1:
        found = ", ".join(f"{name} {count}" for name, count in counts.items())
        raise DataError(f"{where}: the inputs hold different numbers of samples ({found}); they must match.")
    rows = next(iter(counts.values()), 1)
    return tuple(
        to_rows(torch.from_numpy(arrays[spec.name]).to(getattr(torch, spec.dtype)), spec.batch_axis, rows)
        for spec in specs
    )


def _check_shape(array: np.ndarray, spec: ModelInput, where: str) -> None:
    expected = ", ".join("n" if axis == spec.batch_axis else str(dim.size if dim.origin == STATIC else "any")
                         for axis, dim in enumerate(spec.dims))
    fixed = all(
        axis == spec.batch_axis or dim.origin != STATIC or array.shape[axis] == dim.size
        for axis, dim in enumerate(spec.dims)
    ) if array.ndim == len(spec.dims) else False
    if not fixed:
        raise DataError(
            f"{where}: {spec.name} has shape {array.shape}; the model takes {spec.name} shaped ({expected})."
        )
    if not spec.dtype.startswith(("float", "bfloat")) and array.dtype.kind == "f":
        raise DataError(f"{where}: {spec.name} is {array.dtype} but the model takes integers ({spec.dtype}).")
