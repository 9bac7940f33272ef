"""Client quotas: what Kafka's ``kafka-configs --entity-type users|clients|ips`` stores, and byte-rate throttling.

Theory of operation
-------------------
**Entities and precedence.** A quota belongs to an entity: a user, a client id, both, or ``<default>`` in either
place (an entity name of None on the wire), or an IP address. For a request by ``user`` with ``client_id`` the
first entity that has the quota key applies, in Kafka's order (docs "Quotas")::

    user + client-id,  user + default client-id,  user,  default user + client-id,
    default user + default client-id,  default user,  client-id,  default client-id

**Rates.** Each applied entity has one rate per direction (bytes produced, bytes fetched), shared by every
connection that resolves to it, measured as Kafka's ``SampledStat`` measures it: ``quota.window.num`` samples of
``quota.window.size.seconds``; the rate is the bytes of the live samples over the time they span, where that time
is never counted as less than ``num - 1`` whole windows (so a new client may burst that many windows' worth first).

**Throttling** (KIP-219). When recording a request's bytes puts the rate over the quota, the request is answered at
once, with ``throttle_time_ms = (rate - quota) / quota * span``, and the broker reads nothing more from that
connection until the time has passed (the client also waits by itself). Kafka bounds the throttle by the whole
window, and so does loosely. A Fetch that would be throttled is answered empty and its bytes are not counted,
as Kafka does (the client gets them after the pause). ``request_percentage``, ``controller_mutation_rate`` and
``connection_creation_rate`` are stored and described but not enforced (docs/broker.md).

**Durability.** The quotas live in ``<data_dir>/client-quotas.json``, rewritten atomically (temporary file,
fsync, rename) before AlterClientQuotas answers; rates live in memory only.
"""

from __future__ import annotations

import json
import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from loosely.protocol.errors import ErrorCode
from loosely.storage.fs import FileSystem

__all__ = [
    "QUOTAS_FILE",
    "ClientQuotas",
    "Entity",
    "QuotaError",
    "entity_text",
    "quota_user",
]

QUOTAS_FILE: Final = "client-quotas.json"
FORMAT_VERSION: Final = 1

USER: Final = "user"
CLIENT_ID: Final = "client-id"
IP: Final = "ip"
ENTITY_TYPES: Final = (USER, CLIENT_ID, IP)

PRODUCE: Final = "producer_byte_rate"
FETCH: Final = "consumer_byte_rate"
# Kafka's quota keys for user / client-id entities, and the one for IPs; values are doubles, rates per second
CLIENT_KEYS: Final = frozenset({PRODUCE, FETCH, "request_percentage", "controller_mutation_rate"})
IP_KEYS: Final = frozenset({"connection_creation_rate"})

# An entity: its (type, name) pairs, sorted by type; a name of None is the type's <default>.
Entity = tuple[tuple[str, str | None], ...]


