"""The consumer-lag series of the Prometheus endpoint: per partition with the committed offset, and bounded."""

from __future__ import annotations

from loosely.broker.metrics import CONSUMER_PARTITION_SERIES_MAX, GroupSnapshot, Snapshot, families, line_protocol


def _samples(s: Snapshot) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in families(s):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def _group(name: str, partitions: int, end: int, committed: int) -> GroupSnapshot:
    tps = [("orders", p) for p in range(partitions)]
    return GroupSnapshot(name, "STABLE", 1, {tp: end - committed for tp in tps}, {tp: committed for tp in tps})


def _snapshot(*groups: GroupSnapshot) -> Snapshot:
    return Snapshot({}, {}, {}, {}, 0, 0, {}, list(groups))


def test_each_partition_has_its_lag_and_committed_offset() -> None:
    got = _samples(_snapshot(_group("billing", 2, end=30, committed=12)))
    assert got["loosely_consumer_lag"] == [({"group": "billing", "topic": "orders", "partition": "0"}, 18.0),
                                           ({"group": "billing", "topic": "orders", "partition": "1"}, 18.0)]
    assert [v for _, v in got["loosely_consumer_committed_offset"]] == [12.0, 12.0]
    assert got["loosely_consumer_group_lag"] == [({"group": "billing"}, 36.0)]
    assert got["loosely_consumer_lag_series_omitted"] == [({}, 0.0)]


def test_partition_series_stop_at_the_bound_and_the_group_total_keeps_counting() -> None:
    at = _samples(_snapshot(_group("a", CONSUMER_PARTITION_SERIES_MAX, end=5, committed=4)))
    assert len(at["loosely_consumer_lag"]) == CONSUMER_PARTITION_SERIES_MAX
    assert at["loosely_consumer_lag_series_omitted"] == [({}, 0.0)]

    over = _samples(_snapshot(_group("b", 2, end=9, committed=2),
                              _group("a", CONSUMER_PARTITION_SERIES_MAX - 1, end=5, committed=4)))
    assert len(over["loosely_consumer_lag"]) == len(over["loosely_consumer_committed_offset"])
    assert len(over["loosely_consumer_lag"]) == CONSUMER_PARTITION_SERIES_MAX
    assert {d["group"] for d, _ in over["loosely_consumer_lag"]} == {"a", "b"}  # groups in name order: b's 2nd is cut
    assert over["loosely_consumer_lag_series_omitted"] == [({}, 1.0)]
    assert dict((d["group"], v) for d, v in over["loosely_consumer_group_lag"]) == {
        "a": float(CONSUMER_PARTITION_SERIES_MAX - 1), "b": 14.0}


def test_security_counters_in_prometheus_and_influx() -> None:
    quiet = Snapshot({}, {}, {}, {}, 0, 0, {})
    assert "loosely_authorization_denials_total" not in _samples(quiet)  # no authorizer: no family
    assert "loosely_security" not in line_protocol(quiet, "h")
    s = Snapshot({}, {}, {}, {}, 0, 0, {}, tls_handshake_failures=3,
                 authorization_denials={("WRITE", "TOPIC"): 2, ("READ", "GROUP"): 5})
    got = _samples(s)
    assert got["loosely_tls_handshake_failures_total"] == [({}, 3.0)]
    assert sorted(got["loosely_authorization_denials_total"], key=lambda x: x[1]) == [
        ({"operation": "WRITE", "resource_type": "TOPIC"}, 2.0),
        ({"operation": "READ", "resource_type": "GROUP"}, 5.0),
    ]
    assert "loosely_security,host=h tls_handshake_failures=3i,authorization_denials=7i 0\n" in line_protocol(s, "h")
