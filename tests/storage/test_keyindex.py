"""The per-segment key index and PartitionLog.find_key: found, absent, collisions, codecs, sidecars and damage."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loosely.protocol.compression import Codec
from loosely.protocol.records import ControlType, NewRecord, build_batch, build_control_batch
from loosely.storage import keyindex
from loosely.storage.fs import OsFileSystem
from loosely.storage.keyindex import KEY_INDEX_HEADER, KEY_INDEX_SUFFIX
from loosely.storage.log import PartitionLog, StorageError
from loosely.testing import FaultyFileSystem
from storage._helpers import clock, small_config
from storage.test_cleaner import run_cleaner

NOW = 1_700_000_000_000


def records(*keys: bytes | None, codec: Codec = Codec.NONE) -> bytes:
    return build_batch([NewRecord(k, b"v-%d" % i, NOW) for i, k in enumerate(keys)], codec=codec)


def open_log(path: Path, fs: OsFileSystem | FaultyFileSystem | None = None, **cfg: object) -> PartitionLog:
    return PartitionLog(fs or OsFileSystem(), clock(), str(path), small_config(**cfg), clean_shutdown=True)


def scan(log: PartitionLog, key: bytes, limit: int) -> list[int]:
    """The answer find_key must give, by reading every record of the log: what a consumer scan finds."""
    from loosely.protocol.records import decode_records, iter_batches

    out = []
    data = log.read(log.log_start_offset, 1 << 30).read_bytes()
    for pos, h in iter_batches(data):
        if not h.is_control:
            recs = decode_records(data, pos, h, 1 << 24)
            out += [r.offset for r in recs if r.key == key and r.offset >= log.log_start_offset]
    return sorted(out, reverse=True)[:limit]


def sidecars(log: PartitionLog) -> list[str]:
    return sorted(n for n in os.listdir(log.dir) if n.endswith(KEY_INDEX_SUFFIX))


def filled(path: Path, n: int = 60, **cfg: object) -> PartitionLog:
    """``n`` batches of two records (keys k<i % 5> and "common"), over several segments, sidecars written."""
    log = open_log(path, **cfg)
    for i in range(n):
        log.append(records(b"k%d" % (i % 5), b"common"))
    assert len(log.segments) > 3
    assert PartitionLog.persist_key_indexes(log.key_index_backlog()) == len(log.segments) - 1
    return log


def test_finds_every_record_with_the_key_newest_first_and_honours_the_limit(tmp_path: Path) -> None:
    log = filled(tmp_path / "t-0")
    assert log.find_key(b"k3", limit=100) == scan(log, b"k3", 100) == [2 * i for i in range(3, 60, 5)][::-1]
    assert log.find_key(b"common", limit=7) == [119 - 2 * i for i in range(7)]
    assert log.find_key(b"k3", limit=1) == [116]
    assert log.find_key(b"k3", limit=0) == []


def test_absent_keys_and_null_keys_are_not_found(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append(records(None, b"", b"a"))
    assert log.find_key(b"b", limit=10) == []
    assert log.find_key(b"a\x00", limit=10) == []
    assert log.find_key(b"", limit=10) == [1]  # the empty key is a key; null is not


def test_a_hash_collision_is_told_apart_by_the_records_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = filled(tmp_path / "t-0")
    # Every key the index is asked about now hashes like "k1": the index names k1's batches, find_key reads them.
    k1 = keyindex.key_hash(b"k1")
    monkeypatch.setattr(keyindex, "key_hash", lambda key: k1)
    assert log.find_key(b"k2", limit=100) == []
    assert log.find_key(b"k1", limit=100) == scan(log, b"k1", 100)
    log.close()
    log = open_log(tmp_path / "t-0")  # the same through sidecars
    assert log.find_key(b"k2", limit=100) == []


@pytest.mark.parametrize("codec", [Codec.GZIP, Codec.SNAPPY, Codec.LZ4, Codec.ZSTD])
def test_compressed_batches_at_append_and_when_rebuilt(tmp_path: Path, codec: Codec) -> None:
    log = open_log(tmp_path / "t-0")
    for i in range(30):
        log.append(records(b"x%d" % (i % 3), None, b"y", codec=codec))
    expect = scan(log, b"x1", 100)
    assert len(expect) == 10 and log.find_key(b"x1", limit=100) == expect
    log.close()
    for name in sidecars(log):
        os.remove(os.path.join(log.dir, name))
    log = open_log(tmp_path / "t-0")  # every index now comes from reading (decompressing) the segments
    assert log.find_key(b"x1", limit=100) == expect
    assert log.find_key(b"y", limit=5) == scan(log, b"y", 5)


def test_topic_recompression_and_the_brokers_own_batches_are_indexed(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", compression_type="zstd")
    log.append(records(b"a", b"b"))
    log.append(
        build_control_batch(ControlType.COMMIT, producer_id=7, producer_epoch=0, coordinator_epoch=0, timestamp_ms=NOW),
        from_client=False,
    )
    log.append(build_batch([NewRecord(b"a", b"own", NOW)]), from_client=False)
    log.append(records(b"a"))
    assert log.find_key(b"a", limit=10) == [4, 3, 0]
    assert log.active.key_index.covered_bytes == log.active.size  # nothing left for a catch-up read


def test_retention_deletes_sidecars_with_their_segments(tmp_path: Path) -> None:
    log = filled(tmp_path / "t-0")
    before = sidecars(log)
    log.delete_records_before(70)
    assert log.apply_retention() >= 0
    kept = {f"{s.base_offset:020d}{KEY_INDEX_SUFFIX}" for s in log.segments}
    assert set(sidecars(log)) < set(before) and set(sidecars(log)) <= kept
    assert log.find_key(b"common", limit=1000) == scan(log, b"common", 1000)
    assert min(log.find_key(b"common", limit=1000)) >= 70


def test_compaction_replaces_sidecars_and_finds_what_is_left(tmp_path: Path) -> None:
    c = clock()
    log = PartitionLog(OsFileSystem(), c, str(tmp_path / "t-0"), small_config(compact=True, delete=False))
    for i in range(60):
        log.append(records(b"k%d" % (i % 5), b"common"))
    PartitionLog.persist_key_indexes(log.key_index_backlog())
    replaced = sidecars(log)
    run_cleaner(log, 0, c)
    assert not set(replaced) & set(sidecars(log)) - {f"{s.base_offset:020d}{KEY_INDEX_SUFFIX}" for s in log.segments}
    assert log.find_key(b"k2", limit=100) == scan(log, b"k2", 100) != []
    assert log.find_key(b"common", limit=100) == scan(log, b"common", 100)
    PartitionLog.persist_key_indexes(log.key_index_backlog())
    log.close()
    log = open_log(tmp_path / "t-0", compact=True, delete=False)
    assert log.find_key(b"k2", limit=100) == scan(log, b"k2", 100)


def corrupt_body(path: str) -> None:
    data = bytearray(Path(path).read_bytes())
    data[KEY_INDEX_HEADER.size + 3] ^= 0x40
    Path(path).write_bytes(bytes(data))


def torn(path: str) -> None:
    os.truncate(path, os.path.getsize(path) - 5)


def stale(path: str) -> None:
    """A sidecar of another segment under this one's name (say, one the cleaner replaced)."""
    other = sorted(Path(path).parent.glob(f"*{KEY_INDEX_SUFFIX}"))[-1]
    Path(path).write_bytes(other.read_bytes())


