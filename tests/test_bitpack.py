"""Specification of fixed-width bit packing: every width 0–32 round-trips in packed_size bytes."""
from __future__ import annotations

import numpy as np
import pytest

from compression.bitpack import pack_bits, packed_size, unpack_bits

WIDTHS = list(range(0, 33))
COUNTS = [0, 1, 7, 8, 9, 31, 1001]


def codes(width: int, count: int, seed: int = 0) -> np.ndarray:
    """Random codes of ``width`` bits, with the extremes 0 and 2^width - 1 included."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2**width, size=count, dtype=np.int64) if width else np.zeros(count, dtype=np.int64)
    if count >= 2:
        values[0], values[-1] = 0, 2**width - 1
    return values


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("count", COUNTS)
def test_pack_then_unpack_gives_the_values_back(width: int, count: int) -> None:
    values = codes(width, count)
    assert np.array_equal(unpack_bits(pack_bits(values, width), width, count), values)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("count", COUNTS)
def test_packed_bytes_equal_packed_size(width: int, count: int) -> None:
    packed = pack_bits(codes(width, count), width)
    assert packed.dtype == np.uint8
    assert packed.size == packed_size(count, width)


def test_packed_size_is_the_bits_rounded_up_to_whole_bytes() -> None:
    assert [packed_size(count, width) for count, width in [(0, 5), (1, 1), (8, 1), (9, 1), (3, 3), (5, 32)]] == [
        0, 1, 1, 2, 2, 20,
    ]


def test_values_are_little_endian_within_each_byte() -> None:
    assert pack_bits(np.array([1, 0, 0, 0, 0, 0, 0, 1]), 1).tolist() == [0b10000001]
    assert pack_bits(np.array([0x1, 0x2]), 4).tolist() == [0x21]


def test_a_value_may_straddle_a_byte_boundary() -> None:
    assert pack_bits(np.array([0b111, 0b101, 0b110]), 3).tolist() == [0b10101111, 0b1]


def test_the_widest_values_do_not_spill_into_their_neighbours() -> None:
    for width in WIDTHS[1:]:
        values = np.array([2**width - 1, 0, 2**width - 1, 0, 0, 2**width - 1, 0, 0, 0], dtype=np.int64)
        assert np.array_equal(unpack_bits(pack_bits(values, width), width, values.size), values)


def test_width_zero_stores_nothing_and_unpacks_zeros() -> None:
    assert pack_bits(np.zeros(10, dtype=np.int64), 0).size == 0
    assert unpack_bits(np.zeros(0, dtype=np.uint8), 0, 10).tolist() == [0] * 10


def test_unpacked_values_are_int64() -> None:
    assert unpack_bits(pack_bits(np.array([3, 1]), 2), 2, 2).dtype == np.int64


def test_unpacking_the_wrong_number_of_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="expected 2 bytes for 3 × 5 bits, got 1"):
        unpack_bits(np.zeros(1, dtype=np.uint8), 5, 3)
