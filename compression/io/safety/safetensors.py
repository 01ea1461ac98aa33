"""safetensors files: the JSON header checked against the file's bytes before any tensor is read.

The format holds no code, but a lying header can still ask for more bytes than the file
holds or overlap tensors; every entry must have a known dtype, a shape that fits its
offsets, and the tensors must tile the data section exactly.
"""
from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any

from compression.errors import ModelLoadError

MAX_SAFETENSORS_HEADER_BYTES = 100 * 1024**2  # safetensors' own limit
_SAFETENSORS_ITEM_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}
# torch's names for them, as StoredWeights reports dtypes
SAFETENSORS_DTYPE_NAMES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "I16": "int16", "U16": "uint16", "F16": "float16", "BF16": "bfloat16", "I32": "int32", "U32": "uint32",
    "F32": "float32", "I64": "int64", "U64": "uint64", "F64": "float64", "C64": "complex64",
}


def looks_like_safetensors(head: bytes, size: int) -> bool:
    """Whether a file's first bytes are a header length that fits the file, then a JSON object."""
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
    """The values stored, from the header's shapes alone."""
    return sum(math.prod(entry["shape"]) for entry in header.values())


def safetensors_bytes_by_dtype(header: dict[str, dict]) -> dict[str, int]:
    """The data bytes of each dtype (torch's name), from a checked header alone."""
    totals: dict[str, int] = {}
    for entry in header.values():
        begin, end = entry["data_offsets"]
        name = SAFETENSORS_DTYPE_NAMES[entry["dtype"]]
        totals[name] = totals.get(name, 0) + end - begin
    return totals
