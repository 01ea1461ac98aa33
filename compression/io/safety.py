"""Inspection of untrusted model files before anything deserialises them.

Loading a PyTorch file can run code the file carries: a pickle names any Python callable and
the unpickler calls it; a torch.export program names operators by dotted path, parses shape
expressions with ``sympy.sympify`` (which evaluates them) and compiles guards with ``exec``; a
TorchScript file runs its own ``__setstate__`` and may call ``aten::save``. This module reads
such files statically (zip directory, ``pickletools.genops``, JSON, TorchScript source) and
refuses anything beyond what ``torch.save(state_dict)``, ``torch.jit.save`` and
``torch.export.save`` legitimately write. Every safety check of the engine lives here.

>>> inspect_file("weights.safetensors").kind  # doctest: +SKIP
'safetensors'
"""
from __future__ import annotations

import ast
import functools
import io
import json
import math
import mmap
import os
import pickletools
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from compression.errors import DataError, ModelLoadError, UnsafeFileError

# File kinds, told apart by content (magic bytes), never by extension.
SAFETENSORS = "safetensors"
TORCH_SAVE = "torch_save"  # zip written by torch.save (a state_dict or checkpoint)
TORCH_SAVE_LEGACY = "torch_save_legacy"  # pre-1.6 torch.save: a sequence of pickles
TORCHSCRIPT = "torchscript"
TORCH_EXPORT = "torch_export"  # torch.export.save: a .pt2 archive
ONNX = "onnx"  # protobuf ModelProto: parsed, never executed

DEFAULT_MAX_FILE_BYTES = 2 * 1024**3
MAX_ARCHIVE_MEMBERS = 100_000
MAX_COMPRESSION_RATIO = 100  # torch archives are stored or lightly deflated; bombs reach 1000+
RATIO_CHECK_MIN_BYTES = 1024**2  # small members may compress well legitimately
MAX_EMBEDDED_BYTES = 512 * 1024**2  # one pickle, JSON or nested archive read into memory
MAX_SAFETENSORS_HEADER_BYTES = 100 * 1024**2  # safetensors' own limit

_ZIP_MAGIC = b"PK\x03\x04"
_ONNX_FIRST_FIELD = b"\x08"  # ModelProto field 1 (ir_version, a varint): protobuf writes fields in order
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"
# The first pickle of a legacy torch.save file: protocol 2, then LONG1 of torch's magic number.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_LEGACY_PICKLES = 5  # magic number, protocol, sys info, the object, storage keys

