"""Evaluation data files (.npz): the archive and each member's .npy header, before numpy opens them.

numpy allocates a member's declared shape before reading it and unpickles object arrays, so
both are checked from the headers alone.
"""
from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from compression.errors import DataError, ModelLoadError, UnsafeFileError
from compression.io.safety.archives import EMPTY_ZIP_MAGIC, ZIP_MAGIC, check_directory, open_zip
from compression.io.safety.limits import DEFAULT_MAX_FILE_BYTES, checked_size

_NPY_MAGIC = b"\x93NUMPY"
_NPY_MAX_HEADER_BYTES = 10_000  # numpy's own default limit for np.load


def inspect_npz(path: str | os.PathLike, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> None:
    """Check a .npz archive before numpy opens it: size, directory (zip bombs) and each
    member's .npy header, whose shape must fit the bytes the member holds.

    Raises ``DataError`` for empty, oversized, corrupt or non-.npz files and object arrays,
    ``UnsafeFileError`` for bombs.
    """
    path = Path(path)
    try:
        checked_size(path, max_file_bytes, "data file")
        with path.open("rb") as stream:
            head = stream.read(8)
        if head.startswith(_NPY_MAGIC):
            raise DataError(
                f"{path.name} is a single .npy array (numpy.save), not an .npz archive; save the "
                "data with numpy.savez(path, x=inputs, y=labels)."
            )
        if not head.startswith((ZIP_MAGIC, EMPTY_ZIP_MAGIC)):
            raise DataError(
                f"{path.name} is not an .npz archive (numpy.savez writes a zip archive; this "
                f"file starts with {head!r}). Save the data with numpy.savez(path, x=inputs, y=labels)."
            )
        with open_zip(path, path.name) as archive:
            check_directory(archive, path.name, max_file_bytes)
            for member in archive.infolist():
                _check_npy_member(archive, member, path.name)
    except UnsafeFileError:
        raise
    except ModelLoadError as error:
        raise DataError(str(error)) from None


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
