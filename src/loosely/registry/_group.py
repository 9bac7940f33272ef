"""The registry's group membership as a pure state machine, and the JSON documents Confluent and Karapace exchange.

Theory of operation
-------------------

Every registry process sharing a ``_schemas`` topic joins one classic Kafka group (Confluent's
``schema.registry.group.id``, ``schema-registry`` by default) with protocol type ``"sr"`` and one protocol,
``"v0"``, whose metadata is the member's *identity*, the JSON Confluent's ``SchemaRegistryIdentity`` writes::

    {"version": 1, "host": "10.0.0.5", "port": 8081, "master_eligibility": true, "scheme": "http"}

The broker picks one member as the group's leader (not to be confused with the registry's leader); that member
receives every identity in its JoinGroup answer and computes the *assignment* (:func:`assign`): among the
eligible members, the one with the lowest url (``scheme://host:port``) leads. Two members advertising the same
url is an error (``error: 1``, Confluent's DUPLICATE_URLS): nobody leads until one is given another url. Every
member receives the same assignment in its SyncGroup answer::

    {"version": 1, "error": 0, "master": "<kafka member id>", "master_identity": {...identity...}}

(``master`` and ``master_identity`` are left out when no member is eligible.) A member leads when ``master`` is
its own member id and it is eligible; the others forward writes to ``master_identity``'s url.

**The member's states** (:class:`Phase`), driven by :func:`step` ``(state, event, now_ms) -> (state, why)``; the
phase says which request the shell sends next, ``due_ms`` when::

    FINDING --found--> JOINING --joined--> SYNCING --synced--> STABLE --heartbeat ok--> STABLE
       ^                 |  ^ member id required                  |
       |                 |  +-------- rebalance, unknown member ---+  (no leader until the next sync)
       +---- trouble (connection lost, coordinator moved), from any phase, after a backoff

From the moment a rebalance is seen until the new assignment arrives there is no leader here, as in Confluent
(its ``onRevoked`` forgets the leader): writes are refused rather than risk two writers. ``term`` counts the
elections this member has seen end and only grows (the broker's generation can start again from 1 when a loosely
broker restarts without its group state), so whoever must notice *a new election* compares terms.
"""

from __future__ import annotations

import contextlib
import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from loosely.protocol.errors import ErrorCode

__all__ = [
    "GROUP_ID",
    "NO_LEADER",
    "Assignment",
    "CoordinatorFound",
    "Event",
    "HeartbeatAnswer",
    "Identity",
    "JoinAnswer",
    "Leadership",
    "MemberState",
    "Phase",
    "SyncAnswer",
    "Timing",
    "Trouble",
    "assign",
    "decode_assignment",
    "decode_identity",
    "step",
]

GROUP_ID: Final = "schema-registry"  # Confluent's schema.registry.group.id default
PROTOCOL_TYPE: Final = "sr"  # Confluent's SchemaRegistryCoordinator.protocolType()
PROTOCOL_NAME: Final = "v0"  # its SR_SUBPROTOCOL_V0 (Karapace names its protocol the same)
IDENTITY_VERSION: Final = 1  # SchemaRegistryIdentity.CURRENT_VERSION
ASSIGNMENT_VERSION: Final = 1  # SchemaRegistryProtocol.Assignment.CURRENT_VERSION
NO_ERROR: Final = 0
DUPLICATE_URLS: Final = 1


@dataclass(frozen=True, slots=True)
class Identity:
    """What a member advertises: the url others forward writes to, and whether it may lead."""

    host: str
    port: int
    scheme: str = "http"
    eligible: bool = True

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def as_json(self) -> dict[str, Any]:
        return {"version": IDENTITY_VERSION, "host": self.host, "port": self.port,
                "master_eligibility": self.eligible, "scheme": self.scheme}

    def encode(self) -> bytes:
        return json.dumps(self.as_json(), separators=(",", ":")).encode()


def decode_identity(data: bytes | dict[str, Any]) -> Identity:
    """An identity from Confluent's or Karapace's member metadata (ValueError when it is not one)."""
    try:
        doc = json.loads(data) if isinstance(data, bytes) else data
        return Identity(str(doc["host"]), int(doc["port"]), str(doc.get("scheme") or "http"),
                        bool(doc.get("master_eligibility", True)))
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"not a schema registry identity: {data!r:.200}") from e


