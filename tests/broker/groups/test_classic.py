"""The classic group state machine, driven with explicit time: scenarios from Kafka's rules, and a hypothesis model
of clients that join, heartbeat, leave, crash and restart while the clock moves."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from kio.schema.errors import ErrorCode

from loosely.broker.groups.classic import (
    NO_MEMBER_ID,
    Effect,
    Event,
    Group,
    GroupId,
    GroupLimits,
    Heartbeat,
    HeartbeatResponse,
    InstanceId,
    Join,
    JoinResponse,
    Leave,
    LeaveResponse,
    MemberId,
    OffsetCommitTouch,
    Phase,
    Protocol,
    Reply,
    RequestId,
    Stored,
    StoreGroup,
    Sync,
    SyncResponse,
    Tick,
    next_deadline,
    select_protocol,
    step,
    subscribed_topics,
    validate_delete,
    validate_offset_commit,
)

SESSION_MS = 10_000
REBALANCE_MS = 20_000
PARTITIONS = 6
RANGE = (Protocol("range", b"r"),)


class Harness:
    """Feeds events to :func:`step`, checks every request is answered once, and stores groups successfully
    (or with an error when ``store_error`` is set)."""

    def __init__(self, limits: GroupLimits | None = None) -> None:
        self.g = Group(GroupId("g"), limits or GroupLimits())
        self.now = 0
        self._rid = 0
        self.outstanding: set[RequestId] = set()
        self.replies: dict[RequestId, object] = {}
        self.stores = 0
        self.store_error = ErrorCode.none

    def rid(self) -> RequestId:
        self._rid += 1
        r = RequestId(self._rid)
        self.outstanding.add(r)
        return r

    def step(self, ev: Event) -> list[Effect]:
        before = self.g
        self.g, effects = step(self.g, ev, self.now)
        assert self.g.generation >= before.generation
        for eff in effects:
            if isinstance(eff, Reply):
                assert eff.request in self.outstanding, f"reply to {eff.request}, which is not waiting"
                self.outstanding.discard(eff.request)
                self.replies[eff.request] = eff.response
            elif isinstance(eff, StoreGroup):
                self.stores += 1
                effects = effects + self.step(Stored(eff.then, self.store_error))
        check_structure(self.g, self.outstanding)
        return effects

    def advance(self, ms: int) -> None:
        self.now += ms
        self.step(Tick())

    def join(
        self,
        member_id: str = "",
        *,
        instance: str | None = None,
        client: str = "c",
        version: int = 5,
        protocols: tuple[Protocol, ...] = RANGE,
        new_id: str | None = None,
        session_ms: int = SESSION_MS,
    ) -> RequestId:
        r = self.rid()
        self.step(
            Join(
                request=r,
                member_id=MemberId(member_id),
                instance_id=InstanceId(instance) if instance else None,
                client_id=client,
                client_host="/127.0.0.1",
                protocol_type="consumer",
                protocols=protocols,
                session_timeout_ms=session_ms,
                rebalance_timeout_ms=REBALANCE_MS,
                require_known_member_id=version >= 4,
                supports_skip_assignment=version >= 9,
                new_member_id=MemberId(new_id or f"{client}-{self._rid}"),
            )
        )
        return r

    def sync(
        self, member_id: str, generation: int, assignments: dict[str, bytes] | None = None, instance: str | None = None
    ) -> RequestId:
        r = self.rid()
        self.step(
            Sync(
                r,
                MemberId(member_id),
                InstanceId(instance) if instance else None,
                generation,
                "consumer",
                None,
                tuple((MemberId(k), v) for k, v in (assignments or {}).items()),
            )
        )
        return r

    def heartbeat(self, member_id: str, generation: int, instance: str | None = None) -> ErrorCode:
        r = self.rid()
        self.step(Heartbeat(r, MemberId(member_id), InstanceId(instance) if instance else None, generation))
        resp = self.replies[r]
        assert isinstance(resp, HeartbeatResponse)
        return resp.error

    def join_reply(self, r: RequestId) -> JoinResponse:
        resp = self.replies[r]
        assert isinstance(resp, JoinResponse)
        return resp

    def sync_reply(self, r: RequestId) -> SyncResponse:
        resp = self.replies[r]
        assert isinstance(resp, SyncResponse)
        return resp


def check_structure(g: Group, outstanding: set[RequestId]) -> None:
    """What must hold between any two events."""
    if g.members:
        assert g.leader in g.members
    else:
        assert g.phase in (Phase.EMPTY, Phase.PREPARING_REBALANCE, Phase.DEAD)
    if g.phase is Phase.EMPTY:
        assert not g.members
    assert g.pending_sync <= set(g.members)
    assert not (set(g.pending_members) & set(g.members))
    waiting = [r for m in g.members.values() for r in (m.awaiting_join, m.awaiting_sync) if r is not None]
    assert len(waiting) == len(set(waiting)), "one request remembered twice"
    assert set(waiting) <= outstanding, "the state remembers a request that was already answered"
    if g.phase is Phase.STABLE:
        assert all(m.awaiting_join is None and m.awaiting_sync is None for m in g.members.values())
    if g.phase in (Phase.COMPLETING_REBALANCE, Phase.STABLE):
        assert g.protocol_name is not None
        assert all(m.awaiting_join is None for m in g.members.values())
    if g.phase is not Phase.PREPARING_REBALANCE:
        assert g.join_deadline_ms is None


def assign(members: list[str]) -> dict[str, bytes]:
    """A round-robin assignor: partition i goes to the (i mod n)-th member id in sorted order."""
    ms = sorted(members)
    out: dict[str, list[int]] = {m: [] for m in ms}
    for p in range(PARTITIONS):
        out[ms[p % len(ms)]].append(p)
    return {m: ",".join(map(str, ps)).encode() for m, ps in out.items()}


# --- scenarios -----------------------------------------------------------------------------------------------------


def test_member_id_required_then_join_completes_at_once_with_no_initial_delay() -> None:
    h = Harness()
    r = h.join(version=5)
    first = h.join_reply(r)
    assert first.error == ErrorCode.member_id_required
    assert first.member_id and first.member_id in h.g.pending_members
    assert h.g.phase is Phase.EMPTY
    r = h.join(first.member_id)
    assert r not in h.replies, "the initial rebalance waits for the (zero) delay timer"
    assert next_deadline(h.g) == h.now
    h.advance(0)
    resp = h.join_reply(r)
    assert (resp.error, resp.generation, resp.leader, resp.protocol_name) == (
        ErrorCode.none,
        1,
        first.member_id,
        "range",
    )
    assert [m.member_id for m in resp.members] == [first.member_id]
    assert h.g.phase is Phase.COMPLETING_REBALANCE
    s = h.sync(first.member_id, 1, {first.member_id: b"all"})
    assert h.sync_reply(s) == SyncResponse(ErrorCode.none, "consumer", "range", b"all")
    assert h.g.phase is Phase.STABLE
    assert h.stores == 1


def test_old_join_versions_get_a_member_id_without_the_extra_round_trip() -> None:
    h = Harness()
    r = h.join(version=3)
    h.advance(0)
    assert h.join_reply(r).error == ErrorCode.none
    assert h.join_reply(r).member_id in h.g.members


def test_initial_delay_waits_for_more_members_and_extends_per_arrival() -> None:
    h = Harness(GroupLimits(initial_rebalance_delay_ms=3000))
    a = h.join(version=3, client="a")
    h.advance(2000)
    b = h.join(version=3, client="b")  # arrives during the delay: when it ends (3000), it starts again (6000)
    h.advance(1000)
    assert a not in h.replies and b not in h.replies
    h.advance(2999)
    assert a not in h.replies
    h.advance(1)
    assert h.join_reply(a).generation == h.join_reply(b).generation == 1
    assert len(h.g.members) == 2


def run_to_stable(h: Harness, members: dict[str, RequestId]) -> int:
    """Given parked joins of every member, answer them and complete the sync; returns the generation."""
    replies = {m: h.join_reply(r) for m, r in members.items()}
    gen = next(iter(replies.values())).generation
    leader = next(r.leader for r in replies.values())
    for m in members:
        if m != leader:
            h.sync(m, gen)
    h.sync(leader, gen, assign(list(members)))
    assert h.g.phase is Phase.STABLE
    return gen


def form_group(h: Harness, n: int) -> tuple[list[str], int]:
    ids = []
    for i in range(n):
        r = h.join(version=3, client=f"m{i}")
        if i == 0:
            h.advance(0)
            gen = run_to_stable(h, {h.join_reply(r).member_id: r})
            ids.append(h.join_reply(r).member_id)
            continue
        # The newcomer waits; the others learn of the rebalance from their heartbeat and rejoin.
        parked = {}
        for m in ids:
            assert h.heartbeat(m, gen) == ErrorCode.rebalance_in_progress
            parked[m] = h.join(m)
        joined = (
            h.join_reply(r).member_id
            if r in h.replies
            else next(mid for mid, mm in h.g.members.items() if mm.awaiting_join == r)
        )
        parked[joined] = r
        gen = run_to_stable(h, parked)
        ids.append(joined)
    return ids, gen


def test_a_new_member_triggers_a_rebalance_that_waits_for_everyone() -> None:
    h = Harness()
    ids, gen = form_group(h, 3)
    assert gen == 3
    assignments = {m: h.g.members[MemberId(m)].assignment for m in ids}
    assert assignments == assign(ids)


def test_a_silent_member_is_expired_and_the_others_rebalance_without_it() -> None:
    h = Harness()
    ids, gen = form_group(h, 3)
    dead = ids[0]
    for _ in range(SESSION_MS // 1000):
        h.advance(1000)
        for m in ids[1:]:
            h.heartbeat(m, gen)
    h.advance(1)
    assert dead not in h.g.members
    assert h.g.phase is Phase.PREPARING_REBALANCE
    parked = {m: h.join(m) for m in ids[1:]}
    gen2 = run_to_stable(h, parked)
    assert gen2 == gen + 1 and set(h.g.members) == set(ids[1:])


def test_members_that_do_not_rejoin_in_time_are_dropped_when_the_rebalance_times_out() -> None:
    h = Harness()
    ids, gen = form_group(h, 2)
    r = h.join(ids[0])  # only one rejoins; the other keeps heartbeating (which is not rejoining)
    for _ in range(REBALANCE_MS // 5000 - 1):
        h.advance(5000)
        assert h.heartbeat(ids[1], gen) == ErrorCode.rebalance_in_progress
    h.advance(4999)
    assert r not in h.replies
    h.advance(1)
    resp = h.join_reply(r)
    assert resp.error == ErrorCode.none and resp.generation == gen + 1
    assert set(h.g.members) == {ids[0]}


def test_leave_group_rebalances_the_rest() -> None:
    h = Harness()
    ids, gen = form_group(h, 2)
    r = h.rid()
    h.step(Leave(r, ((MemberId(ids[1]), None),)))
    assert h.replies[r] == LeaveResponse(ErrorCode.none, ((MemberId(ids[1]), None, ErrorCode.none),))
    assert h.g.phase is Phase.PREPARING_REBALANCE
    j = h.join(ids[0])
    assert h.join_reply(j).generation == gen + 1  # the only member rejoined: no need to wait


def test_heartbeat_and_sync_errors() -> None:
    h = Harness()
    ids, gen = form_group(h, 1)
    assert h.heartbeat(ids[0], gen) == ErrorCode.none
    assert h.heartbeat(ids[0], gen - 1) == ErrorCode.illegal_generation
    assert h.heartbeat("nobody", gen) == ErrorCode.unknown_member_id
    assert h.sync_reply(h.sync(ids[0], gen + 5)).error == ErrorCode.illegal_generation
    assert h.sync_reply(h.sync("nobody", gen)).error == ErrorCode.unknown_member_id
    assert h.join_reply(h.join("nobody")).error == ErrorCode.unknown_member_id
    other = (Protocol("roundrobin", b""),)
    assert h.join_reply(h.join(protocols=other, version=3)).error == ErrorCode.inconsistent_group_protocol


def test_static_member_rejoining_takes_over_and_fences_its_old_id() -> None:
    h = Harness()
    r = h.join(instance="i1", new_id="i1-a", version=5)
    h.advance(0)
    run_to_stable(h, {"i1-a": r})
    gen = h.g.generation
    # A restart: the same instance id joins without a member id. Stable and same protocol: no rebalance.
    r2 = h.join(instance="i1", new_id="i1-b", version=9)
    resp = h.join_reply(r2)
    assert resp.error == ErrorCode.none and resp.member_id == "i1-b" and resp.generation == gen
    assert resp.skip_assignment, "the leader must not compute a new assignment"
    assert h.g.phase is Phase.STABLE and set(h.g.members) == {"i1-b"}
    assert h.heartbeat("i1-a", gen, instance="i1") == ErrorCode.fenced_instance_id
    assert h.heartbeat("i1-b", gen, instance="i1") == ErrorCode.none
    assert h.g.members[MemberId("i1-b")].assignment == assign(["i1-a"])["i1-a"]


def test_a_failed_store_of_a_static_rejoin_keeps_the_old_member_id() -> None:
    h = Harness()
    r = h.join(instance="i1", new_id="i1-a", version=5)
    h.advance(0)
    run_to_stable(h, {"i1-a": r})
    h.store_error = ErrorCode.coordinator_not_available
    r2 = h.join(instance="i1", new_id="i1-b", version=5)
    assert h.join_reply(r2).error == ErrorCode.coordinator_not_available
    assert set(h.g.members) == {"i1-a"}


def test_a_failed_store_of_the_assignment_sends_everyone_back_to_join() -> None:
    h = Harness()
    a = h.join(version=3, client="a")
    h.advance(0)
    leader = h.join_reply(a).member_id
    h.store_error = ErrorCode.coordinator_not_available
    s = h.sync(leader, 1, {leader: b"x"})
    assert h.sync_reply(s).error == ErrorCode.coordinator_not_available
    assert h.g.phase is Phase.PREPARING_REBALANCE
    assert h.g.members[MemberId(leader)].assignment == b""


def test_members_that_never_sync_are_removed_after_the_rebalance_timeout() -> None:
    h = Harness()
    a = h.join(version=3, client="a")
    h.advance(0)
    ida = h.join_reply(a).member_id
    b = h.join(version=3, client="b")
    h.heartbeat(ida, 1)
    ra = h.join(ida)
    idb = h.join_reply(b).member_id
    gen = h.join_reply(ra).generation
    leader = h.join_reply(ra).leader
    follower = idb if leader == ida else ida
    h.sync(leader, gen, assign([ida, idb]))  # the follower never sends SyncGroup
    assert h.g.phase is Phase.STABLE
    for _ in range(REBALANCE_MS // 5000):
        h.advance(5000)
        h.heartbeat(leader, gen)
    assert follower not in h.g.members
    assert h.g.phase is Phase.PREPARING_REBALANCE
    assert h.heartbeat(leader, gen) == ErrorCode.rebalance_in_progress


def test_a_superseded_join_is_answered_not_forgotten() -> None:
    h = Harness()
    ids, _gen = form_group(h, 2)
    first = h.join(ids[0])
    second = h.join(ids[0])
    assert h.join_reply(first).error == ErrorCode.rebalance_in_progress
    assert second not in h.replies


def test_offset_commit_touches_the_session() -> None:
    h = Harness()
    ids, _gen = form_group(h, 1)
    h.advance(SESSION_MS - 1)
    h.step(OffsetCommitTouch(MemberId(ids[0])))
    h.advance(SESSION_MS - 1)
    assert ids[0] in h.g.members
    h.advance(1)
    assert ids[0] not in h.g.members


def test_validate_offset_commit() -> None:
    h = Harness()
    assert validate_offset_commit(None, "", None, -1, transactional=False) == ErrorCode.none
    assert validate_offset_commit(None, "m", None, 3, transactional=False) == ErrorCode.illegal_generation
    ids, gen = form_group(h, 1)
    g = h.g
    assert validate_offset_commit(g, ids[0], None, gen, transactional=False) == ErrorCode.none
    assert validate_offset_commit(g, ids[0], None, gen - 1, transactional=False) == ErrorCode.illegal_generation
    assert validate_offset_commit(g, "x", None, gen, transactional=False) == ErrorCode.unknown_member_id
    assert validate_offset_commit(g, "", None, -1, transactional=False) == ErrorCode.unknown_member_id
    assert validate_offset_commit(g, "", None, -1, transactional=True) == ErrorCode.none
    assert validate_delete(g) == ErrorCode.non_empty_group
    assert validate_delete(None) == ErrorCode.group_id_not_found
    assert validate_delete(Group(GroupId("e"))) == ErrorCode.none


def test_protocol_selection_takes_the_common_protocol_most_prefer() -> None:
    h = Harness()
    both = (Protocol("range", b""), Protocol("roundrobin", b""))
    rr_first = (Protocol("roundrobin", b""), Protocol("range", b""))
    a = h.join(version=3, client="a", protocols=both)
    h.advance(0)
    assert h.join_reply(a).protocol_name == "range"
    assert select_protocol([m for m in h.g.members.values()]) == "range"
    from dataclasses import replace

    members = list(h.g.members.values())
    two = [replace(members[0], protocols=rr_first), replace(members[0], member_id=MemberId("z"), protocols=rr_first)]
    assert select_protocol(two) == "roundrobin"


def test_subscribed_topics_read_from_consumer_protocol_metadata() -> None:
    meta = b"\x00\x01" + b"\x00\x00\x00\x02" + b"\x00\x01a" + b"\x00\x02bc" + b"\xff\xff\xff\xff"
    h = Harness()
    a = h.join(version=3, protocols=(Protocol("range", meta),))
    h.advance(0)
    h.sync(h.join_reply(a).member_id, 1)
    assert subscribed_topics(h.g) == {"a", "bc"}


# --- a model of real clients -----------------------------------------------------------------------------------------


@dataclass
class SimClient:
    name: str
    instance: str | None
    member_id: str = ""
    generation: int = -1
    wants_join: bool = True
    waiting: RequestId | None = None
    alive: bool = True
    assignment: bytes | None = None
    requests: list[RequestId] = field(default_factory=list)


class GroupModel(RuleBasedStateMachine):
    """Clients behave as librdkafka does; time moves in steps. Whatever happens, every request is answered once,
    the structure holds, and once the survivors keep going the group settles with exactly them, each partition
    assigned once."""

    @initialize(delay=st.sampled_from([0, 3000]))
    def setup(self, delay: int) -> None:
        self.h = Harness(GroupLimits(initial_rebalance_delay_ms=delay, new_member_join_timeout_ms=60_000))
        self.clients: list[SimClient] = []
        self.n = 0

    # -- client behaviour

    def deliver(self) -> None:
        for c in self.clients:
            r = c.waiting
            if r is None or r not in self.h.replies:
                continue
            c.waiting = None
            if c.alive:
                self.react(c, self.h.replies[r])

    def react(self, c: SimClient, resp: object) -> None:
        if isinstance(resp, JoinResponse):
            if resp.error == ErrorCode.member_id_required:
                c.member_id = resp.member_id
            elif resp.error == ErrorCode.none:
                c.member_id, c.generation, c.wants_join = resp.member_id, resp.generation, False
                given = assign([m.member_id for m in resp.members]) if resp.leader == c.member_id else {}
                c.waiting = self.h.sync(c.member_id, c.generation, given, c.instance)
                c.requests.append(c.waiting)
                self.deliver()
            elif resp.error == ErrorCode.fenced_instance_id:
                c.alive = False
            else:
                if resp.error == ErrorCode.unknown_member_id:
                    c.member_id = ""
                c.wants_join = True
        elif isinstance(resp, SyncResponse):
            if resp.error == ErrorCode.none:
                c.assignment = resp.assignment
            elif resp.error == ErrorCode.fenced_instance_id:
                c.alive = False
            else:
                if resp.error == ErrorCode.unknown_member_id:
                    c.member_id = ""
                c.wants_join, c.assignment = True, None
        elif isinstance(resp, HeartbeatResponse) and resp.error != ErrorCode.none:
            if resp.error == ErrorCode.fenced_instance_id:
                c.alive = False
                return
            if resp.error == ErrorCode.unknown_member_id:
                c.member_id = ""
            c.wants_join, c.assignment = True, None

    def act(self, c: SimClient) -> None:
        if not c.alive or c.waiting is not None:
            return
        if c.wants_join:
            c.waiting = self.h.join(
                c.member_id, instance=c.instance, client=c.name, new_id=f"{c.name}-{len(c.requests)}"
            )
        else:
            r = self.h.rid()
            self.h.step(
                Heartbeat(r, MemberId(c.member_id), InstanceId(c.instance) if c.instance else None, c.generation)
            )
            c.waiting = r
        c.requests.append(c.waiting)
        self.deliver()

    # -- rules

    @precondition(lambda self: len(self.clients) < 5)
    @rule(static=st.booleans())
    def add_client(self, static: bool) -> None:
        self.n += 1
        c = SimClient(f"c{self.n}", f"inst{self.n}" if static else None)
        self.clients.append(c)
        self.act(c)

    @precondition(lambda self: self.clients)
    @rule(i=st.integers(0, 10))
    def client_acts(self, i: int) -> None:
        self.act(self.clients[i % len(self.clients)])

    @precondition(lambda self: self.clients)
    @rule(i=st.integers(0, 10))
    def crash(self, i: int) -> None:
        self.clients[i % len(self.clients)].alive = False

    @precondition(lambda self: any(c.instance for c in self.clients))
    @rule(i=st.integers(0, 10))
    def restart_static(self, i: int) -> None:
        statics = [c for c in self.clients if c.instance]
        old = statics[i % len(statics)]
        old.alive = False
        self.n += 1
        c = SimClient(f"c{self.n}", old.instance)
        self.clients.append(c)
        self.act(c)

    @precondition(lambda self: self.clients)
    @rule(i=st.integers(0, 10))
    def leave(self, i: int) -> None:
        c = self.clients[i % len(self.clients)]
        if not c.alive or c.waiting is not None or not c.member_id:
            return
        r = self.h.rid()
        self.h.step(Leave(r, ((MemberId(c.member_id), InstanceId(c.instance) if c.instance else None),)))
        assert isinstance(self.h.replies[r], LeaveResponse)
        c.alive = False
        self.deliver()

    @rule(ms=st.sampled_from([0, 1, 999, 3000, SESSION_MS, REBALANCE_MS]))
    def time_passes(self, ms: int) -> None:
        self.h.advance(ms)
        self.deliver()

    @invariant()
    def structure(self) -> None:
        if hasattr(self, "h"):
            check_structure(self.h.g, self.h.outstanding)

    def teardown(self) -> None:
        if not hasattr(self, "h"):
            return
        # The survivors keep going (acting every second) while time runs out for everyone else.
        for _ in range(400):
            for c in list(self.clients):
                self.act(c)
            live = [c for c in self.clients if c.alive]
            settled = (
                self.h.g.phase is Phase.STABLE
                and {c.member_id for c in live} == set(self.h.g.members)
                and all(c.assignment is not None and c.waiting is None for c in live)
            )
            if settled or (not live and self.h.g.phase is Phase.EMPTY and not self.h.g.pending_members):
                break
            self.h.advance(1000)
            self.deliver()
        live = [c for c in self.clients if c.alive]
        assert not self.h.outstanding, "requests never answered"
        if not live:
            assert self.h.g.phase is Phase.EMPTY
            return
        assert self.h.g.phase is Phase.STABLE
        assert {c.member_id for c in live} == set(self.h.g.members)
        parts = [p for c in live for p in (c.assignment or b"").decode().split(",") if p]
        assert sorted(map(int, parts)) == list(range(PARTITIONS)), "each partition assigned exactly once"


TestGroupModel = GroupModel.TestCase
TestGroupModel.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)


@pytest.mark.parametrize("version", [0, 3, 5])
def test_session_timeout_bounds_a_pending_member(version: int) -> None:
    h = Harness()
    r = h.join(version=version, session_ms=SESSION_MS)
    if version >= 4:
        pending = h.join_reply(r).member_id
        h.advance(SESSION_MS)
        assert pending not in h.g.pending_members
    else:
        h.advance(0)
        assert h.join_reply(r).error == ErrorCode.none
    assert not h.outstanding


def test_a_removed_members_waiting_sync_is_answered() -> None:
    h = Harness()
    ids, gen = form_group(h, 2)
    for m in ids:
        h.heartbeat(m, gen)
    parked = {m: h.join(m) for m in ids}
    replies = {m: h.join_reply(r) for m, r in parked.items()}
    follower = next(m for m, r in replies.items() if r.leader != m)
    s = h.sync(follower, gen + 1)
    r = h.rid()
    h.step(Leave(r, ((MemberId(follower), None),)))
    assert h.sync_reply(s).error in (ErrorCode.unknown_member_id, ErrorCode.rebalance_in_progress)
    assert NO_MEMBER_ID == ""


@pytest.mark.parametrize(("members", "accepted"), [(1, True), (2, False), (3, False)])
def test_group_size_limit(members: int, accepted: bool) -> None:
    """group.max.size: at the limit a new member is refused; existing members may always rejoin."""
    h = Harness(GroupLimits(members_max=2))
    ids, gen = form_group(h, min(members, 2))
    r = h.join(version=3, client="extra")
    resp = h.join_reply(r) if r in h.replies else None
    if accepted:
        assert resp is None or resp.error == ErrorCode.none
    else:
        assert resp is not None and resp.error == ErrorCode.group_max_size_reached
        assert set(h.g.members) == set(ids)
        assert h.heartbeat(ids[0], gen) == ErrorCode.none
