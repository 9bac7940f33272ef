"""The consumer's refresh decisions, driven by a fake clock: backoff, pins, what a failure keeps."""

from __future__ import annotations

import pytest

from loosely.hollow.api import Version
from loosely.hollow.api import _refresh as rf


def test_backoff_doubles_to_the_cap_and_resets_on_success() -> None:
    s = rf.RefreshState(backoff_ms_min=100, backoff_ms_max=1_000)
    s, fx = rf.step(s, rf.Announced(Version(7)), 0)
    assert fx == (rf.Refresh(Version(7)),)
    now, delays = 0, []
    for _ in range(6):
        s, fx = rf.step(s, rf.Failed("down", None), now)
        (b,) = fx
        assert isinstance(b, rf.Backoff)
        delays.append(b.retry_at_ms - now)
        assert rf.step(s, rf.Tick(), b.retry_at_ms - 1)[1] == ()  # not before the retry time
        now = b.retry_at_ms
        s, fx = rf.step(s, rf.Tick(), now)
        assert fx == (rf.Refresh(Version(7)),)
    assert delays == [100, 200, 400, 800, 1_000, 1_000]
    s, fx = rf.step(s, rf.Succeeded(Version(7)), now)
    assert fx == () and s.phase is rf.Phase.IDLE and s.failures == 0 and s.loaded == 7


def test_jitter_shortens_by_at_most_half() -> None:
    s = rf.RefreshState(backoff_ms_min=1_000, backoff_ms_max=1_000)
    assert s.backoff_ms(1, 0.0) == 1_000 and s.backoff_ms(1, 1.0) == 500 and s.backoff_ms(1, 0.5) == 750


def test_a_failure_keeps_what_was_reached() -> None:
    s = rf.RefreshState(loaded=Version(1))
    s, _ = rf.step(s, rf.Announced(Version(9)), 0)
    s, _ = rf.step(s, rf.Failed("corrupt delta 5-9", Version(5)), 0)
    assert s.loaded == 5 and s.last_error == "corrupt delta 5-9"
    s, _ = rf.step(s, rf.Failed("x", None), 0) if s.phase is rf.Phase.REFRESHING else (s, ())
    assert s.loaded == 5


def test_requested_ignores_backoff_and_announcements_wait_for_it() -> None:
    s = rf.RefreshState(loaded=Version(1), backoff_ms_min=1_000)
    s, _ = rf.step(s, rf.Announced(Version(2)), 0)
    s, _ = rf.step(s, rf.Failed("down", None), 0)
    s, fx = rf.step(s, rf.Announced(Version(3)), 10)
    assert fx == () and s.announced == 3
    s, fx = rf.step(s, rf.Requested(), 20)
    assert fx == (rf.Refresh(Version(3)),)


def test_pin_wins_over_announcements_until_unpinned() -> None:
    s = rf.RefreshState(loaded=Version(5), announced=Version(5))
    s, fx = rf.step(s, rf.Pinned(Version(3)), 0)
    assert fx == (rf.Refresh(Version(3)),)
    s, _ = rf.step(s, rf.Succeeded(Version(3)), 0)
    s, fx = rf.step(s, rf.Announced(Version(6)), 0)
    assert fx == ()
    s, fx = rf.step(s, rf.Pinned(None), 0)
    assert fx == (rf.Refresh(Version(6)),)


def test_an_announcement_during_a_refresh_starts_the_next_one() -> None:
    s = rf.RefreshState()
    s, _ = rf.step(s, rf.Announced(Version(1)), 0)
    s, fx = rf.step(s, rf.Announced(Version(2)), 0)
    assert fx == ()
    s, fx = rf.step(s, rf.Succeeded(Version(1)), 0)
    assert fx == (rf.Refresh(Version(2)),) and s.phase is rf.Phase.REFRESHING


def test_watcher_failures_back_off_too() -> None:
    s = rf.RefreshState(loaded=Version(1), announced=Version(1), backoff_ms_min=200)
    s, fx = rf.step(s, rf.WatcherFailed("timeout"), 0)
    assert fx == (rf.Backoff(200, 1, "timeout"),) and s.loaded == 1
    s, fx = rf.step(s, rf.WatcherFailed("timeout"), 200)
    assert fx == (rf.Backoff(600, 2, "timeout"),)


def test_limits() -> None:
    with pytest.raises(ValueError):
        rf.RefreshState(backoff_ms_min=0)
    with pytest.raises(ValueError):
        rf.RefreshState(backoff_ms_min=10, backoff_ms_max=5)
    with pytest.raises(ValueError, match="while idle"):
        rf.step(rf.RefreshState(), rf.Succeeded(Version(1)), 0)
