"""A user's evaluation text: the documents of a ``.txt`` (one per line) or a ``.jsonl`` file
(one JSON object per line with a string ``text`` field), read within the file size limit.

Blank lines are skipped; a byte order mark is allowed. Bytes that are not UTF-8, or a JSON line
without its text, are refused in one line saying where.

>>> Path("notes.txt").write_text("First document.\\n\\nSecond one.\\n")  # doctest: +SKIP
>>> read_documents("notes.txt")  # doctest: +SKIP
['First document.', 'Second one.']
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from compression.errors import DataError, ModelLoadError
from compression.io.safety.limits import DEFAULT_MAX_FILE_BYTES, checked_size

TEXT_SUFFIXES = (".txt", ".jsonl")


def is_text_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` names evaluation text (by its suffix: the content is any UTF-8)."""
    return Path(path).suffix.lower() in TEXT_SUFFIXES


def read_documents(path: str | os.PathLike, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> list[str]:
    """The file's documents, in order: its non-blank lines, or the ``text`` of each JSON line."""
    path = Path(path)
    try:
        checked_size(path, max_file_bytes, "data file")
    except ModelLoadError as error:
        raise DataError(str(error)) from None
    lines = _decoded(path.read_bytes(), path.name).splitlines()
    if path.suffix.lower() == ".jsonl":
        documents = [_jsonl_text(line, number, path.name) for number, line in enumerate(lines, 1) if line.strip()]
    else:
        documents = [line.strip() for line in lines]
    documents = [document for document in documents if document.strip()]
    if not documents:
        raise DataError(f"{path.name} holds no text: every line (or its 'text') is blank.")
    return documents


def _decoded(content: bytes, where: str) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = content[: error.start].count(b"\n") + 1
        raise DataError(
            f"{where} is not UTF-8 text: byte 0x{content[error.start]:02x} on line {line} "
            f"(offset {error.start:,}); save the file as UTF-8."
        ) from None


def _jsonl_text(line: str, number: int, where: str) -> str:
    """The ``text`` field of one JSON line."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as error:
        reason = error.msg if isinstance(error, json.JSONDecodeError) else "nested too deeply"
        raise DataError(f"{where} line {number} is not JSON ({reason}); each line must be an object with a 'text' field.") from None
    text = record.get("text") if isinstance(record, dict) else None
    if not isinstance(text, str):
        raise DataError(f"{where} line {number} has no string 'text' field; each line must be like {{\"text\": \"...\"}}.")
    return text
