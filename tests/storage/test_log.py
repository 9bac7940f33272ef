from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loosely.protocol.errors import ErrorCode
from loosely.protocol.records import NewRecord, build_batch, check_batch_crc, read_header
from loosely.storage.fs import OsFileSystem
from loosely.storage.log import LogError, PartitionLog
from storage._helpers import all_values, batch, clock, small_config


def open_log(path: Path, **cfg: object) -> PartitionLog:
    return PartitionLog(OsFileSystem(), clock(), str(path), small_config(**cfg))


def test_offsets_are_assigned_in_order_and_reads_return_whole_batches(tmp_path: Path) -> None:
    log = open_log(tmp_path / "p")
    r1 = log.append(batch(b"a", b"b", b"c"))
    r2 = log.append(batch(b"d"))
    assert (r1.base_offset, r1.last_offset, r2.base_offset) == (0, 2, 3)
    assert log.log_end_offset == 4
    assert all_values(log) == [(0, b"a"), (1, b"b"), (2, b"c"), (3, b"d")]
    # A read from the middle of a batch returns the whole batch (clients skip the earlier records).
    assert all_values(log, 1)[0] == (0, b"a")


def test_segments_roll_by_size_and_reads_cross_them(tmp_path: Path) -> None:
    log = open_log(tmp_path / "p", segment_bytes=300)
    for i in range(40):
        log.append(batch(b"v%03d" % i, key=b"k"))
    assert len(log.segments) > 5
    assert [s.base_offset for s in log.segments] == sorted(s.base_offset for s in log.segments)
    assert all_values(log) == [(i, b"v%03d" % i) for i in range(40)]
    for start in range(40):
        assert all_values(log, start)[0] == (start, b"v%03d" % start)


def test_max_bytes_returns_at_least_one_batch_and_never_splits_one(tmp_path: Path) -> None:
    log = open_log(tmp_path / "p")
    for i in range(10):
        log.append(batch(b"x" * 50, key=b"%d" % i))
    size = read_header(build_batch([NewRecord(b"0", b"x" * 50, 1_700_000_000_000)])).size
    assert log.read(0, 1).size == size  # min one
    assert log.read(0, 1, min_one=False).size == 0
    assert log.read(0, size * 3 + 5).size == size * 3
    assert log.read(0, size * 3).size == size * 3


@pytest.mark.parametrize("offset", [-1, 11])
def test_offsets_outside_the_log_are_out_of_range(tmp_path: Path, offset: int) -> None:
    log = open_log(tmp_path / "p")
    log.append(batch(*[b"v"] * 10))
    with pytest.raises(LogError) as e:
        log.read(offset, 100)
    assert e.value.error_code == ErrorCode.offset_out_of_range
    assert log.read(10, 100).size == 0  # the log end offset itself is fine: nothing yet


def test_invalid_batches_are_refused_whole(tmp_path: Path) -> None:
    log = open_log(tmp_path / "p", max_message_bytes=200)
    good = batch(b"ok")
    bad = bytearray(batch(b"corrupt me"))
    bad[-1] ^= 0xFF
    with pytest.raises(LogError) as e:
        log.append(good + bytes(bad))
    assert e.value.error_code == ErrorCode.corrupt_message
    assert log.log_end_offset == 0  # the good batch in the same request was not written either
    with pytest.raises(LogError) as e:
        log.append(batch(b"y" * 300))
    assert e.value.error_code == ErrorCode.message_too_large
    with pytest.raises(LogError) as e:
        log.append(b"\x00" * 10)
    assert e.value.error_code == ErrorCode.corrupt_message
    assert log.append(good).base_offset == 0


def test_max_message_bytes_at_under_over(tmp_path: Path) -> None:
    b = batch(b"z" * 100)
    size = len(b)
    for limit, ok in ((size - 1, False), (size, True), (size + 1, True)):
        log = open_log(tmp_path / f"p{limit}", max_message_bytes=limit)
        if ok:
            log.append(b)
        else:
            with pytest.raises(LogError):
                log.append(b)


def test_timestamps_outside_the_accepted_window(tmp_path: Path) -> None:
    c = clock()
    log = PartitionLog(OsFileSystem(), c, str(tmp_path / "p"), small_config(timestamp_after_max_ms=1000))
    now = c.now_ms()
    log.append(batch(b"a", ts=now + 1000))
    with pytest.raises(LogError) as e:
        log.append(batch(b"a", ts=now + 1001))
    assert e.value.error_code == ErrorCode.invalid_timestamp


def test_log_append_time_topics_stamp_the_append_time(tmp_path: Path) -> None:
    c = clock()
    log = PartitionLog(OsFileSystem(), c, str(tmp_path / "p"), small_config(log_append_time=True))
    c.advance(5000)
    res = log.append(batch(b"a", b"b", ts=123))
    assert res.log_append_time_ms == c.now_ms()
    h = read_header(log.read(0, 1000).read_bytes())
    assert h.is_log_append_time and h.max_timestamp == c.now_ms()