WHAT_TO_UPLOAD = (
    "Upload instead a state_dict saved with torch.save(model.state_dict(), path), a "
    ".safetensors file, a torch.export program (.pt2, torch.export.save), a TorchScript "
    "file (torch.jit.save) or an ONNX model (.onnx)."
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


def inspect_file(
    path: str | os.PathLike, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> FileReport:
    """Check a model file and tell its kind; raise before anything could run code from it.

    Raises ``UnsafeFileError`` for content that loading would execute, ``ModelLoadError`` for
    empty, oversized, truncated, corrupt or unrecognised files.
    """
    path = Path(path)
    size = _checked_size(path, max_file_bytes, "model file")
    named_safetensors = path.suffix.lower() == ".safetensors"
    with path.open("rb") as stream:
        head = stream.read(16)
    if head.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
        kind, storage_bytes, parameters = _inspect_torch_zip(path, max_file_bytes)
        if named_safetensors:
            raise ModelLoadError(
                f"{path.name} is named .safetensors but is a zip archive ({_KIND_WORDS[kind]}); "
                "rename it to .pt (or .pt2) if that is what you meant to upload."
            )
        return FileReport(kind, parameters, storage_bytes)
    if head[:1] == b"\x80":  # the PROTO opcode that starts every pickle since protocol 2
        _inspect_legacy_pickle(path)
        if named_safetensors:
            raise ModelLoadError(f"{path.name} is named .safetensors but is a torch.save pickle.")
        return FileReport(TORCH_SAVE_LEGACY, None, size)
    if named_safetensors or _looks_like_safetensors(head, size):
        header = read_safetensors_header(path)
        return FileReport(SAFETENSORS, safetensors_parameter_count(header), size)
    if path.suffix.lower() == ".onnx" or head[:1] == _ONNX_FIRST_FIELD:
        return FileReport(ONNX, None, size)  # compression.io.onnx_import parses and checks it
    raise ModelLoadError(
        f"{path.name} is not a recognised model file (it starts with {head[:8]!r}). "
        "Supported: a state_dict (.pt/.pth from torch.save), .safetensors, a torch.export "
        "program (.pt2), a TorchScript file or an ONNX model (.onnx)."
    )


def inspect_npz(path: str | os.PathLike, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> None:
    """Check a .npz archive before numpy opens it: size, directory (zip bombs) and each
    member's .npy header, whose shape must fit the bytes the member holds.

    Raises ``DataError`` for empty, oversized, corrupt or non-.npz files and object arrays,
    ``UnsafeFileError`` for bombs.
    """
    path = Path(path)
    try:
        _checked_size(path, max_file_bytes, "data file")
        with path.open("rb") as stream:
            head = stream.read(8)
        if head.startswith(_NPY_MAGIC):
            raise DataError(
                f"{path.name} is a single .npy array (numpy.save), not an .npz archive; save the "
                "data with numpy.savez(path, x=inputs, y=labels)."
            )
        if not head.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
            raise DataError(
                f"{path.name} is not an .npz archive (numpy.savez writes a zip archive; this "
                f"file starts with {head!r}). Save the data with numpy.savez(path, x=inputs, y=labels)."
            )
        with _open_zip(path, path.name) as archive:
            _check_directory(archive, path.name, max_file_bytes)
            for member in archive.infolist():
                _check_npy_member(archive, member, path.name)
    except UnsafeFileError:
        raise
    except ModelLoadError as error:
        raise DataError(str(error)) from None


_NPY_MAGIC = b"\x93NUMPY"
_NPY_MAX_HEADER_BYTES = 10_000  # numpy's own default limit for np.load


def _check_npy_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, where: str) -> None:
    """An .npz member must be an .npy array of plain values whose declared shape fits its bytes.

    numpy returns a member that is not .npy as raw bytes, and allocates the declared shape
    before reading it: a tiny file declaring (10**12, 64) would ask for terabytes.
    """
    name = member.filename
    if not name.endswith(".npy"):
        raise DataError(f"{where}: member {name!r} is not an .npy array; numpy.savez writes only .npy members.")
    try:
        with archive.open(member) as stream:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(stream, max_header_size=_NPY_MAX_HEADER_BYTES)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(stream, max_header_size=_NPY_MAX_HEADER_BYTES)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            header_bytes = stream.tell()
    except (ValueError, TypeError, SyntaxError, EOFError, zipfile.BadZipFile, zlib.error, OSError) as error:
        raise DataError(f"{where}: member {name!r} is not a readable .npy array ({error}).") from None
    if dtype.hasobject:
        raise DataError(
            f"{where}: {name.removesuffix('.npy')} is an object array (pickled Python objects), "
            "which is never loaded because unpickling can run code; save numeric arrays only."
        )
    if any(d < 0 for d in shape):
        raise DataError(f"{where}: {name!r} declares the shape {shape}, with a negative dimension.")
    needed = math.prod(shape) * dtype.itemsize
    held = member.file_size - header_bytes
    if needed > held:
        raise DataError(
            f"{where}: {name!r} declares shape {shape} of {dtype} ({needed:,} bytes) but holds only "
            f"{max(held, 0):,}; the file is truncated or corrupt."
        )


_KIND_WORDS = {
    TORCH_SAVE: "a torch.save file",
    TORCHSCRIPT: "a TorchScript file",
    TORCH_EXPORT: "a torch.export program",
}


def _checked_size(path: Path, max_file_bytes: int, what: str) -> int:
    if not path.is_file():
        raise ModelLoadError(f"{what} {str(path)!r} does not exist or is not a regular file.")
    size = path.stat().st_size
    if size == 0:
        raise ModelLoadError(f"{what} {path.name} is empty (0 bytes): the upload or save did not complete.")
    if size > max_file_bytes:
        raise ModelLoadError(
            f"{what} {path.name} is {size:,} bytes, over the limit max_file_bytes={max_file_bytes:,}."
        )
    return size


# --- zip archives --------------------------------------------------------------------------


def _open_zip(source: Path | BinaryIO, where: str) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(source)
        shifted = _directory_shift(archive)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, struct.error) as error:
        raise ModelLoadError(f"{where} is a truncated or corrupt zip archive ({error}).") from None
    if shifted:
        archive.close()
        raise ModelLoadError(
            f"{where} is a truncated or corrupt zip archive: its directory is {shifted:,} bytes away "
            "from where it says it is (bytes missing or added before it, or an archive stored "
            "inside another found instead)."
        )
    return archive


def _directory_shift(archive: zipfile.ZipFile) -> int:
    """How far the central directory sits from the offset its end record declares.

    Python's zipfile silently adds this shift to every member's offset (it allows data before
    an archive); torch's reader (miniz) does not. Where it is not zero the two would read
    different bytes for the same member, so inspection could pass what torch then loads; a
    truncated .pt2 whose stored sample-input archive is found in place of its own lands here too.
    """
    end_record = zipfile._EndRecData(archive.fp)  # the record zipfile itself just used
    if not end_record:
        raise zipfile.BadZipFile("no end of central directory record")
    return archive.start_dir - end_record[zipfile._ECD_OFFSET]


def _check_directory(archive: zipfile.ZipFile, where: str, max_bytes: int) -> None:
    """Refuse zip bombs from the directory alone: member count, ratios, declared total."""
    members = archive.infolist()
    if not members:
        raise ModelLoadError(f"{where} is an empty zip archive.")
    if len(members) > MAX_ARCHIVE_MEMBERS:
        raise ModelLoadError(
            f"{where} has {len(members):,} members; at most {MAX_ARCHIVE_MEMBERS:,} are accepted."
        )
    seen: set[str] = set()
    for member in members:
        # torch's reader looks names up ignoring case and picks one of several equal ones:
        # with two, inspection and loading could each read a different member.
        key = member.filename.lower()
        if key in seen:
            raise ModelLoadError(
                f"{where} holds two members named {member.filename!r} (ignoring case); archives "
                "written by torch and numpy never do."
            )
        seen.add(key)
        if member.flag_bits & 0x1:
            raise ModelLoadError(f"{where}: member {member.filename!r} is encrypted.")
        if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ModelLoadError(
                f"{where}: member {member.filename!r} uses zip compression method "
                f"{member.compress_type}; torch archives only store or deflate."
            )
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > RATIO_CHECK_MIN_BYTES and ratio > MAX_COMPRESSION_RATIO:
            raise UnsafeFileError(
                f"{where}: member {member.filename!r} declares {member.file_size:,} bytes from "
                f"{member.compress_size:,} compressed (ratio {ratio:,.0f}, limit "
                f"{MAX_COMPRESSION_RATIO}): this looks like a zip bomb."
            )
    total = sum(member.file_size for member in members)
    if total > max_bytes:
        raise UnsafeFileError(
            f"{where} declares {total:,} bytes uncompressed, over the limit of {max_bytes:,} "
            "(max_file_bytes): this looks like a zip bomb."
        )


def _read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, where: str) -> bytes:
    if member.file_size > MAX_EMBEDDED_BYTES:
        raise ModelLoadError(
            f"{where}: member {member.filename!r} is {member.file_size:,} bytes; at most "
            f"{MAX_EMBEDDED_BYTES:,} are read into memory for inspection."
        )
    try:
        return archive.read(member)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as error:
        raise ModelLoadError(
            f"{where}: member {member.filename!r} is truncated or corrupt ({error})."
        ) from None


