"""The mirror's batch path, sans network: which fetched batches go to the target as they are, which are rebuilt,
which are passed over, and what a batch looks like once stamped with the mirror's producer.

The whole path against real brokers (loosely's and Apache Kafka's, with librdkafka's batches of every codec and
real transactions) is tests/compat/test_mirror.py."""

from __future__ import annotations

import pytest

from loosely.clients._batch_copy import PartitionId, Piece, TxnTarget, _pieces, stamp
from loosely.clients.fastpath import WireError, _Part, _Reader
from loosely.protocol.compression import Codec
from loosely.protocol.records import (
    NewRecord,
    build_batch,
    build_control_batch,
    check_batch_crc,
    decode_records,
    read_header,
)

T0 = 1_700_000_000_000


def records(n: int, start: int = 0) -> list[NewRecord]:
    return [NewRecord(b"k%d" % i, None if i % 5 == 0 else b"v%d" % i, T0 + i * 7, (("h", b"%d" % i), ("n", None)))
            for i in range(start, start + n)]


def decoded(piece: Piece) -> list[tuple[bytes | None, bytes | None, int, tuple[tuple[str, bytes | None], ...]]]:
    batch = bytes(piece.batch)
    return [(r.key, r.value, r.timestamp, r.headers) for r in decode_records(batch, 0, read_header(batch), 1 << 24)]


def wanted(rs: list[NewRecord]) -> list[tuple[bytes | None, bytes | None, int, tuple[tuple[str, bytes | None], ...]]]:
    return [(r.key, r.value, r.timestamp, r.headers) for r in rs]


@pytest.mark.parametrize("codec", [Codec.NONE, Codec.GZIP, Codec.ZSTD])
def test_a_plain_batch_goes_as_it_is_and_is_stamped_with_the_mirrors_producer(codec: Codec) -> None:
    source = build_batch(records(40), base_offset=100, codec=codec, producer_id=9, producer_epoch=3, base_sequence=77)
    part = _Part(0, 1, 100)
    [piece] = _pieces(part, memoryview(source))
    assert part.offset == 140 and piece.count == 40 and piece.upstreams == range(100, 140)
    assert bytes(piece.batch) == source  # untouched until stamped
    stamp(piece.batch, 12345, 6, 1000)
    h = read_header(bytes(piece.batch))
    check_batch_crc(bytes(piece.batch), 0, h)
    assert (h.base_offset, h.partition_leader_epoch, h.producer_id, h.producer_epoch, h.base_sequence) == (
        0, -1, 12345, 6, 1000)
    assert h.is_transactional and h.codec == codec and (h.base_timestamp, h.max_timestamp) == (T0, T0 + 39 * 7)
    assert decoded(piece) == wanted(records(40))
    assert bytes(piece.batch)[61:] == source[61:]  # the records' bytes are the source's


def test_markers_and_aborted_transactions_are_passed_over() -> None:
    committed = build_batch(records(3), base_offset=0, producer_id=5, producer_epoch=0, base_sequence=0,
                            transactional=True)
    aborted = build_batch(records(2, 3), base_offset=3, producer_id=6, producer_epoch=0, base_sequence=0,
                          transactional=True)
    abort_marker = build_control_batch(0, producer_id=6, producer_epoch=0, coordinator_epoch=0, timestamp_ms=T0,
                                       base_offset=5)
    commit_marker = build_control_batch(1, producer_id=5, producer_epoch=0, coordinator_epoch=0, timestamp_ms=T0,
                                        base_offset=6)
    after = build_batch(records(2, 7), base_offset=7)
    part = _Part(0, 1, 0, pending_aborts=[(3, 6)])  # the fetch answer's aborted transaction: producer 6 from 3
    pieces = _pieces(part, memoryview(committed + aborted + abort_marker + commit_marker + after))
    assert [p.upstreams for p in pieces] == [range(0, 3), range(7, 9)]
    assert part.offset == 9 and not part.aborted


def test_a_start_inside_a_batch_rebuilds_the_records_after_it() -> None:
    source = build_batch(records(10), base_offset=20, codec=Codec.GZIP)
    part = _Part(0, 1, 24)
    [piece] = _pieces(part, memoryview(source))
    assert piece.upstreams == list(range(24, 30)) and piece.count == 6 and part.offset == 30
    assert decoded(piece) == wanted(records(6, 4))
    assert read_header(bytes(piece.batch)).codec == Codec.NONE


