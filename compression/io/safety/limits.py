"""The bounds every scanner keeps while it reads: file size, bytes held in memory, JSON depth.

(The limits on what a model may hold once loaded, parameters and values, are
``compression.io.limits``.)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compression.errors import ModelLoadError

DEFAULT_MAX_FILE_BYTES = 2 * 1024**3
MAX_EMBEDDED_BYTES = 512 * 1024**2  # one pickle, JSON or nested archive read into memory


def checked_size(path: Path, max_file_bytes: int, what: str) -> int:
    """The size of a regular, non-empty file within ``max_file_bytes``; ``what`` names it in errors."""
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


def read_json(data: bytes, where: str) -> Any:
    """A JSON document, or ``ModelLoadError`` for invalid or too deeply nested JSON."""
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"{where} is not valid JSON ({error}).") from None
    except RecursionError:
        raise ModelLoadError(f"{where} is not a model file's JSON: it nests too deeply to read.") from None