def _relative(name: str) -> str:
    """The member path below the archive's top folder (torch writes ``<name>/data.pkl``), in
    lower case: torch's reader finds ``data.pkl`` under ``DATA.PKL`` too."""
    return (name.split("/", 1)[1] if "/" in name else name).lower()


def _archive_kind(archive: zipfile.ZipFile) -> str | None:
    names = {_relative(member.filename) for member in archive.infolist()}
    if "archive_format" in names or "serialized_exported_program.json" in names:
        return TORCH_EXPORT
    if "constants.pkl" in names or any(name.startswith("code/") for name in names):
        return TORCHSCRIPT
    if "data.pkl" in names:
        return TORCH_SAVE
    return None


def _inspect_torch_zip(path: Path, max_file_bytes: int) -> tuple[str, int, int | None]:
    with _open_zip(path, path.name) as archive:
        _check_directory(archive, path.name, max_file_bytes)
        kind = _archive_kind(archive)
        if kind is None:
            raise ModelLoadError(
                f"{path.name} is a zip archive but not one written by torch.save, torch.jit.save "
                "or torch.export.save (no data.pkl, code/ or archive_format inside)."
            )
        parameters = None
        if kind == TORCH_EXPORT:
            parameters = _check_export_archive(archive, path.name)
        else:
            _check_pickle_archive(archive, path.name, kind)
        members = archive.infolist()
        storage = sum(m.file_size for m in members if _relative(m.filename).startswith("data/"))
        return kind, storage, parameters


def _check_pickle_archive(archive: zipfile.ZipFile, where: str, kind: str) -> None:
    """torch.save and TorchScript archives: scan every pickle, and TorchScript's code."""
    allowed = _is_torchscript_global if kind == TORCHSCRIPT else _is_tensor_global
    for member in archive.infolist():
        name = _relative(member.filename)
        if name.endswith("pkl"):  # data.pkl, constants.pkl, *.debug_pkl, bytecode.pkl
            check_pickle(_read_member(archive, member, where), f"{where}:{name}", allowed)
        elif kind == TORCHSCRIPT and name.startswith("code/") and name.endswith(".py"):
            _check_torchscript_code(_read_member(archive, member, where), f"{where}:{name}")


