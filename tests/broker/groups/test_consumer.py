"""KIP-848 consumer groups as a pure state machine: Kafka's reconciliation rules as scenarios, and a hypothesis model
of members that heartbeat, leave, crash and subscribe differently, in which no partition is ever owned twice."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from kio.schema.errors import ErrorCode

from loosely.broker.groups.consumer import (
    CommitAttempt,
    ConsumerGroup,
    ConsumerGroupLimits,
    ConsumerHeartbeat,
    ConsumerHeartbeatResponse,
    ConsumerTick,
    MemberState,
    TopicInfo,
    assign_range,
    assign_uniform,
    group_state,
    step,
    validate_offset_commit,
)

A = uuid.UUID(int=1)
B = uuid.UUID(int=2)
TOPICS = {"a": TopicInfo(A, 6), "b": TopicInfo(B, 3)}
LIMITS = ConsumerGroupLimits(session_timeout_ms=10_000, heartbeat_interval_ms=1_000)
REBALANCE_MS = 5_000


class Coordinator:
    def __init__(self, topics: dict[str, TopicInfo] | None = None) -> None:
        self.g = ConsumerGroup("g", LIMITS)
        self.now = 0
        self.topics = dict(topics or TOPICS)

    def hb(
        self,
        member: str,
        epoch: int,
        *,
        subscribed: frozenset[str] | None = None,
        owned: frozenset[tuple[uuid.UUID, int]] | None = None,
        rebalance_ms: int = -1,
        instance: str | None = None,
        assignor: str | None = None,
        regex: str | None = None,
    ) -> ConsumerHeartbeatResponse:
        ev = ConsumerHeartbeat(
            member_id=member,
            member_epoch=epoch,
            instance_id=instance,
            rack_id=None,
            rebalance_timeout_ms=rebalance_ms,
            subscribed=subscribed,
            regex=regex,
            assignor=assignor,
            owned=owned,
            client_id="c",
            client_host="/127.0.0.1",
            topics=self.topics,
        )
        self.g, resp = step(self.g, ev, self.now)
        assert resp is not None
        return resp

    def join(self, member: str, topics: frozenset[str] = frozenset({"a"}), **kw: object) -> ConsumerHeartbeatResponse:
        return self.hb(member, 0, subscribed=topics, owned=frozenset(), rebalance_ms=REBALANCE_MS, **kw)  # type: ignore[arg-type]

    def advance(self, ms: int) -> None:
        self.now += ms
        self.g, _ = step(self.g, ConsumerTick(), self.now)


def parts(topic: uuid.UUID, *ps: int) -> frozenset[tuple[uuid.UUID, int]]:
    return frozenset((topic, p) for p in ps)


def test_a_single_member_gets_everything_at_once() -> None:
    c = Coordinator()
    r = c.join("m1")
    assert (r.error, r.member_epoch, r.assignment) == (ErrorCode.none, 1, parts(A, 0, 1, 2, 3, 4, 5))
    assert r.heartbeat_interval_ms == LIMITS.heartbeat_interval_ms
    assert group_state(c.g) == "Stable"
    r = c.hb("m1", 1)
    assert (r.member_epoch, r.assignment) == (1, None), "nothing changed: no assignment in the answer"


def test_a_second_member_gets_partitions_only_after_the_first_revoked_them() -> None:
    c = Coordinator()
    all_a = c.join("m1").assignment
    assert all_a is not None
    r2 = c.join("m2")
    assert r2.member_epoch == 2 and r2.assignment == frozenset(), "the target's partitions are still the first's"
    assert c.g.members["m2"].state is MemberState.UNRELEASED_PARTITIONS
    assert group_state(c.g) == "Reconciling"
    r1 = c.hb("m1", 1, owned=all_a)
    keep = r1.assignment
    assert keep is not None and len(keep) == 3 and r1.member_epoch == 1, "first give up, keep the epoch"
    assert c.g.members["m1"].state is MemberState.UNREVOKED_PARTITIONS
    assert c.hb("m2", 2, owned=frozenset()).assignment is None, "still held by m1"
    r1 = c.hb("m1", 1, owned=keep)  # revoked: now it moves to the new epoch
    assert (r1.member_epoch, r1.assignment) == (2, None)
    r2 = c.hb("m2", 2, owned=frozenset())
    assert r2.assignment == all_a - keep
    assert group_state(c.g) == "Stable"


def test_epochs_unknown_members_and_leaving() -> None:
    c = Coordinator()
    c.join("m1")
    assert c.hb("m1", 5).error == ErrorCode.fenced_member_epoch
    assert c.hb("nobody", 1).error == ErrorCode.unknown_member_id
    c.join("m2")
    r1 = c.hb("m1", 1, owned=parts(A, 0, 1, 2, 3, 4, 5))
    r1 = c.hb("m1", 1, owned=r1.assignment)
    assert r1.member_epoch == 2
    # The answer that moved m1 to epoch 2 got lost: epoch 1 with a subset of its partitions is still accepted.
    assert c.hb("m1", 1, owned=c.g.members["m1"].assigned).error == ErrorCode.none
    assert c.hb("m1", 1, owned=parts(A, 0, 1, 2, 3, 4, 5)).error == ErrorCode.fenced_member_epoch
    r = c.hb("m1", -1)
    assert (r.error, r.member_epoch) == (ErrorCode.none, -1)
    assert set(c.g.members) == {"m2"}
    assert c.hb("m1", -1).error == ErrorCode.unknown_member_id


def test_bad_requests() -> None:
    c = Coordinator()
    assert c.hb("m", 0, subscribed=frozenset({"a"}), owned=frozenset()).error == ErrorCode.invalid_request
    assert c.hb("m", 0, subscribed=frozenset(), owned=frozenset(), rebalance_ms=1).error == ErrorCode.invalid_request
    other = Coordinator()
    assert other.hb("m", 0, subscribed=frozenset({"a"}), regex="", owned=frozenset(), rebalance_ms=1).error == (
        ErrorCode.none
    ), "an empty regex is no regex"
    assert c.hb("m", 0, subscribed=frozenset({"a"}), owned=parts(A, 1), rebalance_ms=1).error == (
        ErrorCode.invalid_request
    )
    assert c.hb("", 3).error == ErrorCode.invalid_request
    assert c.hb("m", -7).error == ErrorCode.invalid_request
    assert c.join("m", assignor="sticky-please").error == ErrorCode.unsupported_assignor
    assert not c.g.members


def test_silent_members_and_stuck_revocations_are_removed() -> None:
    c = Coordinator()
    c.join("m1")
    c.join("m2")
    c.hb("m1", 1, owned=parts(A, 0, 1, 2, 3, 4, 5))  # told to revoke; never does
    c.advance(REBALANCE_MS - 1)
    c.hb("m2", 2, owned=frozenset())
    assert "m1" in c.g.members
    c.advance(1)
    assert set(c.g.members) == {"m2"}, "a member that does not revoke within its rebalance timeout is fenced"
    r = c.hb("m2", 2, owned=frozenset())
    assert r.assignment == parts(A, 0, 1, 2, 3, 4, 5)
    c.advance(LIMITS.session_timeout_ms)
    assert not c.g.members and group_state(c.g) == "Empty"


def test_new_partitions_and_topics_change_the_target() -> None:
    c = Coordinator()
    c.join("m1", frozenset({"a", "b"}))
    c.topics["b"] = TopicInfo(B, 4)
    r = c.hb("m1", 1, owned=c.g.members["m1"].assigned)
    assert r.member_epoch == 2 and r.assignment is not None and (B, 3) in r.assignment


def test_regex_subscriptions_follow_the_topics_that_match() -> None:
    c = Coordinator()
    r = c.hb("m1", 0, subscribed=frozenset(), regex="a|c", owned=frozenset(), rebalance_ms=REBALANCE_MS)
    assert r.assignment == parts(A, 0, 1, 2, 3, 4, 5)
    topic_c = uuid.UUID(int=3)
    c.topics["c"] = TopicInfo(topic_c, 2)  # a new topic matching the pattern joins the subscription
    r = c.hb("m1", r.member_epoch, owned=r.assignment)
    assert r.assignment is not None and parts(topic_c, 0, 1) <= r.assignment
    assert c.hb("m2", 0, subscribed=frozenset(), regex="(", owned=frozenset(), rebalance_ms=1).error == (
        ErrorCode.invalid_regular_expression
    )


def test_a_backtracking_regex_cannot_stall_the_coordinator() -> None:
    """Python's re takes for ever on (a*)*x against a long name of a's; RE2 (Kafka's RE2/J too) is linear."""
    c = Coordinator()
    c.topics["a" * 200 + "c"] = TopicInfo(uuid.UUID(int=9), 1)
    started = time.monotonic()
    r = c.hb("m1", 0, subscribed=frozenset(), regex="(a*)*" * 10 + "x", owned=frozenset(), rebalance_ms=REBALANCE_MS)
    assert r.error == ErrorCode.none and r.assignment == frozenset()
    assert time.monotonic() - started < 1


def test_offset_commits_are_checked_against_the_epoch_each_partition_came_at() -> None:
    """Kafka 4.4's check: the member's epoch always commits, a newer one never; an older one commits a partition
    only if it came to the member at that epoch or before (kept partitions keep the epoch they came at)."""
    c = Coordinator()
    all_a = c.join("m1").assignment
    assert all_a is not None
    c.join("m2")
    keep = c.hb("m1", 1, owned=all_a).assignment
    assert keep is not None
    c.hb("m1", 1, owned=keep)
    c.hb("m2", 2, owned=frozenset())
    c.hb("m2", -1)
    r1 = c.hb("m1", 2, owned=keep)
    assert r1.assignment == all_a and r1.member_epoch == 3
    kept, regained = min(p for _, p in keep), min(p for _, p in all_a - keep)

    def commit(epoch: int, *ps: int, member: str = "m1", version: int = 9) -> tuple[ErrorCode, str | None]:
        return validate_offset_commit(c.g, CommitAttempt(member, None, epoch, tuple(("a", p) for p in ps), False,
                                                         version))

    assert commit(3, kept, regained) == (ErrorCode.none, None)
    assert commit(1, kept) == (ErrorCode.none, None)
    assert commit(1, kept, regained) == (ErrorCode.stale_member_epoch,
                                         f"Received member epoch 1 is older than assignment epoch 3 for partition "
                                         f"a-{regained}.")
    assert commit(4, kept) == (ErrorCode.stale_member_epoch, "Received member epoch 4 is newer than current member "
                                                             "epoch 3.")
    assert commit(1, 9)[1] == "Partition a-9 is not assigned or pending revocation for member."
    assert validate_offset_commit(c.g, CommitAttempt("m1", None, 1, (("b", 0),), False, 9))[0] == (
        ErrorCode.stale_member_epoch)
    assert commit(3, kept, version=8)[0] == ErrorCode.unsupported_version
    assert commit(3, kept, member="x")[0] == ErrorCode.unknown_member_id
    assert commit(-1, member="")[0] == ErrorCode.unknown_member_id
    assert validate_offset_commit(c.g, CommitAttempt("", None, -1, (), True, 6))[0] == ErrorCode.none
    c.hb("m1", -1)
    assert commit(-1, member="")[0] == ErrorCode.none


def test_assignors() -> None:
    subs = {"m1": frozenset({"a"}), "m2": frozenset({"a"}), "m3": frozenset({"a", "b"})}
    u = assign_uniform(subs, TOPICS, {})
    sizes = sorted(len(v) for v in u.values())
    assert sizes[-1] - sizes[0] <= 1 and sum(sizes) == 9
    assert all(tid == B for tid, _ in u["m1"] | u["m2"] if tid == B) and not any(t == B for t, _ in u["m1"] | u["m2"])
    # Sticky: a member joining moves as few partitions as balance needs.
    before = assign_uniform({"m1": frozenset({"a"}), "m2": frozenset({"a"})}, TOPICS, {})
    after = assign_uniform({"m1": frozenset({"a"}), "m2": frozenset({"a"}), "m3": frozenset({"a"})}, TOPICS, before)
    moved = sum(len(before[m] - after[m]) for m in before)
    assert moved == 2
    r = assign_range({"m1": frozenset({"a"}), "m2": frozenset({"a"})}, TOPICS, {})
    assert r == {"m1": parts(A, 0, 1, 2), "m2": parts(A, 3, 4, 5)}


@dataclass
class Client:
    member_id: str
    topics: frozenset[str]
    epoch: int = 0
    owned: frozenset[tuple[uuid.UUID, int]] = frozenset()
    alive: bool = True
    last_heartbeat_ms: int = 0


class ConsumerGroupModel(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.c = Coordinator()
        self.clients: list[Client] = []

    def heartbeat(self, cl: Client) -> None:
        cl.last_heartbeat_ms = self.c.now
        r = self.c.join(cl.member_id, cl.topics) if cl.epoch == 0 else self.c.hb(cl.member_id, cl.epoch, owned=cl.owned)
        if r.error in (ErrorCode.fenced_member_epoch, ErrorCode.unknown_member_id):
            cl.epoch, cl.owned = 0, frozenset()  # give everything up and rejoin
            return
        assert r.error == ErrorCode.none
        assert r.member_epoch >= cl.epoch, "a member's epoch went back"
        cl.epoch = r.member_epoch
        if r.assignment is not None:
            cl.owned = r.assignment

    @rule(topics=st.sampled_from([frozenset({"a"}), frozenset({"a", "b"}), frozenset({"b"})]))
    def add(self, topics: frozenset[str]) -> None:
        if len(self.clients) < 5:
            cl = Client(f"m{len(self.clients)}", topics)
            self.clients.append(cl)
            self.heartbeat(cl)

    @rule(i=st.integers(0, 9))
    def beat(self, i: int) -> None:
        live = [cl for cl in self.clients if cl.alive]
        if live:
            self.heartbeat(live[i % len(live)])

    @rule(i=st.integers(0, 9))
    def crash(self, i: int) -> None:
        if self.clients:
            self.clients[i % len(self.clients)].alive = False

    @rule(i=st.integers(0, 9))
    def leave(self, i: int) -> None:
        live = [cl for cl in self.clients if cl.alive and cl.epoch > 0]
        if live:
            cl = live[i % len(live)]
            self.c.hb(cl.member_id, -1)
            cl.alive, cl.owned = False, frozenset()

    @rule(ms=st.sampled_from([100, 1000, 4000]))
    def time_passes(self, ms: int) -> None:
        self.c.advance(ms)

    @invariant()
    def never_owned_twice(self) -> None:
        if not hasattr(self, "c"):
            return
        # Among clients that heartbeat within their rebalance timeout (the sooner of the two limits after which the
        # group fences a silent member): one that went quiet longer is a zombie the group already fenced (its
        # commits fail on the epoch), exactly as in the classic protocol.
        seen: set[tuple[uuid.UUID, int]] = set()
        for cl in self.clients:
            if cl.alive and self.c.now - cl.last_heartbeat_ms < min(REBALANCE_MS, LIMITS.session_timeout_ms):
                assert not (cl.owned & seen), "two clients in good standing own the same partition"
                seen |= cl.owned
        held: set[tuple[uuid.UUID, int]] = set()
        for m in self.c.g.members.values():
            mine = m.assigned | m.pending_revocation
            assert not (mine & held), "the coordinator gave a partition to two members"
            held |= mine

    def teardown(self) -> None:
        if not hasattr(self, "c"):
            return
        live = [cl for cl in self.clients if cl.alive]
        for _ in range(30):
            for cl in live:
                self.heartbeat(cl)
            self.c.advance(1000)
        if not live:
            return
        assert group_state(self.c.g) == "Stable"
        assert {cl.member_id for cl in live} == set(self.c.g.members)
        wanted = {(TOPICS[t].topic_id, p) for cl in live for t in cl.topics for p in range(TOPICS[t].partitions)}
        owned = [tp for cl in live for tp in cl.owned]
        assert sorted(owned) == sorted(wanted), "every subscribed partition owned by exactly one live member"


TestConsumerGroupModel = ConsumerGroupModel.TestCase
TestConsumerGroupModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
