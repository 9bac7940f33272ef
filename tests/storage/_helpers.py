"""Shared by the storage tests."""

from __future__ import annotations

from loosely.protocol.records import NewRecord, build_batch, decode_records, iter_batches
from loosely.storage.config import LogConfig
from loosely.storage.log import PartitionLog
from loosely.testing import FakeClock


def batch(
    *values: bytes, key: bytes | None = None, ts: int = 1_700_000_000_000, keys: list[bytes] | None = None
) -> bytes:
    ks = keys if keys is not None else [key] * len(values)
    return build_batch([NewRecord(k, v, ts) for k, v in zip(ks, values, strict=True)])


def all_values(log: PartitionLog, start: int | None = None) -> list[tuple[int, bytes | None]]:
    out: list[tuple[int, bytes | None]] = []
    r = log.read(log.log_start_offset if start is None else start, 1 << 30)
    data = r.read_bytes()
    for pos, h in iter_batches(data):
        out += [(rec.offset, rec.value) for rec in decode_records(data, pos, h, 1 << 24)]
    return out


def small_config(**kw: object) -> LogConfig:
    base: dict[str, object] = {"segment_bytes": 1024, "index_interval_bytes": 100}
    base.update(kw)
    return LogConfig(**base)  # type: ignore[arg-type]


def clock() -> FakeClock:
    return FakeClock(now_ms=1_700_000_000_000)
