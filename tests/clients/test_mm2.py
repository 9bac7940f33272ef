"""MirrorMaker 2 names, record layouts and offset translation as pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loosely.clients.mirror import _decode_progress, _encode_progress, _PartitionState
from loosely.clients.mm2 import (
    Checkpoint,
    DefaultReplicationPolicy,
    Heartbeat,
    IdentityReplicationPolicy,
    Mm2RecordError,
    OffsetSync,
    OffsetSyncStore,
    TopicFilter,
)

names = st.text(min_size=0, max_size=40)
offsets = st.integers(min_value=-(2**63), max_value=2**63 - 1)
partitions = st.integers(min_value=-(2**31), max_value=2**31 - 1)


def test_golden_bytes() -> None:
    """Layouts written out by hand from Kafka's protocol types (STRING = int16 length + UTF-8, big-endian)."""
    sync = OffsetSync("t", 2, 300, 7)
    assert sync.key() == b"\x00\x01t\x00\x00\x00\x02"
    assert sync.value() == (300).to_bytes(8, "big") + (7).to_bytes(8, "big")
    cp = Checkpoint("g", "a.t", 1, 10, 9, "m")
    assert cp.key() == b"\x00\x01g\x00\x03a.t\x00\x00\x00\x01"
    assert cp.value() == b"\x00\x00" + (10).to_bytes(8, "big") + (9).to_bytes(8, "big") + b"\x00\x01m"
    hb = Heartbeat("east", "west", 1_700_000_000_000)
    assert hb.key() == b"\x00\x04east\x00\x04west"
    assert hb.value() == b"\x00\x00" + (1_700_000_000_000).to_bytes(8, "big")


@given(names, partitions, offsets, offsets)
def test_offset_sync_round_trip(topic: str, partition: int, up: int, down: int) -> None:
    s = OffsetSync(topic, partition, up, down)
    assert OffsetSync.decode(s.key(), s.value()) == s


@given(names, names, partitions, offsets, offsets, names)
def test_checkpoint_round_trip(group: str, topic: str, partition: int, up: int, down: int, meta: str) -> None:
    c = Checkpoint(group, topic, partition, up, down, meta)
    assert Checkpoint.decode(c.key(), c.value()) == c


@given(names, names, offsets)
def test_heartbeat_round_trip(source: str, target: str, ts: int) -> None:
    h = Heartbeat(source, target, ts)
    assert Heartbeat.decode(h.key(), h.value()) == h


@given(st.binary(max_size=64), st.binary(max_size=64))
def test_decoders_raise_only_format_errors(key: bytes, value: bytes) -> None:
    for kind in (OffsetSync, Checkpoint, Heartbeat):
        try:
            kind.decode(key, value)
        except Mm2RecordError:
            pass


def test_unknown_version_is_refused() -> None:
    hb = Heartbeat("a", "b", 1)
    with pytest.raises(Mm2RecordError, match="version 1"):
        Heartbeat.decode(hb.key(), b"\x00\x01" + hb.value()[2:])


def test_replication_policies() -> None:
    p = DefaultReplicationPolicy()
    assert p.format_remote_topic("east", "orders") == "east.orders"
    assert p.topic_source("east.orders") == "east" and p.upstream_topic("east.orders") == "orders"
    assert p.topic_source("orders") is None
    assert p.offset_syncs_topic("west") == "mm2-offset-syncs.west.internal"
    assert p.checkpoints_topic("east") == "east.checkpoints.internal"
    assert p.is_heartbeats_topic("heartbeats") and p.is_heartbeats_topic("east.heartbeats")
    assert DefaultReplicationPolicy("_").format_remote_topic("east", "orders") == "east_orders"
    assert IdentityReplicationPolicy().format_remote_topic("east", "orders") == "orders"


def test_default_topic_filter_excludes_internal_topics() -> None:
    f = TopicFilter()
    assert f.accepts("orders") and f.accepts("heartbeats")
    for internal in ("__consumer_offsets", "mm2-offset-syncs.b.internal", "a.checkpoints.internal", "x.replica",
                     "connect-internal"):
        assert not f.accepts(internal)
    assert TopicFilter("orders|pay.*").accepts("payments") and not TopicFilter("orders").accepts("payments")


def test_translation_never_skips() -> None:
    store = OffsetSyncStore(per_partition_max=4)
    assert store.translate("t", 0, 5) is None
    for up, down in ((0, 0), (100, 90), (200, 180), (300, 270), (400, 360)):
        store.add(OffsetSync("t", 0, up, down))
    assert store.translate("t", 0, 400) == 360
    assert store.translate("t", 0, 401) == 361  # past the sync: one after it, re-reading rather than skipping
    assert store.translate("t", 0, 250) == 181
    assert store.translate("t", 0, 50) is None  # older than every kept sync (4 kept)
    store.add(OffsetSync("t", 0, 150, 140))  # a restarted mirror re-syncs: later syncs are superseded
    assert store.translate("t", 0, 400) == 141


def test_offset_sync_emit_rule() -> None:
    s = _PartitionState()
    assert s.update(0, 0, 100)  # first record
    assert not any(s.update(u, u, 100) for u in range(1, 101))
    assert s.update(101, 101, 100)  # translation would be 100 behind
    assert s.update(105, 102, 100)  # a gap upstream (compaction, transaction markers)
    assert s.update(106, 50, 100)  # the target was truncated


def test_progress_records() -> None:
    assert _decode_progress(_encode_progress(12, -1)) == (12, -1)
    with pytest.raises(ValueError, match="16 bytes"):
        _decode_progress(b"\x00")




@given(st.lists(st.lists(st.integers(1, 4), min_size=1, max_size=60), min_size=1, max_size=4),
       st.integers(1, 20))
def test_batched_sync_decisions_equal_the_per_record_rule(batches: list[list[int]], lag: int) -> None:
    """Mirror._sync_run (one call per partition and batch) emits exactly what _PartitionState does per record."""
    from loosely.clients.mirror import Mirror, MirrorConfig

    mirror = Mirror.__new__(Mirror)
    mirror.config = MirrorConfig("a", {}, "b", {}, offset_lag_max=lag)
    mirror._states = {}
    emitted: list[OffsetSync] = []
    mirror._emit_sync = emitted.append  # type: ignore[method-assign]
    reference = _PartitionState()
    want: list[OffsetSync] = []
    up, down = 0, 0
    for steps in batches:
        ups = []
        for step in steps:  # upstream gaps of step - 1 (compaction, transaction markers)
            up += step
            ups.append(up)
        first = down
        for i, u in enumerate(ups):
            if reference.update(u, first + i, lag):
                want.append(OffsetSync("t", 0, u, first + i))
        mirror._sync_run("t", 0, ups, first)
        down += len(ups) + 1  # the next batch starts after a transaction marker
    assert emitted == want
