"""A module as a torch.export program (.pt2): how rewritten models (fused, channels removed)
leave the lab as files that ``load_model`` reads back with their own architecture."""
from __future__ import annotations

import io

import torch
from torch import nn

from compression.errors import CompressionError
from compression.model import LoadedModel

_EXPORT_ERRORS = (RuntimeError, ValueError, TypeError, AssertionError, NotImplementedError)


def program_bytes(module: nn.Module, model: LoadedModel) -> bytes:
    """``module`` as the bytes of a torch.export program traced on ``model``'s example inputs."""
    if not model.example_inputs:
        raise CompressionError(f"{model.name} records no example input to export with; load it with a data file.")
    # Copies: an example input sliced from the evaluation data is a view, and the program stores
    # a view's whole storage (1.4 MB of digits in simplenet's otherwise 30 KB file).
    example_inputs = tuple(tensor.clone() for tensor in model.example_inputs)
    buffer = io.BytesIO()
    try:
        torch.export.save(torch.export.export(module, example_inputs), buffer)
    except _EXPORT_ERRORS as error:
        # torch.export's messages run over many lines; the first names the problem.
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CompressionError(f"torch.export could not export {model.name} ({type(error).__name__}: {reason}).") from None
    return buffer.getvalue()
