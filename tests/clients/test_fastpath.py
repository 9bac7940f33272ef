"""The native hot loops against the pure-Python references they must agree with."""

from __future__ import annotations

import crc32c
from hypothesis import given, settings
from hypothesis import strategies as st

from loosely.clients import _fast, fastpath
from loosely.clients.kcat_format import Msg, compile_format, parse_format
from loosely.clients.partitioner import crc32_partition, murmur2_partition
from loosely.protocol import records as proto

EVERY_TOKEN = b"%t|%p|%o|%T|%k|%K|%s|%S|%R|%h|%%\\n"
payloads = st.binary(max_size=40).filter(lambda b: b"\n" not in b and b":" not in b)


def test_batch_header_is_the_protocols() -> None:
    assert fastpath.BATCH_HEADER is proto.BATCH_HEADER


@given(st.binary(max_size=3000), st.integers(0, 2**32 - 1))
def test_crc32c_matches_the_library(data: bytes, seed: int) -> None:
    assert _fast.crc32c(data, seed) == crc32c.crc32c(data, seed)


def _decode(batch: bytes) -> list[proto.Record]:
    (_, header), = list(proto.iter_batches(batch))
    proto.check_batch_crc(batch, 0, header)
    return list(proto.decode_records(batch, 0, header, 1 << 24))


@settings(max_examples=60)
@given(st.lists(st.tuples(payloads, payloads), min_size=1, max_size=30), st.booleans(), st.integers(1, 7))
def test_lines_become_the_records_kcat_would_send(rows: list[tuple[bytes, bytes]], null: bool, n: int) -> None:
    data = b"".join(k + b":" + v + b"\n" for k, v in rows)
    headers = [("h", b"1"), ("n", None)]
    parts, counts, consumed = _fast.encode_records(data, b"\n", b":", None, null, fastpath.encode_headers(headers),
                                                   n, 1, 0, n - 1, -1)
    assert consumed == sum(counts) == len(rows)  # ":" alone is a record (only an empty line is not)
    got: dict[int, list[tuple[bytes | None, bytes | None]]] = {}
    for p, recs in enumerate(parts):
        if recs is not None:
            batch = fastpath.make_batch(recs, counts[p], 0, 1_700_000_000_000)
            got[p] = [(r.key, r.value) for r in _decode(batch)]
            assert all(r.headers == tuple(headers) or list(r.headers) == headers for r in _decode(batch))
    want: dict[int, list[tuple[bytes | None, bytes | None]]] = {}
    for k, v in rows:
        key: bytes | None = k if (k or not null) else None
        value: bytes | None = v if (v or not null) else None
        p = n - 1 if key is None else murmur2_partition(key, n)
        want.setdefault(p, []).append((key, value))
    assert got == want


def test_consistent_partitioner_and_fixed_partition() -> None:
    data = b"".join(b"key-%d:v\n" % i for i in range(100))
    parts, counts, _ = _fast.encode_records(data, b"\n", b":", None, False, b"\x00", 5, 2, 0, 0, -1)
    placed = {p: [r.key for r in _decode(fastpath.make_batch(recs, counts[p], 0, 0))]
              for p, recs in enumerate(parts) if recs is not None}
    assert all(crc32_partition(k, 5) == p for p, keys in placed.items() for k in keys if k is not None)
    parts, counts, consumed = _fast.encode_records(data, b"\n", b":", None, False, b"\x00", 5, 0, 3, 0, 10)
    assert consumed == 10 and counts == [0, 0, 0, 10, 0]


@settings(max_examples=60)
@given(st.lists(st.tuples(st.one_of(st.none(), st.binary(max_size=20)), st.one_of(st.none(), st.binary(max_size=20)),
                          st.lists(st.tuples(st.text(max_size=5), st.one_of(st.none(), st.binary(max_size=5))),
                                   max_size=3)), min_size=1, max_size=20),
       st.booleans())
def test_format_matches_the_python_renderer(rows: list, null: bool) -> None:  # type: ignore[type-arg]
    new = [proto.NewRecord(key=k, value=v, headers=tuple(h), timestamp=1_700_000_000_000 + i)
           for i, (k, v, h) in enumerate(rows)]
    batch = bytearray(proto.build_batch(new))
    proto.rewrite_base_offset(batch, 0, 40, 0)
    (_, header), = list(proto.iter_batches(batch))
    section = bytes(batch[proto.BATCH_HEADER_BYTES:])
    tokens = parse_format(EVERY_TOKEN)
    kinds = [(fastpath.TOKEN_KINDS[t.kind], t.text) for t in tokens]
    null_str = b"NULL" if null else None
    text, printed, nxt = _fast.format_records(section, header.records_count, 40, header.base_timestamp, -1, 42,
                                              kinds, b"topic", 3, null_str, -1)
    render = compile_format(tokens, null=null_str)
    want = b"".join(render(Msg("topic", 3, 40 + i, 1_700_000_000_000 + i, k, v, h or None))
                    for i, (k, v, h) in enumerate(rows) if 40 + i >= 42)
    assert text == want
    assert printed == max(0, len(rows) - 2) and nxt == (40 + len(rows) if len(rows) > 2 else 42)
