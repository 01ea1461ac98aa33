"""What inspection says about a file: its kind, what it stores, and what to upload instead.

Kinds are told apart by content (magic bytes), never by extension.
"""
from __future__ import annotations

from dataclasses import dataclass

SAFETENSORS = "safetensors"
TORCH_SAVE = "torch_save"  # zip written by torch.save (a state_dict or checkpoint)
TORCH_SAVE_LEGACY = "torch_save_legacy"  # pre-1.6 torch.save: a sequence of pickles
TORCHSCRIPT = "torchscript"
TORCH_EXPORT = "torch_export"  # torch.export.save: a .pt2 archive
ONNX = "onnx"  # protobuf ModelProto: parsed, never executed

KIND_WORDS = {
    TORCH_SAVE: "a torch.save file",
    TORCHSCRIPT: "a TorchScript file",
    TORCH_EXPORT: "a torch.export program",
}

WHAT_TO_UPLOAD = (
    "Give instead the weights (torch.save(model.state_dict(), path) or .safetensors), or a .pt2 "
    "program, TorchScript or ONNX file."
)


@dataclass(frozen=True)
class FileReport:
    """What inspection learnt about a file that is safe to hand to its loader.

    ``parameter_count`` is exact where the format states shapes without deserialising
    (safetensors header, .pt2 weight config); elsewhere only ``storage_bytes`` is known.
    """

    kind: str
    parameter_count: int | None
    storage_bytes: int

    @property
    def minimum_parameters(self) -> int:
        """A lower bound on the stored values (8 bytes is the widest common element)."""
        if self.parameter_count is not None:
            return self.parameter_count
        return self.storage_bytes // 8
