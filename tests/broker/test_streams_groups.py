"""The streams group state machine (KIP-1071, :mod:`loosely.broker.groups.streams`) driven with a fake clock: the
topology configured against the broker's topics, the sticky assignor, joins, hand-overs, leaves and timeouts.
tests/compat/test_streams_groups.py checks the same against Kafka Streams and Apache Kafka."""

from __future__ import annotations

import json
from dataclasses import replace

from loosely.broker.groups.consumer import CommitAttempt
from loosely.broker.groups.streams import (
    HeartbeatStatus,
    StreamsGroup,
    StreamsGroupLimits,
    StreamsHeartbeat,
    StreamsHeartbeatResponse,
    StreamsTick,
    Subtopology,
    Tasks,
    TopicSpec,
    Topology,
    assign_sticky,
    configure,
    group_from_json,
    group_state,
    group_to_json,
    next_deadline,
    step,
    validate_heartbeat,
    validate_offset_commit,
)
from loosely.protocol.errors import ErrorCode

# source -> (re-key) -> app-rep -> (count, with a store) : the shape of a count with a repartition step
TOPOLOGY = Topology(0, (
    Subtopology("0", ("in",), repartition_sink_topics=("app-rep",)),
    Subtopology("1", (), state_changelog_topics=(TopicSpec("app-store-changelog", 0, 0, (("cleanup.policy",
                                                                                          "compact"),)),),
                repartition_source_topics=(TopicSpec("app-rep", 0, 0),)),
))
READY = {"in": 3, "app-rep": 3, "app-store-changelog": 3}
EVERY = frozenset((s, p) for s in "01" for p in range(3))


def beat(member: str, epoch: int, *, topics: dict[str, int] = READY, owned: Tasks | None = None,
         process: str | None = None, topology: Topology | None = None) -> StreamsHeartbeat:
    return StreamsHeartbeat(
        member_id=member, member_epoch=epoch, instance_id=None, rack_id=None,
        rebalance_timeout_ms=30_000 if epoch == 0 else -1,
        topology=(topology or TOPOLOGY) if epoch == 0 else None,
        owned=Tasks() if epoch == 0 else owned, process_id=process or (f"p-{member}" if epoch == 0 else None),
        user_endpoint=None, client_tags=None, task_offsets=None, task_end_offsets=None, shutdown_application=False,
        client_id="c", client_host="/127.0.0.1", topics=topics)


def run(g: StreamsGroup, ev: StreamsHeartbeat, now: int = 0) -> tuple[StreamsGroup, StreamsHeartbeatResponse]:
    invalid = validate_heartbeat(ev, g.group_id)
    if invalid is not None:
        return g, invalid
    g, r = step(g, ev, now)
    assert r is not None
    return g, r


def test_configure_counts_tasks_and_names_the_internal_topics_to_create() -> None:
    c = configure(TOPOLOGY, {"in": 3})
    assert not c.ready and c.status[0][0] is HeartbeatStatus.MISSING_INTERNAL_TOPICS
    assert {(t.name, t.partitions) for t in c.missing} == {("app-rep", 3), ("app-store-changelog", 3)}
    assert {t.name: dict(t.configs) for t in c.missing}["app-store-changelog"] == {"cleanup.policy": "compact"}
    assert configure(TOPOLOGY, READY).tasks == {"0": 3, "1": 3}
    assert configure(TOPOLOGY, {}).status[0] == (HeartbeatStatus.MISSING_SOURCE_TOPICS, "Source topics in are missing.")
    wrong = configure(TOPOLOGY, {**READY, "app-rep": 2})
    assert wrong.status[0][0] is HeartbeatStatus.INCORRECTLY_PARTITIONED_TOPICS


def test_sticky_assignor_balances_keeps_tasks_and_puts_standbys_on_other_processes() -> None:
    tasks = {"0": 3, "1": 3}
    one = assign_sticky({"a": "p1"}, tasks, {}, 0)
    assert one["a"].active == EVERY
    two = assign_sticky({"a": "p1", "b": "p2"}, tasks, one, 0)
    assert len(two["a"].active) == len(two["b"].active) == 3
    assert two["a"].active <= one["a"].active  # a keeps what it may
    standby = assign_sticky({"a": "p1", "b": "p2"}, tasks, two, 1)
    for m, other in (("a", "b"), ("b", "a")):
        assert standby[m].standby == standby[other].active
    same_process = assign_sticky({"a": "p1", "b": "p1"}, tasks, {}, 1)
    assert not same_process["a"].standby and not same_process["b"].standby


