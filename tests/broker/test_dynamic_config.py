"""loosely.broker.dynamic_config on its own: the layers, Kafka's order of checks, and the file it keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from loosely.broker.dynamic_config import (
    CONFIGS_FILE,
    SOURCE_DEFAULT,
    SOURCE_DYNAMIC_BROKER,
    SOURCE_DYNAMIC_DEFAULT,
    SOURCE_STATIC_BROKER,
    BrokerConfigError,
    DynamicBrokerConfigs,
    check_change,
    check_resource_name,
)
from loosely.storage.fs import OsFileSystem


def test_layers_resolve_strongest_first_and_survive_reopening(tmp_path: Path) -> None:
    fs = OsFileSystem()
    dyn = DynamicBrokerConfigs(fs, str(tmp_path), 1, {"log.retention.ms": "10"})
    dyn.replace("", {"log.retention.ms": "20", "log.segment.bytes": "4096", "custom.plugin.setting": "x"})
    dyn.replace("1", {"log.retention.ms": "30"})
    assert [(x.value, x.source) for x in dyn.layers("log.retention.ms", "604800000")] == [
        ("30", SOURCE_DYNAMIC_BROKER), ("20", SOURCE_DYNAMIC_DEFAULT), ("10", SOURCE_STATIC_BROKER),
        ("604800000", SOURCE_DEFAULT)]
    # Unknown names are kept but never reach the storage engine, and show no value.
    assert dyn.log_defaults() == {"log.retention.ms": "30", "log.segment.bytes": "4096"}
    assert [x.value for x in dyn.layers("custom.plugin.setting", None)] == [None]
    again = DynamicBrokerConfigs(fs, str(tmp_path), 1, {})
    assert (again.default, dict(again.per_broker)) == (dyn.default, {"log.retention.ms": "30"})
    again.replace("1", {})
    assert DynamicBrokerConfigs(fs, str(tmp_path), 1, {}).brokers == {}


def test_a_damaged_file_is_named_at_start(tmp_path: Path) -> None:
    (tmp_path / CONFIGS_FILE).write_text('{"version": 1, "default": [')
    with pytest.raises(ValueError, match=CONFIGS_FILE):
        DynamicBrokerConfigs(OsFileSystem(), str(tmp_path), 1, {})


@pytest.mark.parametrize(("props", "message"), [
    ({"log.retention.ms": "abc", "log.dirs": "/x"}, "Cannot update these configs dynamically: [log.dirs]"),
    ({"node.id": "2", "broker.id": "2"}, "Cannot update these configs dynamically: [broker.id, node.id]"),
    ({"sasl.enabled.mechanisms": "PLAIN"}, "loosely applies these configs only at start (loosely broker --config): "
                                           "[sasl.enabled.mechanisms]"),
    ({"log.cleaner.backoff.ms": "-1"}, "Invalid value -1 for configuration log.cleaner.backoff.ms: Value must be at "
                                       "least 0"),
    ({"producer.id.expiration.ms": str(2**31)}, f"Invalid value {2**31} for configuration producer.id.expiration.ms: "
                                                "Not a number of type INT"),
    ({"max.connections": "-1"}, "Invalid value -1 for configuration max.connections: Value must be at least 0"),
    ({"max.connections.per.ip": "x"}, "Invalid value x for configuration max.connections.per.ip: Not a number"),
    ({"max.connections.per.ip.overrides": "host:1"},
     "Invalid value host:1 for configuration max.connections.per.ip.overrides: expected IP:COUNT"),
    ({"log.retention.ms": "abc"}, "Invalid value abc for configuration log.retention.ms: "),
])
def test_checks_in_kafkas_order(props: dict[str, str], message: str) -> None:
    with pytest.raises(BrokerConfigError) as e:
        check_change(props, per_broker=True)
    assert str(e.value).startswith(message) and e.value.error_code == 42


def test_valid_changes_and_resource_names() -> None:
    check_change({"log.retention.ms": "1", "log.cleanup.policy": "compact,delete", "my.plugin": "x",
                  "max.connections": "100", "max.connections.per.ip.overrides": "127.0.0.1:5,[::1]:2"},
                 per_broker=False)
    check_resource_name("1", 1)
    with pytest.raises(BrokerConfigError, match="Unexpected broker id, expected 1, but received 2"):
        check_resource_name("2", 1)