def _check_embedded_archive(data: bytes, where: str) -> None:
    """A torch.save archive inside a .pt2 (sample inputs, pickled weights), which torch.load
    opens, or hands to torch.jit.load when it is TorchScript."""
    with _open_zip(io.BytesIO(data), where) as archive:
        _check_directory(archive, where, MAX_EMBEDDED_BYTES)
        kind = _archive_kind(archive)
        if kind is None:
            raise ModelLoadError(f"{where} is a zip archive that torch.load cannot read (no data.pkl).")
        if kind == TORCH_EXPORT:
            raise UnsafeFileError(f"{where} embeds a torch.export program; torch.export.save never does.")
        _check_pickle_archive(archive, where, kind)


# --- pickles -------------------------------------------------------------------------------

_STRING_OPS = {
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
    "BINUNICODE8",
}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}
_NEUTRAL_OPS = {"PROTO", "FRAME"}  # change nothing on the stack
_UNRESOLVED = "<a global whose name the pickle computes at load time>"


def pickle_globals(stream: bytes | BinaryIO, where: str) -> list[str]:
    """Every global a pickle would import, read with ``pickletools.genops`` (never executed).

    A pickle can only obtain a callable (for REDUCE, BUILD, NEWOBJ, OBJ) by importing it with
    GLOBAL, STACK_GLOBAL or INST, or from copyreg's extension registry (EXT1/2/4); listing those
    is therefore enough to know everything it could call. STACK_GLOBAL takes its names from the
    stack; they are resolved when the two preceding pushes are literal strings (what every
    pickler writes) and reported as unresolved otherwise.

    >>> import pickle, collections
    >>> pickle_globals(pickle.dumps(collections.OrderedDict()), "example")
    ['collections.OrderedDict']
    """
    found: list[str] = []
    recent: list[str | None] = []  # the last two pushes: a literal string, or None for anything else
    memo: dict[int, str | None] = {}
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            name = opcode.name
            if name in _STRING_OPS:
                recent.append(arg if isinstance(arg, str) else None)
            elif name in _PUT_OPS:
                memo[arg] = recent[-1] if recent else None
            elif name == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif name in _GET_OPS:
                recent.append(memo.get(arg))
            elif name not in _NEUTRAL_OPS:
                if name in ("GLOBAL", "INST"):
                    found.append(".".join(arg.split(" ", 1)))
                elif name == "STACK_GLOBAL":
                    module, qualname = recent[-2:] if len(recent) == 2 else (None, None)
                    found.append(f"{module}.{qualname}" if module and qualname else _UNRESOLVED)
                elif name.startswith("EXT"):
                    found.append(f"<copyreg extension code {arg}>")
                recent.append(None)
            del recent[:-2]
    except (ValueError, EOFError, struct.error, UnicodeDecodeError) as error:
        raise ModelLoadError(f"{where} is a truncated or corrupt pickle ({error}).") from None
    return found


def check_pickle(stream: bytes | BinaryIO, where: str, allowed: Callable[[str], bool]) -> None:
    """Raise ``UnsafeFileError`` if the pickle imports any global that ``allowed`` rejects."""
    refused = list(dict.fromkeys(g for g in pickle_globals(stream, where) if not allowed(g)))
    if not refused:
        return
    shown = ", ".join(repr(g) for g in refused[:4])
    if len(refused) > 4:
        shown += f" and {len(refused) - 4} more"
    hint = ""
    if any(g.startswith(("torch.nn.modules.", "__main__.")) for g in refused):
        hint = " It looks like a whole model saved with torch.save(model); save model.state_dict() instead."
    raise UnsafeFileError(
        f"{where} refers to {shown}, which is not a tensor or a plain container: loading it "
        f"would import and run code named by the file, so it was not loaded.{hint} {WHAT_TO_UPLOAD}"
    )


# What torch.save(state_dict) writes (checked against torch 2.13 output): tensors rebuilt from
# storages (quantized ones too), OrderedDicts (state_dicts and empty backward-hook dicts),
# sizes and devices, and _codecs.encode, which protocol 2 uses for bytes; plus torch's
# dtypes, qschemes and storage classes (see _is_tensor_global).
_TENSOR_GLOBALS = frozenset({
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor_v3",
    "torch._utils._rebuild_qtensor",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch.Size",
    "torch.device",
    "_codecs.encode",
})
# TorchScript's C++ unpickler resolves __torch__.* to classes compiled from the archive's own
# code/ (checked separately) and uses these list/type helpers; it cannot import Python names.
_TORCHSCRIPT_HELPERS = frozenset({
    "torch.jit._pickle.build_intlist",
    "torch.jit._pickle.build_doublelist",
    "torch.jit._pickle.build_boollist",
    "torch.jit._pickle.build_tensorlist",
    "torch.jit._pickle.build_tensor_from_id",
    "torch.jit._pickle.restore_type_tag",
})


