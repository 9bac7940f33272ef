def encode_records(
    data: bytes,
    delim: bytes,
    key_delim: bytes | None,
    fixed_key: bytes | None,
    null_empty: bool,
    headers: bytes,
    partitions: int,
    mode: int,
    partition: int,
    keyless_partition: int,
    limit: int,
    /,
) -> tuple[list[bytes | None], list[int], int]: ...
def format_records(
    records: bytes,
    count: int,
    base_offset: int,
    base_timestamp: int,
    timestamp_override: int,
    min_offset: int,
    tokens: list[tuple[int, bytes]],
    topic: bytes,
    partition: int,
    null_str: bytes | None,
    limit: int,
    /,
) -> tuple[bytes, int, int]: ...
def crc32c(data: bytes | bytearray | memoryview, crc: int = 0, /) -> int: ...
def json_compact(value: object, /) -> bytes | None: ...
def txn_exchange(
    requests: list[tuple[int, bytes]],
    end_fd: int,
    end_frame: bytes,
    frame_bytes_max: int,
    timeout_ms: int,
    /,
) -> tuple[list[bytes], bytes | None, bool, str | None]: ...
