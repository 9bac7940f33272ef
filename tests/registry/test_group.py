"""The registry's group membership: Confluent's JSON documents, and the state machine driven by hand with a fake
clock (no broker, no sleeps)."""

from __future__ import annotations

import json

import pytest

from loosely.protocol.errors import ErrorCode
from loosely.registry._group import (
    CoordinatorFound,
    HeartbeatAnswer,
    Identity,
    JoinAnswer,
    MemberState,
    Phase,
    SyncAnswer,
    Timing,
    Trouble,
    assign,
    decode_assignment,
    decode_identity,
    step,
)

T = Timing(heartbeat_interval_ms=1_000, retry_backoff_ms=200)
ME = Identity("a", 1)
OTHER = Identity("b", 2)


def stable(now: int = 0) -> MemberState:
    """A member that found the coordinator, was told its id, joined as the group's leader and synced."""
    s, _ = step(MemberState(ME), CoordinatorFound(), now, T)
    assert (s.phase, s.due_ms) == (Phase.JOINING, now)
    s, _ = step(s, JoinAnswer(ErrorCode.member_id_required, "m1", -1, "", ()), now, T)  # KIP-394
    assert (s.phase, s.member_id) == (Phase.JOINING, "m1")
    members = (("m1", ME.encode()), ("m2", OTHER.encode()))
    s, _ = step(s, JoinAnswer(0, "m1", 7, "m1", members), now, T)
    assert s.phase is Phase.SYNCING and dict(s.assignments) == assign(members)
    s, why = step(s, SyncAnswer(0, s.assignments[0][1]), now + 3, T)
    assert (s.phase, s.generation, s.due_ms, s.terms, why) == (Phase.STABLE, 7, now + 1_003, 1, "")
    return s


def test_join_sync_and_heartbeats() -> None:
    s = stable()
    assert s.leadership.is_leader and s.leadership.leader == ME and s.leadership.term == 1
    s, _ = step(s, HeartbeatAnswer(0), 1_010, T)
    assert (s.phase, s.due_ms, s.leadership.is_leader) == (Phase.STABLE, 2_010, True)


def test_a_follower_syncs_without_assigning_and_learns_the_leader() -> None:
    s, _ = step(MemberState(OTHER), CoordinatorFound(), 0, T)
    s, _ = step(s, JoinAnswer(0, "m2", 3, "m1", ()), 0, T)
    assert s.assignments == ()
    told = assign([("m1", ME.encode()), ("m2", OTHER.encode())])["m2"]
    s, _ = step(s, SyncAnswer(0, told), 0, T)
    assert not s.leadership.is_leader and s.leadership.leader_url == "http://a:1"


def test_a_rebalance_drops_the_leader_until_the_next_sync() -> None:
    s, why = step(stable(), HeartbeatAnswer(ErrorCode.rebalance_in_progress), 1_000, T)
    assert (s.phase, s.member_id, s.due_ms, s.rebalances) == (Phase.JOINING, "m1", 1_000, 1)
    assert s.leadership.leader is None and s.leadership.term == 1 and "rebalance_in_progress" in why
    s, _ = step(stable(), HeartbeatAnswer(ErrorCode.unknown_member_id), 1_000, T)
    assert (s.phase, s.member_id) == (Phase.JOINING, "")  # forgotten: join as a new member


def test_trouble_and_a_moved_coordinator_go_back_to_finding_after_a_backoff() -> None:
    s, why = step(stable(), Trouble("connection reset"), 5_000, T)
    assert (s.phase, s.due_ms, s.troubles) == (Phase.FINDING, 5_200, 1) and s.leadership.leader is None
    assert why == "coordinator: connection reset"
    s, why = step(stable(), HeartbeatAnswer(ErrorCode.not_coordinator), 5_000, T)
    assert s.phase is Phase.FINDING and why == "Heartbeat: not_coordinator"
    s, why = step(stable(), SyncAnswer(ErrorCode.group_authorization_failed, b""), 5_000, T)
    assert s.phase is Phase.FINDING and why == "SyncGroup refused: group_authorization_failed"


def test_duplicate_urls_and_no_eligible_member_mean_no_leader() -> None:
    s, _ = step(MemberState(ME), CoordinatorFound(), 0, T)
    twins = (("m1", ME.encode()), ("m2", ME.encode()))
    s, _ = step(s, JoinAnswer(0, "m1", 1, "m1", twins), 0, T)
    s, why = step(s, SyncAnswer(0, s.assignments[0][1]), 0, T)
    assert s.leadership.leader is None and s.leadership.term == 1 and "same url" in why
    shy = Identity("a", 1, eligible=False)
    s, _ = step(MemberState(shy), CoordinatorFound(), 0, T)
    s, _ = step(s, JoinAnswer(0, "m1", 1, "m1", (("m1", shy.encode()),)), 0, T)
    s, why = step(s, SyncAnswer(0, s.assignments[0][1]), 0, T)
    assert s.leadership.leader is None and "no member may lead" in why


# ---- the JSON documents, as Confluent and Karapace write them ---------------------------------------------------


def test_identity_is_confluents_member_metadata() -> None:
    doc = json.loads(Identity("10.0.0.5", 8081, "http", eligible=False).encode())
    assert doc == {"version": 1, "host": "10.0.0.5", "port": 8081, "master_eligibility": False, "scheme": "http"}
    karapace = {"version": 2, "karapace_version": "4.1", "host": "k", "port": 8081, "scheme": "https",
                "master_eligibility": True}  # what Karapace's members send: read as the same identity
    assert decode_identity(json.dumps(karapace).encode()) == Identity("k", 8081, "https", eligible=True)
    with pytest.raises(ValueError, match="not a schema registry identity"):
        decode_identity(b'{"host": "x"}')


def test_the_lowest_eligible_url_leads_and_everyone_is_told() -> None:
    members = [("m1", Identity("b", 1).encode()), ("m2", Identity("a", 2).encode()),
               ("m3", Identity("0", 3, eligible=False).encode()), ("m4", b"not json")]
    out = assign(members)
    assert set(out) == {"m1", "m2", "m3", "m4"} and len(set(out.values())) == 1
    doc = json.loads(out["m1"])
    assert doc == {"version": 1, "error": 0, "master": "m2", "master_identity": json.loads(members[1][1])}
    assert decode_assignment(out["m4"]).leader == Identity("a", 2)


def test_no_eligible_member_and_duplicate_urls() -> None:
    doc = json.loads(assign([("m1", Identity("a", 1, eligible=False).encode())])["m1"])
    assert doc == {"version": 1, "error": 0}  # Confluent leaves out the empty leader fields
    assert decode_assignment(json.dumps(doc).encode()).leader is None
    twins = assign([("m1", Identity("a", 1).encode()), ("m2", Identity("a", 1).encode())])
    assert decode_assignment(twins["m2"]).error == 1  # DUPLICATE_URLS


def test_a_refusal_retrying_will_not_cure_is_kept_until_a_sync() -> None:
    s, _ = step(MemberState(ME), CoordinatorFound(), 0, T)
    s, why = step(s, JoinAnswer(ErrorCode.invalid_session_timeout, "", -1, "", ()), 0, T)
    assert s.phase is Phase.FINDING and s.refused == why == "JoinGroup refused: invalid_session_timeout"
    assert stable().refused == ""