def test_join_waits_for_internal_topics_then_gets_every_task() -> None:
    g = StreamsGroup("g", StreamsGroupLimits(initial_rebalance_delay_ms=0, assignment_interval_ms=0))
    g, r = run(g, beat("a", 0, topics={"in": 3}))
    assert r.error == ErrorCode.none and r.member_epoch == 1 and r.assignment == Tasks()
    assert [s for s, _ in r.status] == [HeartbeatStatus.MISSING_INTERNAL_TOPICS]
    assert {t.name for t in r.create} == {"app-rep", "app-store-changelog"}
    assert group_state(g) == "NotReady"
    g, r = run(g, beat("a", 1, owned=Tasks()))
    assert r.status == () and r.member_epoch == 2
    assert r.assignment is not None and r.assignment.active == EVERY
    assert group_state(g) == "Stable"


def test_a_second_member_gets_tasks_only_once_the_first_revoked_them() -> None:
    g = StreamsGroup("g", StreamsGroupLimits(initial_rebalance_delay_ms=0, assignment_interval_ms=0))
    g, _ = run(g, beat("a", 0))
    assert g.members["a"].assigned.active == EVERY
    g, rb = run(g, beat("b", 0))
    assert rb.assignment is not None and not rb.assignment.active  # a still owns them all
    assert group_state(g) == "Reconciling"
    g, ra = run(g, beat("a", 1, owned=Tasks(EVERY)))
    assert ra.assignment is not None and len(ra.assignment.active) == 3  # told to give up the other three
    kept = ra.assignment.active
    g, ra = run(g, beat("a", ra.member_epoch, owned=Tasks(kept)))
    g, rb = run(g, beat("b", rb.member_epoch, owned=Tasks()))
    assert rb.assignment is not None and rb.assignment.active == EVERY - kept
    assert group_state(g) == "Stable"


def test_an_older_epoch_commits_only_tasks_the_member_had_at_that_epoch() -> None:
    """Kafka 4.4's check: the member's epoch always commits, a newer one never; an older one commits a partition
    only if its task came to the member at that epoch or before (kept tasks keep the epoch they came at)."""
    g = StreamsGroup("g", StreamsGroupLimits(initial_rebalance_delay_ms=0, assignment_interval_ms=0))
    g, _ = run(g, beat("a", 0))
    first = g.members["a"].member_epoch
    g, rb = run(g, beat("b", 0))
    g, ra = run(g, beat("a", first, owned=Tasks(EVERY)))
    assert ra.assignment is not None
    kept = ra.assignment.active
    g, ra = run(g, beat("a", ra.member_epoch, owned=Tasks(kept)))
    g, _ = run(g, beat("b", rb.member_epoch, owned=Tasks()))
    g, _ = run(g, replace(beat("b", 0), member_epoch=-1, topology=None, owned=None))
    g, ra = run(g, beat("a", ra.member_epoch, owned=Tasks(kept)))
    assert ra.assignment is not None and ra.assignment.active == EVERY
    now = g.members["a"].member_epoch
    (ks, kp), (rs, rp) = min(kept), min(EVERY - kept)
    topic = {"0": "in", "1": "app-rep"}

    def commit(epoch: int, *parts: tuple[str, int], member: str = "a",
               version: int = 9) -> tuple[ErrorCode, str | None]:
        return validate_offset_commit(g, CommitAttempt(member, None, epoch, parts, False, version))

    assert commit(now, ("elsewhere", 0)) == (ErrorCode.none, None)
    assert commit(first, (topic[ks], kp)) == (ErrorCode.none, None)
    assert commit(first, (topic[ks], kp), (topic[rs], rp)) == (ErrorCode.stale_member_epoch, (
        f"Received member epoch {first} is older than assignment epoch {now} for task {rs}-{rp}."))
    assert commit(now + 1, (topic[ks], kp)) == (ErrorCode.stale_member_epoch, (
        f"Received member epoch {now + 1} is newer than current member epoch {now}."))
    assert commit(first, ("elsewhere", 0)) == (ErrorCode.stale_member_epoch, "Topic elsewhere is not in the topology.")
    assert commit(first, (topic[ks], 7))[1] == f"Task {ks}-7 is not assigned or pending revocation for member."
    assert commit(now, ("in", 0), version=8)[0] == ErrorCode.unsupported_version
    assert commit(now, ("in", 0), member="x", version=8)[0] == ErrorCode.unknown_member_id
    assert validate_offset_commit(g, CommitAttempt("", None, -1, (("in", 0),), True, 6))[0] == ErrorCode.none
    assert commit(-1, ("in", 0), member="")[0] == ErrorCode.unknown_member_id


