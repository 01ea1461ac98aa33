"""Labelled images on disk: a folder, or a ``.zip``, of PNG/JPEG files in class subfolders
(``cat/1.png``, ``dog/7.jpg``), each image's label its folder's name.

A zip is untrusted: its directory is checked before any member is read (member count,
compression ratios, declared total; ``compression.io.safety.archives``), members are read into
memory and never extracted, and a member whose path is absolute or climbs out with ``..`` is
refused. At most ``limit`` images are read, taken in turn from each class folder so that every
class is in the sample. Files beside the class folders that are not images are left alone, as
are hidden files and the ``__MACOSX`` folder some zip tools add.

>>> images, total = read_labelled_images("pets.zip", max_file_bytes=2**30, limit=256)  # doctest: +SKIP
>>> images[0].label, total  # doctest: +SKIP
('cat', 40)
"""
from __future__ import annotations

import itertools
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeVar

from compression.errors import DataError, ModelLoadError, UnsafeFileError
from compression.io.safety.archives import check_directory, open_zip, read_member
from compression.io.safety.limits import checked_size

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_ITEM = TypeVar("_ITEM")


@dataclass(frozen=True)
class LabelledImage:
    """One image file's bytes, its class folder's name and where it was (for messages)."""

    label: str
    name: str
    content: bytes


def is_image_collection(path: str | os.PathLike) -> bool:
    """Whether ``path`` is meant as labelled images: a folder, or a file named ``.zip``."""
    path = Path(path)
    return path.is_dir() or path.suffix.lower() == ".zip"


def read_labelled_images(
    path: str | os.PathLike, *, max_file_bytes: int, limit: int
) -> tuple[list[LabelledImage], int]:
    """Up to ``limit`` images in turn from each class, and how many images there are in all."""
    path = Path(path)
    try:
        if path.is_dir():
            return _read_folder(path, max_file_bytes, limit)
        checked_size(path, max_file_bytes, "data file")
        with open_zip(path, path.name) as archive:
            check_directory(archive, path.name, max_file_bytes)
            return _read_zip(archive, path.name, limit)
    except UnsafeFileError:
        raise
    except ModelLoadError as error:
        raise DataError(str(error)) from None


def _read_folder(folder: Path, max_file_bytes: int, limit: int) -> tuple[list[LabelledImage], int]:
    classes = {
        sub.name: [file for file in sorted(sub.iterdir()) if file.is_file() and _is_image(file.name)]
        for sub in sorted(folder.iterdir()) if sub.is_dir() and not sub.name.startswith(".")
    }
    if not any(classes.values()) and any(_is_image(file.name) for file in folder.iterdir()):
        raise DataError(f"{folder.name} holds images but no class subfolders; put each class's images in a folder named after it (cat/1.png).")
    chosen, total = _in_turn(classes, limit, folder.name)
    images, read = [], 0
    for label, file in chosen:
        read += checked_size(file, max_file_bytes, "image")
        if read > max_file_bytes:
            raise DataError(f"{folder.name}: the images read come to over {max_file_bytes:,} bytes (max_file_bytes).")
        images.append(LabelledImage(label, f"{label}/{file.name}", file.read_bytes()))
    return images, total


def _read_zip(archive: zipfile.ZipFile, where: str, limit: int) -> tuple[list[LabelledImage], int]:
    classes: dict[str, list[zipfile.ZipInfo]] = {}
    for member in archive.infolist():
        parts = _member_parts(member.filename, where)
        if member.is_dir() or not _is_image(parts[-1]) or parts[0] == "__MACOSX":
            continue
        if len(parts) < 2:
            raise DataError(f"{where}: image {member.filename!r} is in no class folder; zip folders named after the classes (cat/1.png).")
        classes.setdefault(parts[-2], []).append(member)
    chosen, total = _in_turn(classes, limit, where)
    return [LabelledImage(label, member.filename, read_member(archive, member, where)) for label, member in chosen], total


def _member_parts(name: str, where: str) -> tuple[str, ...]:
    """A member's path parts, refusing paths that would land outside a folder it was unpacked in."""
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or "\\" in name or re.match(r"[A-Za-z]:", name) or ".." in parts:
        raise DataError(
            f"{where}: member {name!r} points outside the archive (an absolute or '..' path); "
            "zip the class folders themselves."
        )
    return parts or ("",)


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def _in_turn(classes: dict[str, list[_ITEM]], limit: int, where: str) -> tuple[list[tuple[str, _ITEM]], int]:
    """The first image of each class, then the second of each, ... up to ``limit``; and the total."""
    total = sum(len(items) for items in classes.values())
    if total == 0:
        raise DataError(f"{where} holds no PNG or JPEG images in class subfolders (cat/1.png, dog/2.jpg).")
    ranks = itertools.zip_longest(*([(label, item) for item in items] for label, items in classes.items()))
    chosen = (pair for rank in ranks for pair in rank if pair is not None)
    return list(itertools.islice(chosen, limit)), total