def test_compacted_topics_need_keys(tmp_path: Path) -> None:
    log = open_log(tmp_path / "p", compact=True)
    with pytest.raises(LogError) as e:
        log.append(batch(b"no key"))
    assert e.value.error_code == ErrorCode.invalid_record
    log.append(batch(b"v", key=b"k"))


def test_client_control_batches_are_refused(tmp_path: Path) -> None:
    from loosely.protocol.records import ControlType, build_control_batch

    log = open_log(tmp_path / "p")
    marker = build_control_batch(
        ControlType.COMMIT, producer_id=1, producer_epoch=0, coordinator_epoch=0, timestamp_ms=1_700_000_000_000
    )
    with pytest.raises(LogError):
        log.append(marker)
    assert log.append(marker, from_client=False).base_offset == 0


def test_offset_for_timestamp_and_max_timestamp(tmp_path: Path) -> None:
    log = open_log(tmp_path / "p", segment_bytes=250)
    base = 1_700_000_000_000
    for i in range(30):
        log.append(build_batch([NewRecord(b"k", b"v", base + 10 * i), NewRecord(b"k", b"w", base + 10 * i + 5)]))
    assert log.offset_for_timestamp(base) == (0, base)
    assert log.offset_for_timestamp(base + 1) == (1, base + 5)
    assert log.offset_for_timestamp(base + 6) == (2, base + 10)
    assert log.offset_for_timestamp(base + 295) == (59, base + 295)
    assert log.offset_for_timestamp(base + 296) is None
    assert log.max_timestamp_offset() == (59, base + 295)


def test_reopen_after_clean_close_keeps_everything(tmp_path: Path) -> None:
    log = open_log(tmp_path / "p", segment_bytes=300)
    for i in range(50):
        log.append(batch(b"%d" % i, key=b"k"))
    log.close()
    again = PartitionLog(
        OsFileSystem(),
        clock(),
        str(tmp_path / "p"),
        small_config(segment_bytes=300),
        recovery_point=50,
        clean_shutdown=True,
    )
    assert again.log_end_offset == 50
    assert all_values(again) == [(i, b"%d" % i) for i in range(50)]
    assert again.append(batch(b"next")).base_offset == 50


def test_fsync_policy_flush_messages(tmp_path: Path) -> None:
    log = open_log(tmp_path / "p", flush_messages=3)
    log.append(batch(b"a"))
    log.append(batch(b"b"))
    assert log.recovery_point == 0
    log.append(batch(b"c"))
    assert log.recovery_point == 3


def test_fsync_policy_flush_ms(tmp_path: Path) -> None:
    c = clock()
    log = PartitionLog(OsFileSystem(), c, str(tmp_path / "p"), small_config(flush_ms=1000))
    log.append(batch(b"a"))
    assert not log.maybe_flush()
    c.advance(1000)
    assert log.maybe_flush()
    assert log.recovery_point == 1
    assert not log.maybe_flush()  # nothing new


def test_a_read_never_skips_a_segment_that_does_not_fit(tmp_path: Path) -> None:
    """Found by the kill -9 test: big, small, big segments and a max_bytes that fits only the small one."""
    log = open_log(tmp_path / "p", segment_bytes=100)
    log.append(batch(*[b"x" * 40] * 10, key=b"k"))  # ~600 bytes: a segment of its own
    log.append(batch(*[b"y" * 40] * 10, key=b"k"))
    log.append(batch(b"small", key=b"k"))
    log.append(batch(*[b"z" * 40] * 10, key=b"k"))
    assert len(log.segments) == 4
    first = log.segments[0].size
    r = log.read(0, first + 100)
    assert [s.next_offset for s in r.slices] == [10]
    offsets = [o for o, _ in all_values(log)]
    assert offsets == list(range(31))
    # Reading on from each returned next offset visits every record exactly once.
    seen: list[int] = []
    pos = 0
    while pos < log.log_end_offset:
        got = [o for o, _ in all_values_from(log, pos, first + 100)]
        assert got and got[0] == pos, f"a read from {pos} skipped to {got[:1]}"
        seen += got
        pos = got[-1] + 1
    assert seen == list(range(31))


def all_values_from(log: PartitionLog, pos: int, max_bytes: int) -> list[tuple[int, bytes | None]]:
    from loosely.protocol.records import decode_records, iter_batches

    data = log.read(pos, max_bytes).read_bytes()
    return [(r.offset, r.value) for p, h in iter_batches(data) for r in decode_records(data, p, h, 1 << 20)]


@pytest.mark.parametrize(("topic_codec", "stored"), [("gzip", 1), ("zstd", 4), ("uncompressed", 0), ("producer", 3)])
def test_topic_compression_type_recompresses(tmp_path: Path, topic_codec: str, stored: int) -> None:
    from loosely.protocol.compression import Codec
    from loosely.protocol.records import iter_batches

    log = open_log(tmp_path / "p", compression_type=topic_codec)
    sent = build_batch(
        [NewRecord(b"k%d" % i, b"v%d" % i, 1_700_000_000_000 + i) for i in range(50)],
        codec=Codec.LZ4,
        producer_id=7,
        producer_epoch=1,
        base_sequence=10,
    )
    log.append(sent)
    data = log.read(0, 1 << 20).read_bytes()
    ((_, h),) = list(iter_batches(data))
    assert h.codec == stored
    assert (h.producer_id, h.producer_epoch, h.base_sequence, h.last_offset_delta) == (7, 1, 10, 49)
    assert all_values(log) == [(i, b"v%d" % i) for i in range(50)]


