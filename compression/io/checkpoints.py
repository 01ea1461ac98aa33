"""What a checkpoint's files hold as stored (bytes per dtype), noted on the loaded model.

Loading upcasts every checkpoint to float32, where the engine computes; the bytes and dtypes
are read before that, so the sizes shown can say what the checkpoint itself holds.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from compression.display_text import DisplayText
from compression.io.safety import SAFETENSORS, FileReport, read_safetensors_header, safetensors_bytes_by_dtype
from compression.io.state_dict import read_torch_state_dict
from compression.model import LoadedModel
from compression.stored_weights import StoredWeights


def stored_in_files(files: tuple[Path, ...], reports: tuple[FileReport, ...]) -> StoredWeights:
    """Inspected weights files (a folder's shards): safetensors from their headers, no tensor
    read; pickled shards with ``torch.load(weights_only=True)``, memory-mapped where it can."""
    totals: dict[str, int] = {}
    for path, report in zip(files, reports, strict=True):
        if report.kind == SAFETENSORS:
            found = safetensors_bytes_by_dtype(read_safetensors_header(path))
        else:
            found = StoredWeights.of_tensors(read_torch_state_dict(path, report.kind).values()).bytes_by_dtype
        for name, count in found.items():
            totals[name] = totals.get(name, 0) + count
    return StoredWeights.of_totals(totals)


def with_stored_weights(model: LoadedModel, stored: StoredWeights) -> LoadedModel:
    """``model`` noting what its checkpoint stores, and in its description any upcast."""
    note = stored.upcast_note()
    description = model.description or note or ""
    if model.description and note:
        description = DisplayText("noted", f"{model.description}; {note}", description=model.description, note=note)
    return replace(model, stored_weights=stored, description=description)
