"""The entry point for a model file: tell its kind by its first bytes and run that kind's scanner."""
from __future__ import annotations

import os
from pathlib import Path

from compression.errors import ModelLoadError
from compression.io.safety.archives import (
    EMPTY_ZIP_MAGIC,
    ZIP_MAGIC,
    archive_kind,
    check_directory,
    open_zip,
    relative_name,
)
from compression.io.safety.export import check_export_archive
from compression.io.safety.limits import DEFAULT_MAX_FILE_BYTES, checked_size
from compression.io.safety.pickles import inspect_legacy_pickle
from compression.io.safety.report import (
    KIND_WORDS,
    ONNX,
    SAFETENSORS,
    TORCH_EXPORT,
    TORCH_SAVE_LEGACY,
    FileReport,
)
from compression.io.safety.safetensors import looks_like_safetensors, read_safetensors_header, safetensors_parameter_count
from compression.io.safety.torchscript import check_pickle_archive

_ONNX_FIRST_FIELD = b"\x08"  # ModelProto field 1 (ir_version, a varint): protobuf writes fields in order


def inspect_file(
    path: str | os.PathLike, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> FileReport:
    """Check a model file and tell its kind; raise before anything could run code from it.

    Raises ``UnsafeFileError`` for content that loading would execute, ``ModelLoadError`` for
    empty, oversized, truncated, corrupt or unrecognised files.
    """
    path = Path(path)
    size = checked_size(path, max_file_bytes, "model file")
    named_safetensors = path.suffix.lower() == ".safetensors"
    with path.open("rb") as stream:
        head = stream.read(16)
    if head.startswith((ZIP_MAGIC, EMPTY_ZIP_MAGIC)):
        kind, storage_bytes, parameters = _inspect_torch_zip(path, max_file_bytes)
        if named_safetensors:
            raise ModelLoadError(
                f"{path.name} is named .safetensors but is a zip archive ({KIND_WORDS[kind]}); "
                "rename it to .pt (or .pt2) if that is what you meant to upload."
            )
        return FileReport(kind, parameters, storage_bytes)
    # Before the pickle test: a header length whose low byte is 0x80 starts like a pickle. A file
    # taken for safetensors is only ever read as safetensors, which runs nothing.
    if looks_like_safetensors(head, size):
        return _safetensors_report(path, size)
    if head[:1] == b"\x80":  # the PROTO opcode that starts every pickle since protocol 2
        inspect_legacy_pickle(path)
        if named_safetensors:
            raise ModelLoadError(f"{path.name} is named .safetensors but is a torch.save pickle.")
        return FileReport(TORCH_SAVE_LEGACY, None, size)
    if named_safetensors:
        return _safetensors_report(path, size)
    if path.suffix.lower() == ".onnx" or head[:1] == _ONNX_FIRST_FIELD:
        return FileReport(ONNX, None, size)  # compression.io.onnx.importing parses and checks it
    raise ModelLoadError(
        f"{path.name} is not a recognised model file (it starts with {head[:8]!r}). "
        "Supported: a state_dict (.pt/.pth from torch.save), .safetensors, a torch.export "
        "program (.pt2), a TorchScript file or an ONNX model (.onnx)."
    )


def _safetensors_report(path: Path, size: int) -> FileReport:
    header = read_safetensors_header(path)
    return FileReport(SAFETENSORS, safetensors_parameter_count(header), size)


def _inspect_torch_zip(path: Path, max_file_bytes: int) -> tuple[str, int, int | None]:
    with open_zip(path, path.name) as archive:
        check_directory(archive, path.name, max_file_bytes)
        kind = archive_kind(archive)
        if kind is None:
            raise ModelLoadError(
                f"{path.name} is a zip archive but not one written by torch.save, torch.jit.save "
                "or torch.export.save (no data.pkl, code/ or archive_format inside)."
            )
        parameters = None
        if kind == TORCH_EXPORT:
            parameters = check_export_archive(archive, path.name)
        else:
            check_pickle_archive(archive, path.name, kind)
        members = archive.infolist()
        storage = sum(m.file_size for m in members if relative_name(m.filename).startswith("data/"))
        return kind, storage, parameters