@pytest.mark.parametrize("damage", [corrupt_body, torn, stale])
def test_a_damaged_sidecar_is_rebuilt_from_the_segment(
    tmp_path: Path, damage: object, caplog: pytest.LogCaptureFixture
) -> None:
    log = filled(tmp_path / "t-0")
    expect = scan(log, b"k4", 100)
    first = os.path.join(log.dir, sidecars(log)[0])
    log.close()
    damage(first)  # type: ignore[operator]
    log = open_log(tmp_path / "t-0")
    with caplog.at_level(logging.WARNING, logger="loosely.storage.segment"):
        assert log.find_key(b"k4", limit=100) == expect
    assert "rebuilding it from the log" in caplog.text
    assert PartitionLog.persist_key_indexes(log.key_index_backlog()) == 1  # the rebuilt one, written again
    log.close()
    log = open_log(tmp_path / "t-0")
    assert log.find_key(b"k4", limit=100) == expect


def test_a_crash_while_writing_a_sidecar_leaves_nothing_that_is_trusted(tmp_path: Path) -> None:
    log = filled(tmp_path / "t-0")
    expect = scan(log, b"k0", 100)
    first = os.path.join(log.dir, sidecars(log)[0])
    log.close()
    # The crash came between writing the temporary file and renaming it: the sidecar is missing, a .tmp is left.
    os.rename(first, first + ".tmp")
    torn(first + ".tmp")
    log = open_log(tmp_path / "t-0")
    assert not os.path.exists(first + ".tmp")
    assert log.find_key(b"k0", limit=100) == expect


