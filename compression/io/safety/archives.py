"""Zip archives (torch.save, TorchScript, .pt2, .npz) opened and checked before a member is read.

Bombs are refused from the directory alone (member count, compression ratios, declared
total), and so are archives that Python's zipfile and torch's reader would read differently:
a shifted directory, two names equal ignoring case. ``archive_kind`` tells torch's three
archive layouts apart by their member names.
"""
from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

from compression.errors import ModelLoadError, UnsafeFileError
from compression.io.safety.limits import MAX_EMBEDDED_BYTES
from compression.io.safety.report import TORCH_EXPORT, TORCH_SAVE, TORCHSCRIPT

ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"
MAX_ARCHIVE_MEMBERS = 100_000
MAX_COMPRESSION_RATIO = 100  # torch archives are stored or lightly deflated; bombs reach 1000+
RATIO_CHECK_MIN_BYTES = 1024**2  # small members may compress well legitimately



def open_zip(source: Path | BinaryIO, where: str) -> zipfile.ZipFile:
    """The archive, opened only if Python's zipfile and torch's reader agree on where its members are."""
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


def check_directory(archive: zipfile.ZipFile, where: str, max_bytes: int) -> None:
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


def read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, where: str) -> bytes:
    """A member's bytes, at most ``MAX_EMBEDDED_BYTES`` of them."""
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


def relative_name(name: str) -> str:
    """The member path below the archive's top folder (torch writes ``<name>/data.pkl``), in
    lower case: torch's reader finds ``data.pkl`` under ``DATA.PKL`` too."""
    return (name.split("/", 1)[1] if "/" in name else name).lower()


def archive_kind(archive: zipfile.ZipFile) -> str | None:
    """Which torch writer made the archive, told by its member names; None for none of them."""
    names = {relative_name(member.filename) for member in archive.infolist()}
    if "archive_format" in names or "serialized_exported_program.json" in names:
        return TORCH_EXPORT
    if "constants.pkl" in names or any(name.startswith("code/") for name in names):
        return TORCHSCRIPT
    if "data.pkl" in names:
        return TORCH_SAVE
    return None