def test_log_append_time_and_offset_holes_are_rebuilt_with_what_a_consumer_saw() -> None:
    appended = build_batch(records(3), base_offset=0, log_append_time=True)  # each record read as max timestamp
    holes = build_batch([NewRecord(b"a", b"1", T0, (), 0), NewRecord(b"b", b"2", T0 + 1, (), 3)], base_offset=3,
                        last_offset_delta=4)  # compacted: offsets 3 and 6 left of 3..7
    part = _Part(0, 1, 0)
    first, second = _pieces(part, memoryview(appended + holes))
    assert [t for _, _, t, _ in decoded(first)] == [T0 + 14] * 3
    assert not read_header(bytes(first.batch)).is_log_append_time
    assert second.upstreams == [3, 6] and [k for k, *_ in decoded(second)] == [b"a", b"b"]
    assert part.offset == 8


def test_a_damaged_batch_is_refused_not_signed_again() -> None:
    source = bytearray(build_batch(records(4), base_offset=0))
    source[-3] ^= 0xFF  # a byte of the last record
    with pytest.raises(WireError, match="fails its CRC"):
        _pieces(_Part(0, 1, 0), memoryview(bytes(source)))


def test_a_partial_batch_at_the_end_waits_for_the_next_fetch() -> None:
    whole = build_batch(records(4), base_offset=0)
    cut = build_batch(records(4, 4), base_offset=4)
    part = _Part(0, 1, 0)
    pieces = _pieces(part, memoryview(whole + cut[: len(cut) - 5]))
    assert [p.upstreams for p in pieces] == [range(0, 4)] and part.offset == 4


class ModelTarget(TxnTarget):
    """A TxnTarget whose cluster is a model of Apache Kafka's sequence rule for a partition's producer
    (``ProducerAppendInfo.checkSequence``): a producer the partition has no state for may start at any sequence
    number; after that each batch must continue where the last ended, else OUT_OF_ORDER_SEQUENCE_NUMBER (45).
    ``not_ready`` partitions refuse the first batch they see with NOT_LEADER_OR_FOLLOWER (6), as a partition created
    a moment ago does on a loaded Kafka while later requests on the same connection find it ready."""

    def __init__(self, not_ready: set[PartitionId]) -> None:  # no connection: the model answers
        self.transactional_id, self.timeout_s = "t", 5.0
        self.producer_id, self.epoch = 7, 0
        self._leaders, self._sequences, self._written, self._coordinator = {}, {}, set(), None
        self.not_ready = set(not_ready)
        self.last: dict[PartitionId, int] = {}  # the last sequence each partition took
        self.logs: dict[PartitionId, list[int]] = {}  # the base sequences each partition appended, in order
        self.rounds: list[dict[PartitionId, int]] = []  # per Produce round, how many batches each partition got

    def _leaders_of(self, tps: object) -> None:
        pass

    def _add_partitions(self, tps: list[PartitionId], deadline: float) -> None:
        pass

    def _ask_coordinator(self, api_key: int, version: int, body: bytes, deadline: float) -> _Reader:
        return _Reader(bytes(6))  # EndTxn: no throttle, no error

    def _produce(self, batches: dict[PartitionId, list[bytearray]]) -> dict[PartitionId, list[tuple[int, int,
                                                                                                   str | None]]]:
        self.rounds.append({tp: len(bs) for tp, bs in batches.items()})
        out: dict[PartitionId, list[tuple[int, int, str | None]]] = {}
        for tp, bs in batches.items():
            for batch in bs:
                h = read_header(bytes(batch))
                if tp in self.not_ready:
                    self.not_ready.discard(tp)
                    out.setdefault(tp, []).append((6, -1, None))
                elif tp in self.last and h.base_sequence != self.last[tp] + 1:
                    out.setdefault(tp, []).append((45, -1, None))
                else:
                    self.last[tp] = h.base_sequence + h.last_offset_delta
                    self.logs.setdefault(tp, []).append(h.base_sequence)
                    out.setdefault(tp, []).append((0, len(self.logs[tp]) - 1, None))
        return out


def pieces_of(sizes: list[int]) -> list[Piece]:
    return [Piece(bytearray(build_batch(records(n))), n, range(n)) for n in sizes]


def test_a_partition_new_to_the_producer_takes_one_batch_a_round_until_it_took_one() -> None:
    """A new remote topic's partition refused the first batch (not ready yet) and took the second, sent behind it on
    the same connection: the first sent again then broke the sequence and the mirror stopped (CI, Kafka 4.1.1)."""
    fresh, progress = ("remote", 0), ("progress", 0)
    target = ModelTarget({fresh})
    bases = target.commit({fresh: pieces_of([3, 4, 5])}, progress, [(b"k", b"v")])
    assert bases[fresh] == [0, 1, 2] and target.logs[fresh] == [0, 3, 7]
    assert target.rounds[0] == {fresh: 1, progress: 1}  # one batch for each new partition
    # once it took one, a partition's batches go in one round again
    target.rounds.clear()
    assert target.commit({fresh: pieces_of([2, 2, 2])}, progress, [])[fresh] == [3, 4, 5]
    assert target.rounds == [{fresh: 3}] and target.logs[fresh] == [0, 3, 7, 12, 14, 16]
