"""loosely.broker.group_configs on its own: Kafka's order of checks, the broker's ranges, and the file it keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from loosely.broker.config import BrokerConfig
from loosely.broker.group_configs import (
    GROUP_CONFIGS_FILE,
    GroupConfigError,
    GroupConfigs,
    auto_offset_reset,
    check,
    group_defs,
    parse_duration_ms,
)
from loosely.storage.fs import OsFileSystem

CFG = BrokerConfig(data_dir="unused")


@pytest.mark.parametrize(("props", "message"), [
    ({"consumer.session.timeout.ms": "x", "foo": "1"}, "Unknown group config name: foo"),
    ({"consumer.session.timeout.ms": "x"}, "Invalid value x for configuration consumer.session.timeout.ms: "
                                           "Not a number of type INT"),
    ({"consumer.session.timeout.ms": "0"}, "Invalid value 0 for configuration consumer.session.timeout.ms: "
                                           "Value must be at least 1"),
    ({"share.isolation.level": "dirty"}, "Invalid value dirty for configuration share.isolation.level: "
                                         "String must be one of: read_committed, read_uncommitted"),
    ({"share.auto.offset.reset": "by_duration:-PT1H"},
     "Invalid value by_duration:-PT1H for configuration share.auto.offset.reset: Invalid value `by_duration:-PT1H` "
     "for configuration share.auto.offset.reset. The value must be either 'earliest', 'latest' or of the format "
     "'by_duration:<PnDTnHnMn.nS>'."),
    ({"consumer.heartbeat.interval.ms": "4999"}, "consumer.heartbeat.interval.ms must be in the range 5000 to 15000 "
                                                 "inclusive."),
    ({"consumer.session.timeout.ms": "60001"}, "consumer.session.timeout.ms must be in the range 45000 to 60000 "
                                              "inclusive."),
])
def test_checks_in_kafkas_order(props: dict[str, str], message: str) -> None:
    with pytest.raises(GroupConfigError) as e:
        check(props, CFG)
    assert str(e.value) == message and e.value.error_code == 40


def test_the_ranges_are_the_brokers() -> None:
    wide = BrokerConfig(data_dir="unused", group_consumer_session_timeout_ms_min=1000,
                        group_consumer_heartbeat_interval_ms_min=500)
    check({"consumer.session.timeout.ms": "1000", "consumer.heartbeat.interval.ms": "500"}, wide)
    with pytest.raises(GroupConfigError, match=r"consumer\.session\.timeout\.ms must be greater than "
                                               r"consumer\.heartbeat\.interval\.ms"):
        check({"consumer.session.timeout.ms": "1000", "consumer.heartbeat.interval.ms": "1000"}, wide)
    assert group_defs(BrokerConfig(data_dir="unused", group_consumer_heartbeat_interval_ms=7000))[
        "consumer.heartbeat.interval.ms"].default == "7000"


def test_configs_survive_reopening(tmp_path: Path) -> None:
    fs = OsFileSystem()
    store = GroupConfigs(fs, str(tmp_path))
    store.replace("g", {"consumer.session.timeout.ms": "50000"})
    store.replace("h", {"consumer.session.timeout.ms": "55000"})
    store.replace("h", {})
    assert GroupConfigs(fs, str(tmp_path)).groups == {"g": {"consumer.session.timeout.ms": "50000"}}
    (tmp_path / GROUP_CONFIGS_FILE).write_text("[]")
    with pytest.raises(ValueError, match=GROUP_CONFIGS_FILE):
        GroupConfigs(fs, str(tmp_path))


@pytest.mark.parametrize(("text", "ms"), [
    ("PT1H", 3_600_000), ("pt1h", 3_600_000), ("P2D", 172_800_000), ("PT0.5S", 500), ("PT-0.5S", -500),
    ("P1DT2H3M4.005S", 93_784_005), ("-PT1M", -60_000), ("PT0S", 0),
])
def test_durations_read_as_javas_duration_parse(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "P", "PT", "1H", "PT1H2", "P1W", "PT1.5H", "P1DT"])
def test_durations_java_refuses_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration_ms(text)


def test_share_auto_offset_reset_values() -> None:
    assert auto_offset_reset(" latest ") == ("latest", 0)
    assert auto_offset_reset("earliest") == ("earliest", 0)
    assert auto_offset_reset("by_duration:P1D") == ("by_duration", 86_400_000)
    for bad in ("none", "by_duration", "by_duration:", "by_duration:-PT1S", "Latest", "BY_DURATION:PT1H"):
        with pytest.raises(ValueError):
            auto_offset_reset(bad)
    check({"share.auto.offset.reset": "by_duration:PT10M"}, CFG)
