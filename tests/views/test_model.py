"""Pure parts of the views: view validation, batch folding and the retry policy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loosely.views import Add, Batch, Delete, Put, TopicPartition, View, ViewError, fold_versioned, net_changes
from loosely.views._batch import DELETED, entries_by_key
from loosely.views._policy import Applied, ApplyState, Failed, FencedOut, Phase, Poisoned, RetryLimits, step


@pytest.mark.parametrize("name", ["", "Orders", "1x", "a-b", "x" * 49, 'a"; drop table'])
def test_view_names_are_safe_identifiers(name: str) -> None:
    with pytest.raises(ViewError):
        View(name, 1, ("t",), lambda r: None)


def test_view_needs_topics_and_a_positive_version() -> None:
    with pytest.raises(ViewError):
        View("v", 1, (), lambda r: None)
    with pytest.raises(ViewError):
        View("v", 1, "orders", lambda r: None)  # type: ignore[arg-type]
    with pytest.raises(ViewError):
        View("v", 0, ("t",), lambda r: None)


TP = [TopicPartition("t", 0), TopicPartition("t", 1)]
changes = st.one_of(
    st.builds(Put, st.sampled_from("abc"), st.integers(-5, 5)),
    st.builds(Add, st.sampled_from("abc"), st.integers(-5, 5)),
    st.builds(Delete, st.sampled_from("abc")),
)


def apply_one(state: dict[str, object], c: object) -> None:
    if isinstance(c, Put):
        state[c.key] = c.value
    elif isinstance(c, Add):
        state[c.key] = state.get(c.key, 0) + c.amount  # type: ignore[operator]
    else:
        assert isinstance(c, Delete)
        state.pop(c.key, None)


@given(st.dictionaries(st.sampled_from("abc"), st.integers(-5, 5)), st.lists(changes, max_size=30))
def test_net_changes_equal_applying_one_by_one(initial: dict[str, object], cs: list[object]) -> None:
    seq = dict(initial)
    for c in cs:
        apply_one(seq, c)
    net = dict(initial)
    b = Batch.build([(TP[0], i, 0, c) for i, c in enumerate(cs)])  # type: ignore[misc]
    for c in net_changes(b).values():
        apply_one(net, c)
    assert net == seq


@given(st.lists(st.tuples(st.integers(0, 1), changes), max_size=40), st.integers(0, 40), st.integers(0, 40))
def test_versioned_replay_is_idempotent(entries: list[tuple[int, object]], crash_at: int, replay_from: int) -> None:
    """Apply a prefix (as before a crash), then replay from any earlier point: same result as applying once."""
    log = [(TP[p], i, c) for i, (p, c) in enumerate(entries)]
    by_key = lambda es: entries_by_key(Batch.build([(tp, o, 0, c) for tp, o, c in es]))  # noqa: E731

    def run(docs: dict[str, tuple[object, dict[str, int]]], es: list[tuple[TopicPartition, int, object]]) -> None:
        for k, group in by_key(es).items():
            cur, ver = docs.get(k, (DELETED, {}))
            val, ver, _ = fold_versioned(cur, ver, group)  # type: ignore[arg-type]
            if val is DELETED:
                docs.pop(k, None)
            else:
                docs[k] = (val, ver)

    once: dict[str, tuple[object, dict[str, int]]] = {}
    run(once, log)
    crashed: dict[str, tuple[object, dict[str, int]]] = {}
    cut = min(crash_at, len(log))
    run(crashed, log[:cut])
    run(crashed, log[min(replay_from, cut):])
    assert {k: v for k, (v, _) in crashed.items()} == {k: v for k, (v, _) in once.items()}


def test_add_to_a_non_number_is_a_view_error() -> None:
    with pytest.raises(ViewError, match="not a number"):
        net_changes(Batch.build([(TP[0], 0, 0, Put("a", "x")), (TP[0], 1, 0, Add("a", 1))]))


def test_policy_retries_with_doubling_backoff_then_stops() -> None:
    limits = RetryLimits(attempts_max=4, backoff_ms=100, backoff_ms_max=250)
    s = ApplyState()
    waits = []
    for now in (0, 1000, 2000):
        s, fx = step(s, Failed("x"), now, limits)
        waits.append(fx[0].at_ms - now)  # type: ignore[union-attr]
    assert waits == [100, 200, 250]
    s, fx = step(s, Failed("x"), 3000, limits)
    assert s.phase is Phase.STOPPED and "after 4 attempts" in fx[0].error  # type: ignore[union-attr]
    assert step(s, Applied(), 4000, limits) == (s, ())


def test_policy_success_resets_and_fencing_reseeks() -> None:
    s, _ = step(ApplyState(), Failed("x"), 0)
    s, fx = step(s, Applied(), 10)
    assert s == ApplyState() and type(fx[0]).__name__ == "Commit"
    s, fx = step(s, FencedOut("moved"), 20)
    assert s.phase is Phase.RUNNING and type(fx[0]).__name__ == "Reseek"
    s, fx = step(s, Poisoned("bad"), 30)
    assert s.phase is Phase.STOPPED