def test_a_sidecar_without_its_segment_is_removed_on_open(tmp_path: Path) -> None:
    log = filled(tmp_path / "t-0")
    log.close()
    orphan = os.path.join(log.dir, f"{10**9:020d}{KEY_INDEX_SUFFIX}")
    Path(orphan).write_bytes(b"x" * 70)
    open_log(tmp_path / "t-0")
    assert not os.path.exists(orphan)


def test_a_failed_append_leaves_no_key_behind_and_indexing_resumes(tmp_path: Path) -> None:
    fs = FaultyFileSystem(seed=0)
    log = open_log(tmp_path / "t-0", fs, segment_bytes=1 << 20)
    log.append(records(b"a"))
    fs.fail("append", error=errno.ENOSPC, path_contains=".log", partial=True)
    with pytest.raises(StorageError):
        log.append(records(b"ghost", b"a"))
    fs.heal()
    log.append(records(b"b", b"a"))
    assert log.find_key(b"ghost", limit=10) == []
    assert log.find_key(b"a", limit=10) == [2, 0]
    assert log.active.key_index.covered_bytes == log.active.size  # indexed at append, no catch-up needed


def test_a_crash_mid_append_then_recovery_finds_only_what_survived(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", segment_bytes=1 << 20)
    for i in range(5):
        log.append(records(b"a", b"n%d" % i))
    seg_path = log.active.log.path
    log.close()
    os.truncate(seg_path, os.path.getsize(seg_path) - 7)  # the last batch torn by the crash
    log = PartitionLog(OsFileSystem(), clock(), str(tmp_path / "t-0"), small_config(segment_bytes=1 << 20))
    assert log.log_end_offset == 8
    assert log.find_key(b"a", limit=10) == [6, 4, 2, 0]
    assert log.find_key(b"n4", limit=10) == []
    log.append(records(b"a"))
    assert log.find_key(b"a", limit=10) == [8, 6, 4, 2, 0]


KEYS = st.sampled_from([b"a", b"b", b"c", b"", None])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(
        st.tuples(st.lists(KEYS, min_size=1, max_size=6), st.sampled_from([Codec.NONE, Codec.LZ4, Codec.GZIP])),
        min_size=1,
        max_size=40,
    ),
    persist_after=st.integers(0, 40),
    reopen=st.booleans(),
    delete_before=st.integers(0, 30),
    limit=st.integers(1, 50),
)
def test_find_key_equals_a_linear_scan(
    tmp_path_factory: pytest.TempPathFactory,
    batches: list[tuple[list[bytes | None], Codec]],
    persist_after: int,
    reopen: bool,
    delete_before: int,
    limit: int,
) -> None:
    path = tmp_path_factory.mktemp("prop") / "t-0"
    log = open_log(path, segment_bytes=300)
    for i, (keys, codec) in enumerate(batches):
        log.append(records(*keys, codec=codec))
        if i == persist_after:
            PartitionLog.persist_key_indexes(log.key_index_backlog())
    log.delete_records_before(min(delete_before, log.high_watermark))
    if reopen:
        log.close()
        log = open_log(path, segment_bytes=300)
    for key in (b"a", b"b", b"c", b"", b"zz"):
        assert log.find_key(key, limit=limit) == scan(log, key, limit)
    log.close()


