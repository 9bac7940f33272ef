"""Java's hash functions: the compiled extension agrees with the pure-Python reference, and with Java."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loosely.hollow.core import _native
from loosely.hollow.core._hashing import Checksum, hash_int, hash_long, hash_table_size, murmur3


@given(st.integers(-(2**31), 2**31 - 1))
def test_hash_int_native_equals_python(v: int) -> None:
    assert _native.hash_int(v) == hash_int(v)


@given(st.integers(-(2**63), 2**63 - 1))
def test_hash_long_native_equals_python(v: int) -> None:
    assert _native.hash_long(v) == hash_long(v)


@given(st.binary(max_size=64))
def test_murmur_native_equals_python(data: bytes) -> None:
    assert _native.murmur3(data) == murmur3(data)


@pytest.mark.parametrize(
    ("n", "buckets"), [(0, 1), (1, 2), (2, 4), (3, 4), (4, 8), (7, 16), (8, 16), (11, 16), (12, 32), (700, 1024)]
)
def test_hash_table_size(n: int, buckets: int) -> None:
    # HashCodes.hashTableSize: 0 -> 1, 1 -> 2, 2 -> 4, else the power of two >= n * 10 / 7
    assert hash_table_size(n) == buckets
    assert n == 0 or n * 10 // 7 <= buckets


def test_checksum_prints_like_java_integer_to_hex_string() -> None:
    c = Checksum()
    assert c.hex() == "0"
    c.value = -1
    assert c.hex() == "ffffffff"
