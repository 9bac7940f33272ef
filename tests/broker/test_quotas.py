"""Client quotas in one module: Kafka's precedence, describe filters, durable alterations, the sampled rate, the
request-time, connection-rate and mutation (token bucket) quotas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loosely.broker.config import split_kafka_settings
from loosely.broker.quotas import (
    CLIENT_ID,
    CONNECTION,
    FETCH,
    IP,
    MUTATION,
    PRODUCE,
    REQUEST,
    USER,
    ClientQuotas,
    QuotaError,
    check_entity,
)
from loosely.storage.fs import OsFileSystem
from loosely.testing import FaultyFileSystem


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        return self.ms


def quotas(tmp_path: Path, clock: Clock | None = None, fs: object = None, **kw: int) -> ClientQuotas:
    return ClientQuotas(fs or OsFileSystem(), str(tmp_path), clock or Clock(), **kw)  # type: ignore[arg-type]


def entity(**names: str | None) -> tuple[tuple[str, str | None], ...]:
    return check_entity((t.replace("_", "-"), n) for t, n in names.items())


def test_the_most_specific_entity_wins_in_kafkas_order(tmp_path: Path) -> None:
    q = quotas(tmp_path)
    levels = [entity(client_id=None), entity(client_id="app"), entity(user=None), entity(user=None, client_id=None),
              entity(user=None, client_id="app"), entity(user="alice"), entity(user="alice", client_id=None),
              entity(user="alice", client_id="app")]
    for i, e in enumerate(levels):  # least specific first: each new one must take over
        assert q.alter([(e, [(PRODUCE, 100.0 + i, False)])], validate_only=False) == [None]
        assert q.applied(PRODUCE, "alice", "app") == (e, 100.0 + i)
    assert q.applied(PRODUCE, "bob", "other") == (entity(user=None, client_id=None), 103.0)
    assert q.applied(FETCH, "alice", "app") is None


def test_alterations_are_validated_durable_and_validate_only_changes_nothing(tmp_path: Path) -> None:
    q = quotas(tmp_path)
    app = entity(client_id="app")
    assert q.alter([(app, [(PRODUCE, 5.0, False)])], validate_only=True) == [None]
    assert q.describe([], strict=False) == []
    bad = q.alter([(app, [("bogus", 1.0, False)]), (app, [(PRODUCE, -1.0, False)]), (app, [(PRODUCE, 9.0, False)])],
                  validate_only=False)
    assert [type(r).__name__ for r in bad] == ["QuotaError", "QuotaError", "NoneType"]
    assert quotas(tmp_path).describe([(CLIENT_ID, 0, "app")], strict=True) == [(app, {PRODUCE: 9.0})]
    assert q.alter([(app, [(PRODUCE, 0.0, True)])], validate_only=False) == [None]
    assert quotas(tmp_path).describe([], strict=False) == []


def test_a_failed_write_changes_nothing(tmp_path: Path) -> None:
    fs = FaultyFileSystem(1)
    q = quotas(tmp_path, fs=fs)
    fs.fail("write_atomic", path_contains="client-quotas.json")
    with pytest.raises(OSError):
        q.alter([(entity(client_id="a"), [(PRODUCE, 1.0, False)])], validate_only=False)
    assert q.describe([], strict=False) == []


def test_describe_filters_as_kafka_matches_them(tmp_path: Path) -> None:
    q = quotas(tmp_path)
    for e in (entity(user="alice"), entity(user=None), entity(user="alice", client_id="app"), entity(client_id="x")):
        q.alter([(e, [(PRODUCE, 1.0, False)])], validate_only=False)
    names = lambda found: sorted(str(e) for e, _ in found)  # noqa: E731
    assert names(q.describe([(USER, 0, "alice")], strict=True)) == [str(entity(user="alice"))]
    assert len(q.describe([(USER, 0, "alice")], strict=False)) == 2
    assert names(q.describe([(USER, 1, None)], strict=False)) == [str(entity(user=None))]
    assert len(q.describe([(USER, 2, None)], strict=False)) == 3
    with pytest.raises(QuotaError):
        q.describe([("group", 0, "g")], strict=False)
    with pytest.raises(QuotaError):
        check_entity([(USER, "a"), (USER, "b")])


def test_the_rate_allows_a_first_burst_then_throttles_in_proportion(tmp_path: Path) -> None:
    clock = Clock()
    q = quotas(tmp_path, clock, window_num=11, window_ms=1000)
    q.alter([(entity(client_id="app"), [(PRODUCE, 1000.0, False)])], validate_only=False)
    # 10 windows' worth at once is within the quota (the span is never less than num - 1 windows)
    assert q.throttle_ms(PRODUCE, "ANONYMOUS", "app", 10_000) == 0
    # 10,000 more: 20,000 B over 10 s is 2,000 B/s, twice the quota: throttled for the span again
    assert q.throttle_ms(PRODUCE, "ANONYMOUS", "app", 10_000) == 10_000
    clock.ms += 11_000  # every sample expired
    assert q.throttle_ms(PRODUCE, "ANONYMOUS", "app", 500) == 0
    assert q.throttle_ms(PRODUCE, "ANONYMOUS", "other", 10**9) == 0  # no quota applies to this client


def test_a_throttled_fetch_is_not_counted(tmp_path: Path) -> None:
    q = quotas(tmp_path, window_num=2, window_ms=1000)
    q.alter([(entity(client_id="r"), [(FETCH, 1000.0, False)])], validate_only=False)
    assert q.throttle_ms(FETCH, "u", "r", 5000, record_if_throttled=False) > 0
    assert q.throttle_ms(FETCH, "u", "r", 900, record_if_throttled=False) == 0  # the 5,000 were taken back out


def test_a_damaged_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "client-quotas.json").write_text('{"version": 1, "quotas": [{"entity": [["group", "g"]]}]}')
    with pytest.raises(ValueError, match=r"client-quotas\.json is damaged"):
        quotas(tmp_path)


def test_values_are_checked_as_kafka_checks_their_types(tmp_path: Path) -> None:
    q = quotas(tmp_path)
    ip, app = check_entity([(IP, "10.0.0.1")]), entity(client_id="app")
    out = q.alter([(ip, [(CONNECTION, 2.5, False)]), (ip, [(CONNECTION, 2.0**31, False)]),
                   (ip, [(PRODUCE, 1.0, False)]), (app, [(PRODUCE, 1.5, False)]), (app, [(REQUEST, 0.5, False)]),
                   (app, [(CONNECTION, 1.0, False)]), (ip, [(CONNECTION, 3.0, False)])], validate_only=False)
    assert [str(r) if r else None for r in out] == [
        "connection_creation_rate cannot be a fractional value.",
        "Proposed value for connection_creation_rate is too large for an INT.",
        "Invalid configuration key producer_byte_rate",
        "producer_byte_rate cannot be a fractional value.",
        None,
        "Invalid configuration key connection_creation_rate",
        None,
    ]
    with pytest.raises(QuotaError, match="IP entity shouldnot be combined"):
        check_entity([(IP, "10.0.0.1"), (USER, "u")])


def test_a_default_quota_is_measured_per_client(tmp_path: Path) -> None:
    q = quotas(tmp_path, window_num=2, window_ms=1000)
    q.alter([(entity(client_id=None), [(PRODUCE, 1000.0, False)])], validate_only=False)
    assert q.throttle_ms(PRODUCE, "u", "a", 1000) == 0
    assert q.throttle_ms(PRODUCE, "u", "b", 1000) == 0  # b has its own 1,000 B/s, as Kafka's metric tags give it
    assert q.throttle_ms(PRODUCE, "u", "a", 1000) > 0


def test_request_time_is_a_percentage_of_one_thread_throttled_at_most_one_window(tmp_path: Path) -> None:
    clock = Clock()
    q = quotas(tmp_path, clock, window_num=2, window_ms=1000)
    q.alter([(entity(client_id="busy"), [(REQUEST, 10.0, False)])], validate_only=False)  # 100 ms of each second
    assert q.request_throttle_ms("u", "busy", 90_000_000) == 0  # 90 ms: 9%
    assert q.request_throttle_ms("u", "busy", 20_000_000) == 100  # 110 ms in 1 s: (11 - 10) / 10 * 1000 ms
    assert q.request_throttle_ms("u", "busy", 10**10) == 1000  # bounded by one window
    assert q.request_throttle_ms("u", "idle", 10**10) == 0


def test_connections_over_the_ip_rate_are_throttled_and_not_counted(tmp_path: Path) -> None:
    clock = Clock()
    q = quotas(tmp_path, clock, window_num=2, window_ms=1000)
    q.alter([(check_entity([(IP, None)]), [(CONNECTION, 5.0, False)]),
             (check_entity([(IP, "::ffff:10.0.0.9")]), [(CONNECTION, 2.0, False)])], validate_only=False)
    assert [q.connection_throttle_ms("10.0.0.9", "L") for _ in range(4)] == [0, 0, 500, 500]  # 3 in 1 s: 1.5x
    assert [q.connection_throttle_ms("10.0.0.1", "L") for _ in range(6)] == [0] * 5 + [200]  # the default, its own
    clock.ms += 1500
    assert q.connection_throttle_ms("10.0.0.9", "L") == 0  # the throttled ones were not counted: 3 in 1.5 s
    q.alter([(check_entity([(IP, "gateway.example")]), [(CONNECTION, 1.0, False)])], validate_only=False)
    assert q.connection_throttle_ms("10.0.0.7", "L") == 0  # the name is not looked up yet: the default applies
    q.resolved_hosts["gateway.example"] = "10.0.0.7"  # what the broker does when the quota arrives
    assert q.connection_throttle_ms("10.0.0.7", "L") == 1000  # with the one before, 2 in 1 s: over 1/s


def test_mutations_take_tokens_strictly_or_permissively(tmp_path: Path) -> None:
    clock = Clock()
    q = quotas(tmp_path, clock, controller_window_num=2, controller_window_ms=1000)
    q.alter([(entity(user="u"), [(MUTATION, 1.0, False)])], validate_only=False)  # a bucket of 2 tokens
    strict = q.mutation_quota("u", "c", strict=True)
    assert (strict.record(10), strict.throttle_ms) == (True, 0)  # the bucket may go negative once: -8
    assert (strict.record(1), strict.throttle_ms) == (False, 8000)
    clock.ms += 3000
    permissive = q.mutation_quota("u", "other-client", strict=False)  # the same user: the same bucket, now -5
    assert (permissive.record(1), permissive.throttle_ms) == (True, 6000)
    clock.ms += 10_000
    assert q.mutation_quota("u", "c", strict=True).record(1)  # refilled to 2 (never beyond)
    unlimited = q.mutation_quota("v", "c", strict=True)
    assert unlimited.record(10**6) and unlimited.throttle_ms == 0


def test_the_broker_connection_rate_delays_and_ip_throttled_connections_do_not_count(tmp_path: Path) -> None:
    q = ClientQuotas(OsFileSystem(), str(tmp_path), Clock(), window_num=2, window_ms=1000, connection_rate_max=3,
                     listener_connection_rate_max={"internal": 1})
    q.alter([(check_entity([(IP, "10.0.0.9")]), [(CONNECTION, 1.0, False)])], validate_only=False)

    def connect(ip: str, listener: str = "PLAINTEXT") -> tuple[int, int]:  # what the accept loop asks: (delay
        # before taking it up, hold then close)
        return q.broker_connection_delay_ms(listener), q.connection_throttle_ms(ip, listener)

    assert connect("10.0.0.9") == (0, 0)
    assert connect("10.0.0.9") == (0, 1000)  # over its IP's rate: not counted in the broker's either
    assert [connect("10.0.0.1") for _ in range(3)] == [(0, 0), (0, 0), (333, 0)]  # 4 in 1 s: (4 - 3) / 3 * 1 s
    assert connect("10.0.0.1", "INTERNAL") == (667, 0)  # its listener allows 1/s (2 in 1 s): the longer wait


def test_the_quota_settings_parse_and_a_bad_value_names_its_setting() -> None:
    broker, _, unknown = split_kafka_settings({
        "controller.quota.window.num": "2", "max.connection.creation.rate": "30",
        "listener.name.Internal.max.connection.creation.rate": "5", "listener.name.x.sasl.enabled.mechanisms": "PLAIN"})
    assert (broker, unknown) == ({"controller_quota_window_num": 2, "connection_creation_rate_max": 30,
                                  "listener_connection_creation_rate_max": {"internal": 5},
                                  "sasl_listener_mechanisms": {"x": ("PLAIN",)}}, [])
    with pytest.raises(ValueError, match=r"listener\.name\.a\.max\.connection\.creation\.rate"):
        split_kafka_settings({"listener.name.a.max.connection.creation.rate": "fast"})
    with pytest.raises(ValueError, match=r"controller\.quota\.window\.num"):
        split_kafka_settings({"controller.quota.window.num": "0"})


def test_a_changed_quota_bounds_the_rate_measured_so_far(tmp_path: Path) -> None:
    q = quotas(tmp_path, window_num=2, window_ms=1000)
    app = entity(client_id="app")
    q.alter([(app, [(PRODUCE, 1000.0, False)])], validate_only=False)
    assert q.throttle_ms(PRODUCE, "u", "app", 900) == 0
    q.alter([(app, [(PRODUCE, 500.0, False)])], validate_only=False)  # Kafka changes the bound of the same sensor
    assert q.throttle_ms(PRODUCE, "u", "app", 100) == 1000  # 1,000 B in 1 s against 500 B/s


def test_ip_entities_that_name_no_host_get_one_line_each_and_the_connection_stays(tmp_path: Path) -> None:
    from kio.schema.alter_client_quotas.v1.request import AlterClientQuotasRequest, EntityData, EntryData, OpData
    from kio.static.primitive import f64

    from broker._raw import Raw
    from loosely.protocol.messages import ApiKey
    from loosely.testing import embedded_broker

    names = ["a\x00b", "x" * 5000, "..", "::ffff:127.0.0.1", "localhost"]
    (tmp_path / "client-quotas.json").write_text(json.dumps({"version": 1, "quotas": [
        {"entity": [["ip", "localhost"]], "values": {CONNECTION: 1000.0}}]}))
    with embedded_broker(data_dir=str(tmp_path)) as b:
        quotas = b.broker.ctx.quotas
        assert quotas is not None and quotas.resolved_hosts["localhost"] in ("127.0.0.1", "::1")  # looked up at start
        raw = Raw(b.bootstrap_servers)
        try:
            for _ in range(2):  # the second time: the connection is still served
                resp = raw.request(ApiKey.ALTER_CLIENT_QUOTAS, 1, AlterClientQuotasRequest(
                    entries=tuple(EntryData(entity=(EntityData(entity_type="ip", entity_name=n),),
                                            ops=(OpData(key=CONNECTION, value=f64(5.0), remove=False),))
                                  for n in names), validate_only=True))
                assert [(int(e.error_code), e.error_message) for e in resp.entries] == [  # type: ignore[attr-defined]
                    (42, f"{n} is not a valid IP or resolvable host.") for n in names[:3]] + [(0, None), (0, None)]
        finally:
            raw.close()