class QuotaError(ValueError):
    """An entity or an operation Kafka refuses; ``code`` is the error to answer with."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def quota_user(principal: str) -> str:
    """The user a quota names for a principal: ``User:alice`` -> ``alice`` (Kafka's KafkaPrincipal name).

    >>> quota_user("User:ANONYMOUS")
    'ANONYMOUS'
    """
    return principal.partition(":")[2] or principal


def entity_text(entity: Entity) -> str:
    """``user=alice,client-id=<default>`` for messages.

    >>> entity_text(((CLIENT_ID, None), (USER, "alice")))
    'client-id=<default>,user=alice'
    """
    return ",".join(f"{t}={'<default>' if n is None else n}" for t, n in entity)


def check_entity(pairs: Iterable[tuple[str, str | None]]) -> Entity:
    """The entity as stored (sorted), or :class:`QuotaError` for what Kafka refuses."""
    seen: dict[str, str | None] = {}
    for entity_type, name in pairs:
        if entity_type not in ENTITY_TYPES:
            raise QuotaError(ErrorCode.invalid_request, f"Unhandled client quota entity type: {entity_type}")
        if entity_type in seen:
            raise QuotaError(ErrorCode.invalid_request, f"Duplicate {entity_type} entity")
        if name == "":
            raise QuotaError(ErrorCode.invalid_request, f"Empty {entity_type} not supported")
        seen[entity_type] = name
    if not seen:
        raise QuotaError(ErrorCode.invalid_request, "Invalid empty client quota entity")
    if IP in seen and len(seen) > 1:
        raise QuotaError(ErrorCode.invalid_request, "Invalid quota entity combination")
    return tuple(sorted(seen.items()))


def _keys_for(entity: Entity) -> frozenset[str]:
    return IP_KEYS if entity[0][0] == IP else CLIENT_KEYS


def _precedence(user: str, client_id: str) -> tuple[Entity, ...]:
    u, c = (USER, user), (CLIENT_ID, client_id)
    du, dc = (USER, None), (CLIENT_ID, None)
    return ((c, u), (dc, u), (u,), (c, du), (dc, du), (du,), (c,), (dc,))


@dataclass(slots=True)
class _Rate:
    """Bytes in ``samples`` windows of ``window_ms``: Kafka's SampledStat Rate."""

    window_ms: int
    samples: int
    windows: deque[list[int]] = field(default_factory=deque)  # [start_ms, bytes], oldest first

    def record(self, nbytes: int, now_ms: int) -> None:
        self._expire(now_ms)
        if not self.windows or now_ms - self.windows[-1][0] >= self.window_ms:
            self.windows.append([now_ms, 0])
        self.windows[-1][1] += nbytes

    def _expire(self, now_ms: int) -> None:
        while self.windows and now_ms - self.windows[0][0] >= self.window_ms * self.samples:
            self.windows.popleft()

    def span_ms(self, now_ms: int) -> int:
        elapsed = now_ms - self.windows[0][0] if self.windows else 0
        return max(elapsed, (self.samples - 1) * self.window_ms)

    def per_second(self, now_ms: int) -> float:
        self._expire(now_ms)
        return sum(b for _, b in self.windows) * 1000 / self.span_ms(now_ms)


class ClientQuotas:
    """The quotas of one broker and the rates they are checked against (one event-loop thread)."""

    def __init__(self, fs: FileSystem, data_dir: str, clock: Callable[[], int], *, window_num: int = 11,
                 window_ms: int = 1000) -> None:
        self._fs = fs
        self.path = os.path.join(data_dir, QUOTAS_FILE)
        self._clock = clock  # monotonic milliseconds
        self.window_num = window_num
        self.window_ms = window_ms
        self._quotas: dict[Entity, dict[str, float]] = {}
        self._rates: dict[tuple[str, Entity], _Rate] = {}
        if fs.exists(self.path):
            try:
                self._quotas = _decode(fs.read_file(self.path))
            except (ValueError, TypeError, KeyError) as e:
                raise ValueError(f"{self.path} is damaged ({e}); fix or remove it") from None

    # -- what kafka-configs reads and writes --

    def describe(
        self, components: Iterable[tuple[str, int, str | None]], strict: bool
    ) -> list[tuple[Entity, dict[str, float]]]:
        """Entities matching every component ``(entity type, match type, name)``; match 0: exactly ``name``, 1: the
        default, 2: any. ``strict``: entities with no other types than the components name."""
        wanted: dict[str, tuple[int, str | None]] = {}
        for entity_type, match, name in components:
            if entity_type not in ENTITY_TYPES:
                raise QuotaError(ErrorCode.invalid_request, f"Custom entity type '{entity_type}' not supported")
            if entity_type in wanted:
                raise QuotaError(ErrorCode.invalid_request, f"Duplicate {entity_type} filter component entity type")
            if match not in (0, 1, 2):
                raise QuotaError(ErrorCode.invalid_request, f"Unknown match type {match}")
            wanted[entity_type] = (match, name)
        out = []
        for entity, quotas in sorted(self._quotas.items(), key=lambda kv: entity_text(kv[0])):
            names = dict(entity)
            if strict and set(names) != set(wanted):
                continue
            if all(t in names and (m == 2 or (m == 1 and names[t] is None) or (m == 0 and names[t] == n))
                   for t, (m, n) in wanted.items()):
                out.append((entity, dict(quotas)))
        return out

    def alter(
        self, entries: list[tuple[Entity, list[tuple[str, float, bool]]]], *, validate_only: bool
    ) -> list[QuotaError | None]:
        """Apply each entry's ops (key, value, remove); one result per entry. Valid entries are made durable
        together (an OSError from the disk propagates and nothing changes)."""
        quotas = {e: dict(q) for e, q in self._quotas.items()}
        results: list[QuotaError | None] = []
        for entity, ops in entries:
            try:
                changed = dict(quotas.get(entity, {}))
                keys = _keys_for(entity)
                seen: set[str] = set()
                for key, value, remove in ops:
                    if key not in keys:
                        raise QuotaError(ErrorCode.invalid_request, f"Invalid configuration key {key}")
                    if key in seen:
                        raise QuotaError(ErrorCode.invalid_request, f"Duplicate quota key {key}")
                    seen.add(key)
                    if remove:
                        changed.pop(key, None)
                    elif not math.isfinite(value) or value <= 0:
                        raise QuotaError(ErrorCode.invalid_request, f"Invalid value {value} for quota key {key}")
                    else:
                        changed[key] = float(value)
            except QuotaError as e:
                results.append(e)
                continue
            results.append(None)
            if changed:
                quotas[entity] = changed
            else:
                quotas.pop(entity, None)
        if not validate_only and quotas != self._quotas:
            data = _encode(quotas)
            assert _decode(data) == quotas  # what is about to be durable reads back as what we mean
            self._fs.write_atomic(self.path, data)
            self._quotas = quotas
            self._rates.clear()  # a changed quota starts measuring afresh, as a new Kafka sensor does
        return results

    # -- enforcement --

    def applied(self, key: str, user: str, client_id: str) -> tuple[Entity, float] | None:
        """The entity whose quota ``key`` applies to this client, and the quota (None: unlimited)."""
        if not self._quotas:
            return None
        for entity in _precedence(user, client_id):
            value = self._quotas.get(entity, {}).get(key)
            if value is not None:
                return entity, value
        return None

    def throttle_ms(self, key: str, user: str, client_id: str, nbytes: int, *, record_if_throttled: bool = True) -> int:
        """Record ``nbytes`` against the client's quota for ``key``; the time to throttle it for (0: none).

        ``record_if_throttled=False`` (Fetch) takes the bytes back out when the answer is a throttle, since the
        response will be sent empty.
        """
        found = self.applied(key, user, client_id)
        if found is None:
            return 0
        entity, quota = found
        now = self._clock()
        rate = self._rates.get((key, entity))
        if rate is None:
            rate = self._rates[(key, entity)] = _Rate(self.window_ms, self.window_num)
        rate.record(nbytes, now)
        observed = rate.per_second(now)
        if observed <= quota:
            return 0
        if not record_if_throttled:
            rate.record(-nbytes, now)
        throttle = (observed - quota) / quota * rate.span_ms(now)
        return min(int(throttle), self.window_ms * self.window_num)


def _encode(quotas: Mapping[Entity, Mapping[str, float]]) -> bytes:
    doc = {"version": FORMAT_VERSION,
           "quotas": [{"entity": [[t, n] for t, n in e], "values": dict(sorted(q.items()))}
                      for e, q in sorted(quotas.items(), key=lambda kv: entity_text(kv[0]))]}
    return json.dumps(doc, indent=1).encode()


def _decode(data: bytes) -> dict[Entity, dict[str, float]]:
    doc = json.loads(data)
    if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION or not isinstance(doc.get("quotas"), list):
        raise ValueError(f"expected {{'version': {FORMAT_VERSION}, 'quotas': [...]}}")
    out: dict[Entity, dict[str, float]] = {}
    for item in doc["quotas"]:
        entity = check_entity((str(t), None if n is None else str(n)) for t, n in item["entity"])
        values = {str(k): float(v) for k, v in item["values"].items()}
        if not values or not set(values) <= _keys_for(entity):
            raise ValueError(f"bad quota keys for {entity_text(entity)}")
        out[entity] = values
    return out