def _is_tensor_global(name: str) -> bool:
    """The allowlist: tensor rebuilders, containers, and torch's dtypes, qschemes and storages."""
    if name in _TENSOR_GLOBALS:
        return True
    module, _, attribute = name.rpartition(".")
    if module != "torch" or attribute.startswith("_"):
        return False
    value = vars(torch).get(attribute)  # a lookup in torch's namespace, never an import
    if isinstance(value, (torch.dtype, torch.qscheme)):
        return True
    return isinstance(value, type) and issubclass(value, (torch.storage.TypedStorage, torch.UntypedStorage))


def _is_torchscript_global(name: str) -> bool:
    return name.startswith("__torch__.") or name in _TORCHSCRIPT_HELPERS or _is_tensor_global(name)


def _inspect_legacy_pickle(path: Path) -> None:
    # A memory map, not a file: a pickle declaring a huge string must not make read() allocate it.
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:
        is_torch = view[: len(_LEGACY_TORCH_MAGIC)] == _LEGACY_TORCH_MAGIC
        for index in range(_LEGACY_PICKLES if is_torch else 1):
            check_pickle(view, f"{path.name} (pickle {index + 1})", _is_tensor_global)
    if not is_torch:
        raise ModelLoadError(
            f"{path.name} is a plain Python pickle, not a file written by torch.save. {WHAT_TO_UPLOAD}"
        )


# --- TorchScript code ----------------------------------------------------------------------

# Operators a TorchScript program could call to reach the file system (aten::save writes any
# path, aten::from_file maps one, debugprims::load_tensor reads one), and op namespaces beyond
# the computational ones (c10d opens network connections).
_TORCHSCRIPT_DENIED = re.compile(r"\b(save|from_file|load_tensor)\b")
_TORCHSCRIPT_OPS = re.compile(r"\bops\.(\w+)\.")
_TORCHSCRIPT_NAMESPACES = frozenset({"aten", "prim", "prims", "quantized", "_quantized"})


def _check_torchscript_code(source: bytes, where: str) -> None:
    text = source.decode("utf-8", errors="replace")
    denied = _TORCHSCRIPT_DENIED.search(text)
    namespaces = {m.group(1) for m in _TORCHSCRIPT_OPS.finditer(text)} - _TORCHSCRIPT_NAMESPACES
    if denied or namespaces:
        found = repr(denied.group(0)) if denied else "ops." + sorted(namespaces)[0]
        raise UnsafeFileError(
            f"{where} calls {found}, an operator that reaches outside the model (files or "
            f"network); loading or running it would do so, so it was not loaded. {WHAT_TO_UPLOAD}"
        )


# --- torch.export programs -----------------------------------------------------------------

_EXPORT_TEXT_MEMBERS = ("archive_format", "archive_version", "version", "byteorder", ".data/", "extra/")
_NATIVE_SUFFIXES = (".so", ".dll", ".dylib", ".o", ".cpp", ".pyd")


def _check_export_archive(archive: zipfile.ZipFile, where: str) -> int | None:
    """Check a .pt2 member by member; return the parameter count its weight config declares.

    torch.export.load (torch 2.13) deserialises: models/*.json (operators resolved by dotted
    path, shape expressions through sympy.sympify, guards compiled with exec), pickled weights
    and constants via torch.load(weights_only=False), opaque constants via pickle.loads,
    sample inputs via torch.load (falling back to weights_only=False), the 2.7 format's
    serialized_*.pt, and AOTInductor shared libraries. Raw tensor bytes it only copies.
    """
    members = [(_relative(m.filename), m) for m in archive.infolist()]
    raw: dict[str, int] = {}  # member -> values torch copies from it as tensor bytes
    unpickled: set[str] = set()  # members a config tells torch to deserialise
    parameters: int | None = None  # the 2.7 format has no weight config
    for name, member in members:
        if not name.endswith(".json"):
            continue
        document = _read_json(_read_member(archive, member, where), f"{where}:{name}")
        folder = name.rpartition("/")[0]
        if folder in ("data/weights", "data/constants") and name.endswith("_config.json"):
            payloads, pickled = _payloads(document, f"{where}:{name}", constants=folder == "data/constants")
            raw.update((f"{folder}/{path_name}".lower(), count) for path_name, count in payloads.items())
            unpickled.update(f"{folder}/{path_name}".lower() for path_name in pickled)
            if folder == "data/weights":
                parameters = (parameters or 0) + sum(payloads.values())
        else:
            _check_program_json(document, f"{where}:{name}")
    for name, member in members:
        if name in raw and name not in unpickled and raw[name] > 0 and member.file_size == 0:
            # torch.export.load materialises an empty payload as zeros of the declared size.
            raise ModelLoadError(
                f"{where}: payload {name!r} declares {raw[name]:,} values but is empty; the file "
                "is truncated or corrupt."
            )
        # A member one entry reads as raw bytes and another unpickles is scanned as a pickle.
        skipped = name.endswith(".json") or name in raw or name.startswith(_EXPORT_TEXT_MEMBERS)
        if skipped and name not in unpickled:
            continue
        if name.startswith("data/aotinductor/") or name.endswith(_NATIVE_SUFFIXES):
            raise UnsafeFileError(
                f"{where} contains compiled native code ({name}); loading it would run that "
                f"code. {WHAT_TO_UPLOAD}"
            )
        data = _read_member(archive, member, where)  # everything left is deserialised
        if data.startswith(_ZIP_MAGIC):
            _check_embedded_archive(data, f"{where}:{name}")
        elif data.startswith(b"\x80"):
            check_pickle(data, f"{where}:{name}", _is_tensor_global)
        else:
            raise ModelLoadError(f"{where}: member {name!r} is neither raw weights, a pickle nor an archive.")
    return parameters


