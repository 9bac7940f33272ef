"""The admission counters and the listen check, without sockets (the broker-level behaviour is in test_limits)."""

from __future__ import annotations

import doctest
import importlib
import logging

import pytest

from loosely.broker._admission import ConnectionCounts, LogEvery, RequestBytes
from loosely.broker._listening import check_listen
from loosely.testing import FakeClock


@pytest.mark.parametrize(
    "name",
    ["loosely.broker._admission", "loosely.broker._listening", "loosely.broker.config", "loosely.protocol.framing"],
)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0, f"{result.failed} of {result.attempted} failed in {name}"


def test_request_bytes_wakes_waiters_in_order_while_the_budget_lasts() -> None:
    b = RequestBytes(limit_bytes=10)
    assert b.charge(10)
    woken: list[str] = []

    def waiter(name: str, size: int) -> None:
        def wake() -> None:
            if b.charge(size):
                woken.append(name)
            else:
                b.wait(wake)

        b.wait(wake)

    for name, size in [("a", 6), ("b", 6), ("c", 1)]:
        waiter(name, size)
    b.refund(10)  # a fits (6 < 10 left); b overshoots (6 more while 4 are left), as Kafka's pool; c waits
    assert (woken, b.used_bytes, b.waiting) == (["a", "b"], 12, 1)
    b.refund(12)
    assert (woken, b.used_bytes, b.waiting) == (["a", "b", "c"], 1, 0)


def test_request_bytes_unbounded_and_forget() -> None:
    b = RequestBytes(limit_bytes=-1)
    assert all(b.charge(10**9) for _ in range(5))
    b = RequestBytes(limit_bytes=1)
    assert b.charge(1) and not b.charge(1)
    calls: list[int] = []
    b.wait(lambda: calls.append(1))
    b.forget(b._waiters[0])
    b.forget(lambda: None)  # unknown waiters are ignored
    b.refund(1)
    assert calls == [] and b.used_bytes == 0


@pytest.mark.parametrize(("opened", "admitted"), [(1, True), (2, True), (3, False)])
def test_per_ip_limit_at_under_over(opened: int, admitted: bool) -> None:
    c = ConnectionCounts(total_max=100, per_ip_max=2, per_ip_overrides={})
    for _ in range(opened - 1):
        assert c.admit("10.1.1.1") is None
    assert (c.admit("::ffff:10.1.1.1") is None) == admitted  # the same client through a dual-stack socket
    assert c.admit("10.1.1.2") is None


def test_log_every_keeps_one_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    say = LogEvery(logging.getLogger("test.admission"), clock, interval_ms=1000)
    with caplog.at_level(logging.WARNING, logger="test.admission"):
        for _ in range(5):
            say(logging.WARNING, "rejected %s", "x")
            clock.advance(100)
        clock.advance(600)
        say(logging.WARNING, "rejected %s", "y")
    assert [r.getMessage() for r in caplog.records] == [
        "rejected x",
        "rejected y (4 more like this in the last 1100 ms)",
    ]


@pytest.mark.parametrize(
    ("host", "advertised", "error"),
    [
        ("127.0.0.1", None, None),
        ("::1", None, None),
        ("localhost", None, None),
        ("0.0.0.0", None, "not a loopback address"),
        ("10.0.0.1", None, "not a loopback address"),
        ("0.0.0.0", "broker.example", None),
        ("127.0.0.1", "0.0.0.0", "cannot advertise"),
        ("127.0.0.1", "::", "cannot advertise"),
    ],
)
def test_check_listen(host: str, advertised: str | None, error: str | None) -> None:
    if error is None:
        assert check_listen(host, advertised) == (host != "0.0.0.0")  # returns whether it is loopback
    else:
        with pytest.raises(ValueError, match=error):
            check_listen(host, advertised)
