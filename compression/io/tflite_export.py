"""TFLite for phones and microcontrollers: a (compressed) module converted by litert-torch.

litert-torch (Google's PyTorch-to-LiteRT converter) brings jax and the LiteRT runtime, far
more than the rest of the lab needs, so it is an optional install (``requirements-tflite.txt``)
imported only here. Two limits of litert-torch 0.10.0, measured: the file takes exactly the
example inputs' shapes (a dynamic batch fails in its JAX lowering), and integer inputs become
int32 (its default ``enable_x64=False``).
"""
from __future__ import annotations

import importlib.util

import torch
from torch import nn

from compression.errors import CompressionError
from compression.model import ForeignRuntimeModule, LoadedModel

INSTALL_COMMAND = "pip install -r requirements-tflite.txt"
INSTALL_HINT = f"{INSTALL_COMMAND} (litert-torch; it brings jax and ai-edge-litert)"


def tflite_available() -> bool:
    """Whether litert-torch is installed, without importing it (the import takes seconds)."""
    return importlib.util.find_spec("litert_torch") is not None


def export_tflite(model: LoadedModel, module: nn.Module | None = None) -> bytes:
    """The .tflite flatbuffer of ``module`` (default the base module) on the model's example inputs.

    Modules here are in eval mode already (a LoadedModel's are, and so are compress's copies).
    """
    module = model.module if module is None else module
    # ForeignRuntimeModule, not the ONNX module's class: importing that would load onnx here.
    if isinstance(module, (ForeignRuntimeModule, torch.jit.ScriptModule)):
        kind = "an imported ONNX graph" if isinstance(module, ForeignRuntimeModule) else "a TorchScript module"
        raise CompressionError(
            f"{model.name} is {kind}; litert-torch converts torch.export-able PyTorch modules only."
        )
    if not model.example_inputs:
        raise CompressionError(f"{model.name} records no input shape; load it with a data file to export it.")
    if not tflite_available():
        raise CompressionError(f"TFLite export needs the optional package litert-torch: {INSTALL_HINT}.")
    import litert_torch

    try:
        return bytes(litert_torch.convert(module, model.example_inputs).model_content())
    except Exception as error:  # noqa: BLE001 - the converter raises anything from torch.export to JAX
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CompressionError(f"litert-torch could not convert {model.name} ({first_line}).") from None
