"""Type stub for the compiled record walk; _recwalk.c documents the algorithm."""

from collections.abc import Sequence

def walk(
    data: bytes | bytearray | memoryview,
    count: int,
    base_timestamp: int,
    lat_timestamp: int | None,
    check_range: bool,
    lo: int,
    hi: int,
    forbid_lat: bool,
    need_key: bool,
    truncated: bool,
    errors_max: int,
    /,
) -> tuple[int, str, int, list[tuple[int, int, int]], int, bool, bytes]: ...
def key_hashes(data: bytes | bytearray | memoryview, count: int, /) -> bytes: ...
def key_hash(key: bytes | bytearray | memoryview, /) -> int: ...
def key_offsets(data: bytes | bytearray | memoryview, count: int, key: bytes, /) -> list[int]: ...
def build_records(records: Sequence[object], first_timestamp: int, /) -> bytes | None: ...