def test_a_lying_batch_appends_nothing(tmp_path: Path) -> None:
    from protocol._forge import forge

    log = open_log(tmp_path / "p")
    log.append(batch(b"a"))
    ten = batch(*[b"v%d" % i for i in range(10)])
    for lie in (forge(ten, count=1_000_000, last_offset_delta=999_999), forge(ten, count=3, last_offset_delta=2)):
        with pytest.raises(LogError) as e:
            log.append(lie)
        assert e.value.error_code == ErrorCode.invalid_record
    assert log.log_end_offset == 1
    assert all_values(log) == [(0, b"a")]


def test_keyless_records_on_a_compacted_topic_come_back_as_record_errors(tmp_path: Path) -> None:
    log = open_log(tmp_path / "p", compact=True)
    with pytest.raises(LogError) as e:
        log.append(batch(b"a", b"b", b"c", keys=[b"k", None, b"k"]))  # type: ignore[list-item]
    assert [r.batch_index for r in e.value.record_errors] == [1]
    assert log.log_end_offset == 0


def test_a_valid_batch_is_stored_as_sent_but_for_offset_epoch_and_a_lying_max_timestamp(tmp_path: Path) -> None:
    from protocol._forge import forge

    log = open_log(tmp_path / "p")
    log.append(batch(b"first"))
    sent = batch(b"a", b"b")
    log.append(sent)
    stored = log.read(1, 1 << 20).read_bytes()
    assert stored[12:16] == b"\x00\x00\x00\x00" and stored[:8] == (1).to_bytes(8, "big")
    assert stored[16:] == sent[16:]  # magic, CRC, attributes, timestamps, records: the client's bytes
    lying = forge(sent, max_timestamp=1)
    log.append(lying)
    data = log.read(3, 1 << 20).read_bytes()
    h = read_header(data)
    assert h.max_timestamp == 1_700_000_000_000  # as Kafka stores it: the largest record timestamp
    check_batch_crc(data, 0, h)


def test_a_read_cut_short_inside_a_segment_does_not_go_on_to_the_next(tmp_path: Path) -> None:
    """Found by the kill -9 test again: a segment of many batches, only some of which fit in max_bytes, then a
    segment of small batches. The read used to stop in the first segment and go on with the second, so a
    consumer skipped the first segment's tail."""
    big = [batch(*[b"%d" % i * 40] * 4, key=b"k") for i in range(4)]
    log = open_log(tmp_path / "p", segment_bytes=sum(map(len, big)) + 10)
    for b in big:
        log.append(b)  # four fill the first segment
    log.append(batch(b"tiny", key=b"k"))  # rolls: the second segment holds small batches
    log.append(batch(b"tiny", key=b"k"))
    assert len(log.segments) == 2
    first_batch = log.read(0, 1).slices[0].length
    r = log.read(0, first_batch * 2 + 100)  # two batches of the first segment and room for a tiny one
    assert [s.next_offset for s in r.slices] == [8]
    seen: list[int] = []
    pos = 0
    while pos < log.log_end_offset:
        got = [o for o, _ in all_values_from(log, pos, first_batch * 2 + 100)]
        assert got and got[0] == pos, f"a read from {pos} skipped to {got[:1]}"
        assert got == list(range(pos, pos + len(got))), f"a read from {pos} has a hole: {got}"
        seen += got
        pos = got[-1] + 1
    assert seen == list(range(18))


@settings(max_examples=300, deadline=None)
@given(
    shapes=st.lists(st.tuples(st.integers(1, 8), st.integers(1, 200)), min_size=1, max_size=40),
    segment_bytes=st.integers(150, 2000),
    max_bytes=st.integers(1, 3000),
)
def test_reading_on_from_each_next_offset_visits_every_record_once(
    tmp_path_factory: pytest.TempPathFactory, shapes: list[tuple[int, int]], segment_bytes: int, max_bytes: int
) -> None:
    """What a consumer does: fetch, go on from after the last record, repeat. Whatever the batch and segment sizes
    and the fetch budget, it sees every offset once, in order."""
    log = open_log(tmp_path_factory.mktemp("p") / "p", segment_bytes=segment_bytes)
    for count, size in shapes:
        log.append(batch(*[b"v" * size] * count, key=b"k"))
    seen: list[int] = []
    pos = 0
    while pos < log.log_end_offset:
        got = [o for o, _ in all_values_from(log, pos, max_bytes)]
        assert got == list(range(pos, pos + len(got))) and got, f"a read from {pos} returned {got[:3]}..."
        seen += got
        pos = got[-1] + 1
    assert seen == list(range(log.log_end_offset))