def _read_json(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"{where} is not valid JSON ({error}).") from None
    except RecursionError:
        raise ModelLoadError(f"{where} is not a model file's JSON: it nests too deeply to read.") from None


# torch.export.load unpickles constants whose file name starts with these, whatever use_pickle says.
_PICKLED_CONSTANT_PREFIXES = ("custom_obj_", "opaque_obj_")


def _payloads(config: Any, where: str, *, constants: bool) -> tuple[dict[str, int], set[str]]:
    """A weights/constants config's payloads: those torch copies as raw bytes, with their
    element counts, and those it deserialises (pickled tensors, custom and opaque objects)."""
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise ModelLoadError(f"{where} is not a torch.export payload config.")
    raw: dict[str, int] = {}
    pickled: set[str] = set()
    for meta in entries.values():
        if not isinstance(meta, dict) or not isinstance(meta.get("path_name"), str):
            raise ModelLoadError(f"{where} is not a torch.export payload config: an entry has no path_name.")
        path_name = meta["path_name"]
        if meta.get("use_pickle") or (constants and path_name.startswith(_PICKLED_CONSTANT_PREFIXES)):
            pickled.add(path_name)
            continue
        sizes = (meta.get("tensor_meta") or {}).get("sizes") or []
        dims = [s.get("as_int") if isinstance(s, dict) else None for s in sizes]
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims):
            raise ModelLoadError(
                f"{where}: payload {path_name!r} has sizes {sizes!r}; stored tensors have fixed, "
                "non-negative sizes."
            )
        raw[path_name] = max(raw.get(path_name, 0), math.prod(dims))
    return raw, pickled


def _walk(document: Any) -> Iterator[tuple[str | None, Any]]:
    """Every (key, value) pair of a JSON document, depth first; list items get the list's key."""
    stack: list[tuple[str | None, Any]] = [(None, document)]
    while stack:
        key, value = stack.pop()
        yield key, value
        if isinstance(value, dict):
            stack.extend(value.items())
        elif isinstance(value, list):
            stack.extend((key, item) for item in value)


def _check_program_json(document: Any, where: str) -> None:
    for key, value in _walk(document):
        if key == "expr_str" and isinstance(value, str):
            _check_expression(value, where, guard=False)
        elif key == "guards_code" and isinstance(value, str):
            _check_expression(value, where, guard=True)
        elif isinstance(value, dict) and isinstance(value.get("target"), str) and "inputs" in value:
            _check_operator(value["target"], where)


# Operators a graph node may call. The deserialiser resolves any dotted path under torch,
# operator or math by getattr, so only registered aten/prims operators, higher-order operators,
# and the Python operators export writes for shape arithmetic are let through; everything else
# (torch.serialization.os.system, torch.ops.aten.__class__, ...) is refused.
_DENIED_OPERATORS = frozenset({"save", "from_file", "load_tensor"})
_PYTHON_OPERATORS = frozenset({
    "getitem", "eq", "ne", "le", "ge", "lt", "gt", "neg", "pos", "add", "sub", "mul",
    "truediv", "floordiv", "mod", "pow", "and_", "or_", "lshift", "rshift",
})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@functools.cache
def _registered_operators() -> frozenset[str]:
    """``"aten::linear"`` and the like: every operator registered with the dispatcher."""
    return frozenset(schema.name for schema in torch._C._jit_get_all_schemas())


def _is_safe_operator(target: str) -> bool:
    parts = target.split(".")
    if not all(_IDENTIFIER.match(part) for part in parts):
        return False
    if len(parts) == 2:
        head, name = parts
        return (
            (head == "_operator" and name in _PYTHON_OPERATORS)
            or (head == "math" and not name.startswith("_"))
            or (head == "torch" and name.lstrip("_").startswith("sym_"))
        )
    if len(parts) not in (4, 5) or parts[:2] != ["torch", "ops"]:
        return False
    namespace, name, overload = parts[2], parts[3], parts[4] if len(parts) == 5 else ""
    if namespace == "higher_order":
        return len(parts) == 4 and not name.startswith("_")
    registered = namespace in ("aten", "prims") and f"{namespace}::{name}" in _registered_operators()
    return registered and name not in _DENIED_OPERATORS and not overload.startswith("_")