@dataclass(frozen=True, slots=True)
class Assignment:
    error: int
    leader_member: str | None
    leader: Identity | None


def assign(members: Sequence[tuple[str, bytes]]) -> dict[str, bytes]:
    """The group leader's SyncGroup assignments for ``(member id, metadata)`` pairs: Confluent's rule.

    >>> a = Identity("b", 1).encode(); b = Identity("a", 2).encode(); c = Identity("0", 3, eligible=False).encode()
    >>> out = assign([("m1", a), ("m2", b), ("m3", c)])
    >>> decode_assignment(out["m3"]).leader_member
    'm2'
    """
    identities: dict[str, Identity] = {}
    for member_id, metadata in members:
        with contextlib.suppress(ValueError):  # a member we cannot read never leads
            identities[member_id] = decode_identity(metadata)
    eligible = sorted((i.url, m) for m, i in identities.items() if i.eligible)
    error = DUPLICATE_URLS if len({i.url for i in identities.values()}) != len(identities) else NO_ERROR
    doc: dict[str, Any] = {"version": ASSIGNMENT_VERSION, "error": error}
    if eligible:
        chosen = eligible[0][1]
        doc["master"] = chosen
        doc["master_identity"] = identities[chosen].as_json()
    data = json.dumps(doc, separators=(",", ":")).encode()
    return {member_id: data for member_id, _ in members}


def decode_assignment(data: bytes) -> Assignment:
    try:
        doc = json.loads(data)
        identity = doc.get("master_identity")
        return Assignment(int(doc.get("error", NO_ERROR)), doc.get("master"),
                          None if identity is None else decode_identity(identity))
    except (ValueError, TypeError, AttributeError) as e:
        raise ValueError(f"not a schema registry assignment: {data!r:.200}") from e


# ---- the member ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leadership:
    """A member's view of the election: ``generation`` (the group's) -1 while it is not joined; ``term`` the
    number of elections it has seen end."""

    generation: int
    leader: Identity | None
    is_leader: bool
    term: int = 0

    @property
    def leader_url(self) -> str | None:
        return None if self.leader is None else self.leader.url


NO_LEADER: Final = Leadership(-1, None, is_leader=False, term=-1)


class Phase(enum.Enum):
    FINDING = "finding the coordinator"
    JOINING = "joining"
    SYNCING = "syncing"
    STABLE = "stable"


@dataclass(frozen=True, slots=True)
class Timing:
    heartbeat_interval_ms: int
    retry_backoff_ms: int


@dataclass(frozen=True, slots=True)
class MemberState:
    identity: Identity
    phase: Phase = Phase.FINDING
    member_id: str = ""
    generation: int = -1
    leadership: Leadership = NO_LEADER
    assignments: tuple[tuple[str, bytes], ...] = ()  # what this member, when the group's leader, syncs
    due_ms: int = 0  # when the phase's request is to be sent
    terms: int = 0
    rebalances: int = 0
    troubles: int = 0
    refused: str = ""  # the last refusal that retrying will not cure (a setting, an ACL): start() reports it

    def no_leader(self) -> Leadership:
        return Leadership(-1, None, is_leader=False, term=self.terms)


@dataclass(frozen=True, slots=True)
class CoordinatorFound:
    pass


@dataclass(frozen=True, slots=True)
class JoinAnswer:
    error: int
    member_id: str
    generation: int
    leader: str
    members: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class SyncAnswer:
    error: int
    assignment: bytes


@dataclass(frozen=True, slots=True)
class HeartbeatAnswer:
    error: int


@dataclass(frozen=True, slots=True)
class Trouble:
    """The coordinator cannot be asked: unreachable, the connection lost, an answer we cannot read."""

    reason: str


Event = CoordinatorFound | JoinAnswer | SyncAnswer | HeartbeatAnswer | Trouble

_REQUEST: Final[dict[type, str]] = {JoinAnswer: "JoinGroup", SyncAnswer: "SyncGroup", HeartbeatAnswer: "Heartbeat"}
_REJOIN: Final = frozenset({ErrorCode.rebalance_in_progress, ErrorCode.illegal_generation,
                            ErrorCode.member_id_required})
