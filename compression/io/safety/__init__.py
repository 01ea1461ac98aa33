"""Inspection of untrusted model files before anything deserialises them: one scanner per format.

Loading a PyTorch file can run code the file carries: a pickle names any Python callable and
the unpickler calls it; a torch.export program names operators by dotted path, parses shape
expressions with ``sympy.sympify`` (which evaluates them) and compiles guards with ``exec``; a
TorchScript file runs its own ``__setstate__`` and may call ``aten::save``. The scanners read
such files statically (zip directory, ``pickletools.genops``, JSON, TorchScript source) and
refuse anything beyond what ``torch.save(state_dict)``, ``torch.jit.save`` and
``torch.export.save`` legitimately write. Every safety check of the engine lives here:

- ``model_files``: the entry point, ``inspect_file``, which tells a file's kind by content;
- ``archives``: zip archives (bombs, directories two readers would read differently);
- ``pickles``, ``torchscript``, ``export``: torch.save pickles, TorchScript, .pt2 programs;
- ``safetensors``, ``npz``, ``huggingface``: safetensors headers, .npz data, model folders;
- ``report`` and ``limits``: the kinds, ``FileReport``, and the bounds every scanner keeps.

>>> inspect_file("weights.safetensors").kind  # doctest: +SKIP
'safetensors'
"""
from compression.io.safety.huggingface import FolderWeights, inspect_hf_folder
from compression.io.safety.limits import DEFAULT_MAX_FILE_BYTES
from compression.io.safety.model_files import inspect_file
from compression.io.safety.npz import inspect_npz
from compression.io.safety.pickles import check_pickle, pickle_globals
from compression.io.safety.report import (
    ONNX,
    SAFETENSORS,
    TORCH_EXPORT,
    TORCH_SAVE,
    TORCH_SAVE_LEGACY,
    TORCHSCRIPT,
    WHAT_TO_UPLOAD,
    FileReport,
)
from compression.io.safety.safetensors import (
    read_safetensors_header,
    safetensors_bytes_by_dtype,
    safetensors_parameter_count,
)

__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "ONNX",
    "SAFETENSORS",
    "TORCHSCRIPT",
    "TORCH_EXPORT",
    "TORCH_SAVE",
    "TORCH_SAVE_LEGACY",
    "WHAT_TO_UPLOAD",
    "FileReport",
    "FolderWeights",
    "check_pickle",
    "inspect_file",
    "inspect_hf_folder",
    "inspect_npz",
    "pickle_globals",
    "read_safetensors_header",
    "safetensors_bytes_by_dtype",
    "safetensors_parameter_count",
]