def _check_operator(target: str, where: str) -> None:
    if not _is_safe_operator(target):
        raise UnsafeFileError(
            f"{where} calls {target!r}, which is not a tensor operator; running the program "
            f"would call it. {WHAT_TO_UPLOAD}"
        )


# Names a shape expression may use: sympy's printed classes and torch's shape functions.
_SYMPY_NAMES = frozenset({
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Mod", "Max", "Min", "Abs",
    "floor", "ceiling", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "StrictLessThan", "LessThan",
    "StrictGreaterThan", "GreaterThan", "Equality", "Unequality", "And", "Or", "Not", "Piecewise",
    "ExprCondPair", "true", "false", "oo", "zoo", "nan", "int_oo", "Infinity", "NegativeInfinity",
    "IntInfinity", "NegativeIntInfinity", "One", "Zero", "NegativeOne", "Half", "BooleanTrue",
    "BooleanFalse", "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt",
    "FloorToInt", "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv",
    "IntTrueDiv", "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt",
    "RoundToInt", "RoundDecimal", "ToFloat", "Identity", "TrueDiv", "sym_sqrt", "sym_max",
    "sym_min", "sym_float", "sym_int", "sym_ite",
})
_SHAPE_SYMBOL = re.compile(r"[a-z]+[0-9]+\Z")  # s0, u3, zuf0: export's shape variables
_GUARD_METHODS = frozenset({"size", "stride", "storage_offset", "dim", "numel"})
_SAFE_STRING = re.compile(r"[A-Za-z0-9_.+\-]*\Z")  # names and numbers: no quote to break out of
_EXPRESSION_NODES = (
    ast.Expression, ast.Call, ast.Name, ast.Constant, ast.keyword, ast.BinOp, ast.UnaryOp,
    ast.Compare, ast.BoolOp, ast.Tuple, ast.Load, ast.operator, ast.unaryop, ast.cmpop, ast.boolop,
)


def _check_expression(text: str, where: str, *, guard: bool) -> None:
    """Refuse a shape expression or guard that is more than arithmetic on shapes.

    Export stores both as Python source: sympy.sympify evaluates expressions and guards are
    compiled with exec, so ``__import__('os').system(...)`` in either would run.
    """
    try:
        tree = None if "\n" in text or "#" in text else ast.parse(text, mode="eval")
    except SyntaxError:
        tree = None
    if tree is None or not all(_expression_node_ok(node, guard) for node in ast.walk(tree)):
        raise UnsafeFileError(
            f"{where} holds the shape {'guard' if guard else 'expression'} {text[:120]!r}, which "
            f"is not arithmetic on shapes; loading the program would evaluate it as Python. "
            f"{WHAT_TO_UPLOAD}"
        )


def _expression_node_ok(node: ast.AST, guard: bool) -> bool:
    if isinstance(node, ast.Name):
        allowed = node.id in _SYMPY_NAMES or bool(_SHAPE_SYMBOL.match(node.id))
        return allowed or (guard and node.id in ("L", "math"))
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str):
            return bool(_SAFE_STRING.match(node.value))
        return not isinstance(node.value, bytes)
    if isinstance(node, ast.keyword):
        return node.arg is not None
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Name):
            return node.func.id in _SYMPY_NAMES
        return guard and isinstance(node.func, ast.Attribute)  # checked as a node of its own
    if guard and isinstance(node, ast.Attribute):
        on_math = isinstance(node.value, ast.Name) and node.value.id == "math"
        return node.attr in _GUARD_METHODS or (on_math and not node.attr.startswith("_"))
    if guard and isinstance(node, ast.Subscript):
        return True  # L['x'].size()[0]: its value and index are checked as nodes of their own
    return isinstance(node, _EXPRESSION_NODES)


# --- safetensors ---------------------------------------------------------------------------

_SAFETENSORS_ITEM_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 8 + length <= size