def test_epochs_leave_and_session_timeout() -> None:
    g = StreamsGroup("g", StreamsGroupLimits(session_timeout_ms=1000, initial_rebalance_delay_ms=0,
                                             assignment_interval_ms=0))
    g, r = run(g, beat("a", 0))
    assert run(g, beat("a", r.member_epoch + 1, owned=Tasks()))[1].error == ErrorCode.fenced_member_epoch
    assert run(g, beat("x", 1, owned=Tasks()))[1].error == ErrorCode.unknown_member_id
    g, _ = run(g, beat("b", 0), now=500)
    g, _ = step(g, StreamsTick(), 1200)  # a was silent for its session timeout; b was not
    assert set(g.members) == {"b"}
    g, left = run(g, replace(beat("b", 0), member_epoch=-1, topology=None, owned=None))
    assert left.error == ErrorCode.none and left.member_epoch == -1 and not g.members
    assert group_state(g) == "Empty"


def test_bad_heartbeats_get_kafkas_errors() -> None:
    g = StreamsGroup("g", StreamsGroupLimits(initial_rebalance_delay_ms=0, assignment_interval_ms=0))
    assert run(g, replace(beat("a", 0), topology=None))[1].error == ErrorCode.invalid_request
    assert run(g, replace(beat("a", 0), rebalance_timeout_ms=-1))[1].message == (
        "RebalanceTimeoutMs must be provided in first request.")
    bad = Topology(0, (Subtopology("0", ("in",), state_changelog_topics=(TopicSpec("c", 4, 0),)),))
    assert run(g, beat("a", 0, topology=bad))[1].error == ErrorCode.streams_invalid_topology
    assert run(g, replace(beat("a", 1), member_epoch=-3))[1].error == ErrorCode.invalid_request
    assert run(g, replace(beat("", 0)))[1].message == "MemberId can't be empty."


def test_a_group_survives_its_json_with_new_deadlines_and_goes_on_at_its_epochs() -> None:
    """What the shell writes to streams-groups.json: a group in the middle of a hand-over comes back equal but for
    the deadlines, which count again from the loading process's clock, and the hand-over completes."""
    limits = StreamsGroupLimits(session_timeout_ms=1000, initial_rebalance_delay_ms=0, assignment_interval_ms=0)
    g = StreamsGroup("g", limits)
    topology = replace(TOPOLOGY, subtopologies=(
        replace(TOPOLOGY.subtopologies[0], copartition_groups=(frozenset({"in"}),)), TOPOLOGY.subtopologies[1]))
    g, _ = run(g, beat("a", 0, topology=topology))
    g, rb = run(g, beat("b", 0, topology=topology))
    g, ra = run(g, beat("a", 1, owned=Tasks(EVERY)))  # a is told to give up three tasks: a revocation is pending
    assert g.members["a"].revocation_deadline_ms is not None
    doc = json.loads(json.dumps(group_to_json(g)))
    back = group_from_json("g", doc, limits, 50_000)
    assert group_to_json(back) == group_to_json(g)
    assert back.members["a"].session_deadline_ms == 51_000
    assert back.members["a"].revocation_deadline_ms == 50_000 + 30_000
    assert replace(back, members={}, last_assignment_ms=None) == replace(g, members={}, last_assignment_ms=None)
    for mid, m in g.members.items():
        assert replace(back.members[mid], session_deadline_ms=0, revocation_deadline_ms=0) == replace(
            m, session_deadline_ms=0, revocation_deadline_ms=0)
    kept = ra.assignment.active if ra.assignment is not None else frozenset()
    back, ra = run(back, beat("a", ra.member_epoch, owned=Tasks(kept)), 50_000)
    back, rb = run(back, beat("b", rb.member_epoch, owned=Tasks()), 50_000)
    assert rb.error == ErrorCode.none and rb.assignment is not None and rb.assignment.active == EVERY - kept
    assert group_state(back) == "Stable" and back.group_epoch == g.group_epoch