_FORGOTTEN: Final = frozenset({ErrorCode.unknown_member_id, ErrorCode.fenced_instance_id})
_MOVED: Final = frozenset({ErrorCode.not_coordinator, ErrorCode.coordinator_not_available,
                           ErrorCode.coordinator_load_in_progress})
_STUCK: Final = frozenset({ErrorCode.invalid_session_timeout, ErrorCode.group_authorization_failed,
                           ErrorCode.inconsistent_group_protocol, ErrorCode.group_max_size_reached})


def _error_name(code: int) -> str:
    return ErrorCode(code).name if code in ErrorCode._value2member_map_ else str(code)


def step(state: MemberState, event: Event, now_ms: int, timing: Timing) -> tuple[MemberState, str]:
    """The member after ``event``, and why its leadership changed ("" when the event says nothing worth a line).

    >>> t = Timing(heartbeat_interval_ms=1000, retry_backoff_ms=200)
    >>> s, _ = step(MemberState(Identity("h", 1)), CoordinatorFound(), 0, t)
    >>> s, _ = step(s, JoinAnswer(0, "m1", 1, "m1", (("m1", Identity("h", 1).encode()),)), 5, t)
    >>> s, _ = step(s, SyncAnswer(0, s.assignments[0][1]), 6, t)
    >>> s.phase, s.leadership.is_leader, s.due_ms
    (<Phase.STABLE: 'stable'>, True, 1006)
    """
    if isinstance(event, Trouble):
        return replace(state, phase=Phase.FINDING, leadership=state.no_leader(), troubles=state.troubles + 1,
                       due_ms=now_ms + timing.retry_backoff_ms), f"coordinator: {event.reason}"
    if isinstance(event, CoordinatorFound):
        return replace(state, phase=Phase.JOINING, due_ms=now_ms), ""
    code = event.error
    if isinstance(event, JoinAnswer) and code == ErrorCode.member_id_required:  # KIP-394: again, with this id
        return replace(state, member_id=event.member_id, due_ms=now_ms), ""
    if code != ErrorCode.none:
        return _refused(state, code, _REQUEST[type(event)], now_ms, timing)
    if isinstance(event, JoinAnswer):
        assignments = tuple(assign(event.members).items()) if event.leader == event.member_id else ()
        return replace(state, phase=Phase.SYNCING, member_id=event.member_id, generation=event.generation,
                       assignments=assignments, due_ms=now_ms), ""
    if isinstance(event, SyncAnswer):
        got = decode_assignment(event.assignment)  # ValueError: the shell reports it as Trouble
        terms = state.terms + 1
        due = now_ms + timing.heartbeat_interval_ms
        state = replace(state, refused="")
        if got.error == DUPLICATE_URLS:
            return replace(state, phase=Phase.STABLE, terms=terms, due_ms=due, assignments=(),
                           leadership=Leadership(state.generation, None, is_leader=False, term=terms)), \
                "several members advertise the same url; give each one the others can reach (--advertise)"
        leads = got.leader_member == state.member_id and state.identity.eligible
        return replace(state, phase=Phase.STABLE, terms=terms, due_ms=due, assignments=(),
                       leadership=Leadership(state.generation, got.leader, is_leader=leads, term=terms)), \
            "" if got.leader is not None else "no member may lead; reads are served, writes are refused"
    return replace(state, due_ms=now_ms + timing.heartbeat_interval_ms), ""


def _refused(state: MemberState, code: int, what: str, now_ms: int, timing: Timing) -> tuple[MemberState, str]:
    if code in _REJOIN or code in _FORGOTTEN:
        member_id = "" if code in _FORGOTTEN else state.member_id
        return replace(state, phase=Phase.JOINING, member_id=member_id, leadership=state.no_leader(),
                       rebalances=state.rebalances + 1, due_ms=now_ms), f"{what}: a new election ({_error_name(code)})"
    # the coordinator moved, or a refusal that retrying will not cure (a session timeout out of the broker's
    # bounds, authorization): find the coordinator again after a backoff, so the registry keeps serving reads and
    # recovers once it is fixed
    why = f"{what}: {_error_name(code)}" if code in _MOVED else f"{what} refused: {_error_name(code)}"
    return replace(state, phase=Phase.FINDING, leadership=state.no_leader(), troubles=state.troubles + 1,
                   due_ms=now_ms + timing.retry_backoff_ms, refused=why if code in _STUCK else ""), why