def read_safetensors_header(path: str | os.PathLike) -> dict[str, dict]:
    """The tensor table of a safetensors file, checked against the file's actual length.

    >>> read_safetensors_header("mlp.safetensors")["fc1.weight"]["shape"]  # doctest: +SKIP
    [256, 64]
    """
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as stream:
        prefix = stream.read(8)
        if len(prefix) < 8:
            raise ModelLoadError(
                f"{path.name} is truncated: {size} bytes, shorter than a safetensors header."
            )
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_SAFETENSORS_HEADER_BYTES:
            raise ModelLoadError(
                f"{path.name}: the safetensors header claims {length:,} bytes (limit "
                f"{MAX_SAFETENSORS_HEADER_BYTES:,}); the file is corrupt or not safetensors."
            )
        if 8 + length > size:
            raise ModelLoadError(
                f"{path.name} is truncated: its safetensors header claims {length:,} bytes but "
                f"the file has only {size - 8:,} after the length prefix."
            )
        raw_header = stream.read(length)
    try:
        header = json.loads(raw_header)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelLoadError(
            f"{path.name} has a garbage safetensors header: not valid JSON ({error})."
        ) from None
    except RecursionError:
        raise ModelLoadError(f"{path.name} has a garbage safetensors header: it nests too deeply.") from None
    if not isinstance(header, dict):
        raise ModelLoadError(f"{path.name} has a garbage safetensors header: not a JSON object.")
    tensors = {name: entry for name, entry in header.items() if name != "__metadata__"}
    for name, entry in tensors.items():
        _check_safetensors_entry(path.name, name, entry, size - 8 - length)
    _check_safetensors_layout(path.name, tensors, size - 8 - length)
    return tensors


def _check_safetensors_layout(where: str, tensors: dict[str, dict], data_bytes: int) -> None:
    """Tensors must tile the data section end to end: no overlap, no gap, nothing after."""
    position, previous = 0, None
    for name, entry in sorted(tensors.items(), key=lambda item: tuple(item[1]["data_offsets"])):
        begin, end = entry["data_offsets"]
        if begin != position:
            after = f"after tensor {previous!r}, which ends at byte {position:,}" if previous else "at byte 0"
            raise ModelLoadError(
                f"{where}: tensor {name!r} starts at byte {begin:,} of the data, but tensors must "
                f"follow each other without overlap or gap and the next one should start {after}; "
                "the header is corrupt."
            )
        position, previous = end, name
    if position != data_bytes:
        raise ModelLoadError(
            f"{where}: the tensors cover {position:,} bytes of data but the file holds {data_bytes:,} "
            "after the header; it is corrupt or has bytes appended."
        )


def _check_safetensors_entry(where: str, name: str, entry: Any, data_bytes: int) -> None:
    valid = (
        isinstance(entry, dict)
        and entry.get("dtype") in _SAFETENSORS_ITEM_BYTES
        and isinstance(entry.get("shape"), list)
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in entry["shape"])
        and isinstance(entry.get("data_offsets"), list)
        and len(entry["data_offsets"]) == 2
        and all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in entry["data_offsets"])
    )
    if not valid:
        raise ModelLoadError(f"{where} has a garbage safetensors header: entry {name!r} is {str(entry)[:200]}.")
    begin, end = entry["data_offsets"]
    if end < begin:
        raise ModelLoadError(f"{where}: tensor {name!r} has data_offsets [{begin}, {end}], which end before they begin.")
    expected = math.prod(entry["shape"]) * _SAFETENSORS_ITEM_BYTES[entry["dtype"]]
    if end - begin != expected:
        raise ModelLoadError(
            f"{where}: tensor {name!r} spans {end - begin} bytes but its dtype and shape need {expected}."
        )
    if end > data_bytes:
        raise ModelLoadError(
            f"{where} is truncated: tensor {name!r} ends at byte {end:,} of the data but the file "
            f"holds only {data_bytes:,}."
        )


def safetensors_parameter_count(header: dict[str, dict]) -> int:
    return sum(math.prod(entry["shape"]) for entry in header.values())


# --- Hugging Face folders ------------------------------------------------------------------


def inspect_hf_folder(folder: str | os.PathLike, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> int:
    """Check a Hugging Face model folder; return a lower bound on its stored values.

    Refuses configs that need the model's own Python code (``auto_map``) and inspects every
    file transformers may read weights from.
    """
    folder = Path(folder)
    for config_name in ("config.json", "tokenizer_config.json"):
        config_path = folder / config_name
        if not config_path.is_file():
            continue
        config = _read_json(config_path.read_bytes(), f"{folder.name}/{config_name}")
        if isinstance(config, dict) and ("auto_map" in config or config.get("trust_remote_code")):
            raise UnsafeFileError(
                f"{folder.name}/{config_name} asks for custom code (auto_map / trust_remote_code): "
                "loading it would run Python files shipped with the model. Use a model whose "
                "architecture is built into transformers, or export it with torch.export (.pt2)."
            )
    # Not every *.bin: transformers never opens training_args.bin and the like.
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("pytorch_model*.bin"))
    if not weights:
        raise ModelLoadError(
            f"{folder.name} has a config.json but no model.safetensors or pytorch_model.bin."
        )
    return sum(inspect_file(path, max_file_bytes=max_file_bytes).minimum_parameters for path in weights)
