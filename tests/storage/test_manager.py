from __future__ import annotations

from pathlib import Path

import pytest

from loosely.protocol.errors import ErrorCode
from loosely.storage.log import LogError
from loosely.storage.manager import LogManager
from storage._helpers import all_values, batch, clock


def test_topics_configs_and_ids_survive_a_restart(tmp_path: Path) -> None:
    m = LogManager(str(tmp_path), clock=clock())
    m.open()
    t = m.create_topic("orders", 3, {"retention.ms": "1000", "cleanup.policy": "compact"})
    t.logs[2].append(batch(b"v", key=b"k"))
    m.close()
    again = LogManager(str(tmp_path), clock=clock())
    again.open()
    t2 = again.get("orders")
    assert t2 is not None
    assert (t2.topic_id, t2.partitions, t2.overrides) == (
        t.topic_id,
        3,
        {"retention.ms": "1000", "cleanup.policy": "compact"},
    )
    assert t2.config.compact and not t2.config.delete and t2.config.retention_ms == 1000
    assert all_values(t2.logs[2]) == [(0, b"v")]
    assert again.was_clean_shutdown


def test_delete_then_recreate_starts_empty(tmp_path: Path) -> None:
    m = LogManager(str(tmp_path), clock=clock())
    m.open()
    m.create_topic("t", 1).logs[0].append(batch(b"old"))
    m.delete_topic("t")
    assert m.get("t") is None
    assert all_values(m.create_topic("t", 1).logs[0]) == []
    with pytest.raises(LogError) as e:
        m.delete_topic("nope")
    assert e.value.error_code == ErrorCode.unknown_topic_or_partition


def test_orphan_partition_directories_are_removed_on_open(tmp_path: Path) -> None:
    (tmp_path / "ghost-0").mkdir()
    (tmp_path / "ghost-0" / "00000000000000000000.log").write_bytes(b"")
    m = LogManager(str(tmp_path), clock=clock())
    m.open()
    assert not (tmp_path / "ghost-0").exists()


def test_collisions_partitions_and_configs_are_validated(tmp_path: Path) -> None:
    m = LogManager(str(tmp_path), clock=clock())
    m.open()
    m.create_topic("a.b", 1)
    cases = [
        (("a_b", 1, {}), ErrorCode.invalid_topic_exception),
        (("a.b", 1, {}), ErrorCode.topic_already_exists),
        (("z", 0, {}), ErrorCode.invalid_partitions),
        (("z", 1, {"retention.ms": "-2"}), ErrorCode.invalid_config),
        (("z", 1, {"no.such.config": "1"}), ErrorCode.invalid_config),
        (("z", 1, {"cleanup.policy": "shred"}), ErrorCode.invalid_config),
    ]
    for args, code in cases:
        with pytest.raises(LogError) as e:
            m.create_topic(*args)  # type: ignore[arg-type]
        assert e.value.error_code == code, args


def test_add_partitions_only_grows(tmp_path: Path) -> None:
    m = LogManager(str(tmp_path), clock=clock())
    m.open()
    m.create_topic("t", 2)
    assert m.add_partitions("t", 5).partitions == 5
    with pytest.raises(LogError):
        m.add_partitions("t", 5)
