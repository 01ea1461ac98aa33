"""A journal of finished points: one JSON line each, appended as it finishes, so no work is lost.

A point is keyed by what decides its numbers: the task (``sweep``), the model's weights
fingerprint, the evaluation data's fingerprint and the recipe's canonical JSON. The file is
an append-only log by design: a line, once written and synced, is never rewritten. A crash
can tear only the last line (no newline yet); reading ignores it and the next append cuts
it off first. Results (CSV, packed files) are still written whole, at the end.

>>> import pathlib, tempfile
>>> journal = Journal(pathlib.Path(tempfile.mkdtemp()) / "sweep.jsonl")
>>> key = PointKey("sweep", "7c36c886493460bf", "0a1b2c3d4e5f6071", '{"prune": {"amount": 0.5}}')
>>> journal.append(key, {"value": 0.93})
>>> journal.read()
{PointKey(task='sweep', model='7c36c886493460bf', data='0a1b2c3d4e5f6071', recipe='{"prune": {"amount": 0.5}}'): {'value': 0.93}}
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from compression.errors import CompressionError


class PointKey(NamedTuple):
    """What decides a point's numbers; equal keys mean the same measurement."""

    task: str
    model: str  # weights fingerprint
    data: str  # evaluation data fingerprint
    recipe: str  # canonical recipe JSON


class Journal:
    """The journal file at ``path`` (created on the first append)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._torn_checked = False

    def read(self) -> dict[PointKey, dict[str, Any]]:
        """Every complete line's point; a torn last line (a crash mid-write) is left out."""
        if not self.path.exists():
            return {}
        points = {}
        lines = self.path.read_bytes().split(b"\n")
        for number, line in enumerate(lines[:-1], start=1):  # the part after the last newline is torn
            try:
                entry = json.loads(line)
                points[PointKey(**entry["key"])] = entry["measurement"]
            except (ValueError, KeyError, TypeError):
                raise CompressionError(
                    f"journal {str(self.path)!r} line {number} is not a journal entry; give another journal path."
                ) from None
        return points

    def append(self, key: PointKey, measurement: dict[str, Any]) -> None:
        """Add one point and sync it to disk before returning: a crash after this keeps it."""
        line = json.dumps({"key": key._asdict(), "measurement": measurement}, separators=(",", ":")) + "\n"
        with open(self.path, "ab") as handle:
            if not self._torn_checked:
                self._cut_torn_line(handle)
            handle.write(line.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())

    def _cut_torn_line(self, handle: Any) -> None:
        """Drop what a crash left after the last newline, so the next line starts a line."""
        self._torn_checked = True
        content = self.path.read_bytes()
        if content and not content.endswith(b"\n"):
            handle.truncate(content.rfind(b"\n") + 1)
