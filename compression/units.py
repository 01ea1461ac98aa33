"""Byte counts written for people: one spelling for the command line and the dashboard.

Binary units (1 KiB = 1024 B), as the file sizes they describe are counted.

>>> [format_bytes(n) for n in (512, 1536, 3 * 1024**2, 5 * 1024**3)]
['512 B', '1.5 KiB', '3.0 MiB', '5.0 GiB']
"""
from __future__ import annotations

_UNITS = ("B", "KiB", "MiB", "GiB")


def format_bytes(count: int) -> str:
    """``count`` bytes in the largest unit it fills, to one decimal (whole bytes below 1 KiB)."""
    if count < 1024:
        return f"{count:.0f} B"
    value = float(count)
    for unit in _UNITS[1:]:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")