def test_a_group_without_members_waits_its_initial_rebalance_delay_then_assigns_once() -> None:
    """Kafka 4.4's group.streams.initial.rebalance.delay.ms: members joining an empty group get nothing (status
    ASSIGNMENT_DELAYED) at the group's epoch until the delay is over; then one assignment for all of them."""
    g = StreamsGroup("g", StreamsGroupLimits(initial_rebalance_delay_ms=3000, assignment_interval_ms=0))
    g, ra = run(g, beat("a", 0), now=0)
    assert (ra.member_epoch, ra.assignment) == (1, Tasks())
    assert [s for s, _ in ra.status] == [HeartbeatStatus.ASSIGNMENT_DELAYED]
    g, rb = run(g, beat("b", 0), now=1000)
    assert rb.assignment == Tasks() and [s for s, _ in rb.status] == [HeartbeatStatus.ASSIGNMENT_DELAYED]
    g, ra = run(g, beat("a", ra.member_epoch, owned=Tasks()), now=2999)
    assert not ra.assignment and [s for s, _ in ra.status] == [HeartbeatStatus.ASSIGNMENT_DELAYED]
    assert next_deadline(g) == 3000
    g = step(g, StreamsTick(), 3000)[0]  # the delay ends: one assignment, no member gives anything up
    epoch = g.group_epoch
    g, ra = run(g, beat("a", ra.member_epoch, owned=Tasks()), now=3100)
    g, rb = run(g, beat("b", rb.member_epoch, owned=Tasks()), now=3100)
    assert ra.status == () and ra.member_epoch == rb.member_epoch == epoch
    assert ra.assignment is not None and rb.assignment is not None
    assert ra.assignment.active | rb.assignment.active == EVERY and not ra.assignment.active & rb.assignment.active
    assert group_state(g) == "Stable"
    # a member joining a group that has members is not delayed
    g, rc = run(g, beat("c", 0), now=3200)
    assert rc.status == ()


def test_another_topology_is_refused_and_an_older_epoch_is_stale() -> None:
    """Kafka 4.4 supports no topology updates: a joining member's topology must be the group's (subtopologies in
    any order), unless its epoch is older, which joins and hears STALE_TOPOLOGY."""
    g = StreamsGroup("g", StreamsGroupLimits(initial_rebalance_delay_ms=0, assignment_interval_ms=0))
    g, _ = run(g, beat("a", 0, topology=replace(TOPOLOGY, epoch=1)))
    g, r = run(g, beat("b", 0, topology=replace(TOPOLOGY, epoch=1, subtopologies=TOPOLOGY.subtopologies[::-1])))
    assert r.error == ErrorCode.none and r.status == ()
    for other in (replace(TOPOLOGY, epoch=1, subtopologies=TOPOLOGY.subtopologies[:1]), replace(TOPOLOGY, epoch=2)):
        _, r = run(g, beat("c", 0, topology=other))
        assert (r.error, r.message) == (ErrorCode.invalid_request, "Topology updates are not supported yet.")
    _, r = run(g, beat("c", 0, topology=replace(TOPOLOGY, epoch=0)))
    assert r.error == ErrorCode.none and [s for s, _ in r.status] == [HeartbeatStatus.STALE_TOPOLOGY]


def test_the_target_is_computed_at_most_once_per_assignment_interval() -> None:
    """Kafka 4.4's group.streams.assignment.interval.ms: a member joining within the interval after the last
    assignment hears ASSIGNMENT_DELAYED and is assigned once the interval is over (at its next heartbeat, or the
    shell's tick)."""
    g = StreamsGroup("g", StreamsGroupLimits(initial_rebalance_delay_ms=0, assignment_interval_ms=1000))
    g, ra = run(g, beat("a", 0), now=0)
    assert ra.status == () and ra.assignment is not None and ra.assignment.active == EVERY
    g, rb = run(g, beat("b", 0), now=200)
    assert [(s, d) for s, d in rb.status] == [(HeartbeatStatus.ASSIGNMENT_DELAYED, "Assignment delayed due to the "
                                                                                   "configured assignment interval.")]
    assert rb.assignment == Tasks() and g.target.get("b") is None
    assert next_deadline(g) == 1000
    g = step(g, StreamsTick(), 1000)[0]
    assert g.assignment_epoch == g.group_epoch and len(g.target["b"].active) == 3
