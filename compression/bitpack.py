"""Fixed-width bit packing of non-negative integer codes, little-endian within each byte.

Value i occupies bits [i·w, (i+1)·w) of the stream. Hand-written because neither numpy nor
torch packs widths other than 1 bit. Fast path: a run of values whose bits fill whole bytes
(8 values of w ≤ 8 bits, 4 values of an even w ≤ 16) is summed into one uint64 and its low
bytes are kept; other widths go through a bit matrix.

>>> unpack_bits(pack_bits(np.array([1, 2, 3]), 2), 2, 3).tolist()
[1, 2, 3]
"""
from __future__ import annotations

import numpy as np


def packed_size(count: int, width: int) -> int:
    """Bytes that :func:`pack_bits` writes for ``count`` values of ``width`` bits."""
    return (count * width + 7) // 8


def pack_bits(values: np.ndarray, width: int) -> np.ndarray:
    """Pack ``values`` (each < 2**width) into a uint8 array of ``packed_size`` bytes."""
    values = np.ascontiguousarray(values).reshape(-1)
    if width == 0 or values.size == 0:
        return np.zeros(packed_size(values.size, width), dtype=np.uint8)
    if width in (8, 16, 32):
        return values.astype(f"<u{width // 8}").view(np.uint8)
    run = _run_length(width)
    if run:
        run_bytes = run * width // 8
        padded = np.zeros(-(-values.size // run) * run, dtype=np.uint64)
        padded[: values.size] = values
        lanes = padded.reshape(-1, run)
        words = np.zeros(lanes.shape[0], dtype="<u8")
        for lane in range(run):
            words |= lanes[:, lane] << np.uint64(lane * width)
        kept = words.view(np.uint8).reshape(-1, 8)[:, :run_bytes].reshape(-1)
        return np.ascontiguousarray(kept[: packed_size(values.size, width)])
    bits = ((values.astype(np.uint32)[:, None] >> np.arange(width, dtype=np.uint32)) & 1).astype(np.uint8)
    return np.packbits(bits.reshape(-1), bitorder="little")


def _run_length(width: int) -> int:
    """How many values fill whole bytes within one uint64, or 0 where none do."""
    if width <= 8:
        return 8
    if width <= 16 and width % 2 == 0:
        return 4
    return 0


def unpack_bits(packed: np.ndarray, width: int, count: int) -> np.ndarray:
    """The ``count`` values of ``width`` bits stored in ``packed``, as int64."""
    if packed.size != packed_size(count, width):
        raise ValueError(f"expected {packed_size(count, width)} bytes for {count} × {width} bits, got {packed.size}")
    if width == 0 or count == 0:
        return np.zeros(count, dtype=np.int64)
    if width in (8, 16, 32):
        return packed.view(f"<u{width // 8}").astype(np.int64)
    run = _run_length(width)
    if run:
        run_bytes = run * width // 8
        runs = -(-count // run)
        stream = np.zeros(runs * run_bytes, dtype=np.uint8)
        stream[: packed.size] = packed
        padded = np.zeros((runs, 8), dtype=np.uint8)
        padded[:, :run_bytes] = stream.reshape(runs, run_bytes)
        words = padded.reshape(-1).view("<u8")
        shifts = np.arange(run, dtype=np.uint64) * np.uint64(width)
        lanes = (words[:, None] >> shifts) & np.uint64(2**width - 1)
        return lanes.reshape(-1)[:count].astype(np.int64)
    bits = np.unpackbits(packed, bitorder="little")[: count * width].reshape(count, width).astype(np.int64)
    return (bits << np.arange(width, dtype=np.int64)).sum(axis=1)