def test_sidecars_are_used_after_a_restart_without_reading_the_segments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = filled(tmp_path / "t-0")
    expect = scan(log, b"k1", 100)
    log.roll()  # the active segment closes too, and the new one is empty
    assert PartitionLog.persist_key_indexes(log.key_index_backlog()) == 1
    log.close()

    def no_reading(*args: object) -> bytes:
        raise AssertionError("a segment was read to index it: its sidecar was not used")

    monkeypatch.setattr(keyindex, "_hashes_of", no_reading)
    log = open_log(tmp_path / "t-0")
    assert log.find_key(b"k1", limit=100) == expect
    assert all(s.key_index.settled for s in log.segments[:-1])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 50), st.binary(max_size=8))
def test_the_c_helpers_answer_or_raise_value_error_on_any_bytes(data: bytes, count: int, key: bytes) -> None:
    from loosely.protocol import _recwalk

    for call in (lambda: _recwalk.key_hashes(data, count), lambda: _recwalk.key_offsets(data, count, key)):
        try:
            call()
        except ValueError:
            pass


def test_a_stored_batch_that_does_not_parse_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = open_log(tmp_path / "t-0", segment_bytes=1 << 20)
    log.append(records(b"a"))
    log.append(records(b"b", codec=Codec.LZ4))
    log.append(records(b"a"))
    path = log.active.log.path
    log.close()
    from loosely.protocol.records import BATCH_HEADER_BYTES, iter_batches

    middle = list(iter_batches(Path(path).read_bytes()))[1][0]
    with open(path, "r+b") as f:  # garble the lz4 frame of the middle batch (the CRC is recovery's business)
        f.seek(middle + BATCH_HEADER_BYTES)
        f.write(b"\xff" * 8)
    log = open_log(tmp_path / "t-0", segment_bytes=1 << 20)
    with caplog.at_level(logging.WARNING, logger="loosely.storage.keyindex"):
        assert log.find_key(b"a", limit=10) == [2, 0]
    assert "does not parse" in caplog.text


def test_many_folds_keep_few_runs_and_every_answer(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", segment_bytes=1 << 22)
    for i in range(200):
        log.append(records(b"k%d" % (i % 13), b"u%d" % i))
        if i % 7 == 0:
            log.active.key_index.fold()
    assert len(log.active.key_index._runs) <= 9  # log2(400) runs at most
    assert log.find_key(b"k5", limit=100) == scan(log, b"k5", 100)
    assert log.find_key(b"u123", limit=5) == [247]


@pytest.mark.parametrize("race", ["truncation", "fold", "lookup"])
def test_a_fold_in_a_worker_thread_gives_way_to_what_the_owner_did_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, race: str
) -> None:
    log = open_log(tmp_path / "t-0", segment_bytes=1 << 20)
    for i in range(10):
        log.append(records(b"k%d" % i))
    mark = log.active.mark()
    log.append(records(b"ghost"))
    ki = log.active.key_index
    real = keyindex._folded
    found_during_the_sort: list[int] = []

    def racing(runs: list[object], pending: list[object]) -> object:
        monkeypatch.setattr(keyindex, "_folded", real)  # once: what the owner does below folds too
        out = real(runs, pending)  # type: ignore[arg-type]
        if race == "truncation":
            log.active.rollback(mark)  # the owner undoes a failed append while the worker sorts
        elif race == "lookup":
            found_during_the_sort.extend(log.find_key(b"k3", limit=5))  # the entries being sorted are still seen
            log.append(records(b"late"))
        else:
            log.append(records(b"late"))
            ki.candidates(b"late")  # the owner folds too
        return out

    monkeypatch.setattr(keyindex, "_folded", racing)
    ki.fold()
    assert log.find_key(b"ghost", limit=5) == ([] if race == "truncation" else [10])
    assert log.find_key(b"k3", limit=5) == [3]
    assert log.find_key(b"late", limit=5) == ([] if race == "truncation" else [11])
    assert found_during_the_sort == ([3] if race == "lookup" else [])


def test_the_docstring_examples_run() -> None:
    import doctest

    import loosely.storage.log

    for module in (keyindex, loosely.storage.log):
        result = doctest.testmod(module)
        assert result.attempted and not result.failed, module.__name__
