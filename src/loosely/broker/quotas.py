"""Client quotas: what Kafka's ``kafka-configs --entity-type users|clients|ips`` stores, and their enforcement.

Theory of operation
-------------------
**Entities and precedence.** A quota belongs to an entity: a user, a client id, both, or ``<default>`` in either
place (an entity name of None on the wire), or an IP address (or its ``<default>``). For a request by ``user`` with
``client_id`` the first entity that has the quota key applies, in Kafka's order (docs "Quotas")::

    user + client-id,  user + default client-id,  user,  default user + client-id,
    default user + default client-id,  default user,  client-id,  default client-id

A connection from an IP is checked against that IP's ``connection_creation_rate``, else the default IP's.

**What is measured**, each against its own quota and per client the way Kafka's metric tags split them (an entity
names the user and client id it matched with, so a ``<default>`` quota is every client's own, as in Kafka):

* ``producer_byte_rate`` / ``consumer_byte_rate``: bytes per second of Produce / Fetch records;
* ``request_percentage``: the time spent handling the client's requests, as a percentage of one thread (Kafka's
  ``request-time``: a request that took 5 ms of handling counts 0.5), not counting waits in a long poll or a
  rebalance (Kafka's purgatory);
* ``connection_creation_rate``: connections accepted per second from the IP (and the broker settings
  ``max.connection.creation.rate`` and ``listener.name.<l>.max.connection.creation.rate``: from anywhere);
* ``controller_mutation_rate``: partitions created (CreateTopics, CreatePartitions) or deleted (DeleteTopics).

The first four are Kafka's ``SampledStat`` rates: ``quota.window.num`` samples of ``quota.window.size.seconds``;
the rate is the amount in the live samples over the time they span, where a span of fewer than ``num - 1`` whole
windows is lengthened by the missing whole windows (so a new client may burst about that many windows' worth first).
Mutations use Kafka's token bucket (KIP-599): it holds ``controller.quota.window.num * .size.seconds * rate``
tokens, starts full, refills at the rate, and one mutation takes one token; it may go negative once.

**Throttling** (KIP-219). When recording puts a rate over its quota, the request is answered at once with
``throttle_time_ms = (rate - quota) / quota * span`` and the broker reads nothing more from that connection until
the time has passed (the client also waits by itself). Kafka bounds byte-rate throttles by the whole window, and
request-time and connection throttles by one ``quota.window.size.seconds``; so does loosely. A Fetch that would be
throttled is answered empty and its bytes are not counted, as Kafka does. A new connection over the broker's or its
listener's rate waits that long before it is taken up; then one over its IP's rate is not read from and is closed
when its throttle time is over (Kafka's delayed close), and is not counted in any of these rates.

Mutations (:class:`MutationQuota`, one per request): with a *strict* quota (CreateTopics v6+, DeleteTopics v5+,
CreatePartitions v3+) a topic whose turn comes while the bucket is negative is refused with THROTTLING_QUOTA_EXCEEDED
and the response carries ``-tokens / rate`` seconds of throttle; a topic that finds the bucket non-negative takes its
partitions even if that leaves the bucket negative, and is not throttled. Older versions get a *permissive* quota:
every mutation is done, and the response is throttled once the bucket is negative.

**Durability.** The quotas live in ``<data_dir>/client-quotas.json``, rewritten atomically (temporary file,
fsync, rename) before AlterClientQuotas answers; rates live in memory only.
"""

from __future__ import annotations

import ipaddress
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
    "MutationQuota",
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
REQUEST: Final = "request_percentage"
MUTATION: Final = "controller_mutation_rate"
CONNECTION: Final = "connection_creation_rate"
# Kafka's quota keys for user / client-id entities, and the one for IPs, with their Kafka config types (QuotaConfig):
# on the wire every value is a double; an integral type refuses fractions and values beyond its range.
_LONG_MAX: Final = 2**63 - 1
_INT_MAX: Final = 2**31 - 1
CLIENT_KEYS: Final = {PRODUCE: ("a LONG", _LONG_MAX), FETCH: ("a LONG", _LONG_MAX), REQUEST: None, MUTATION: None}
IP_KEYS: Final = {CONNECTION: ("an INT", _INT_MAX)}

_BROKER_CONNECTIONS: Final[tuple[str, Entity]] = ("max.connection.creation.rate", ())  # the broker-wide rate
RATES_MAX: Final = 10_000  # measured clients kept before idle ones are dropped

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
    """The entity as stored (sorted), or :class:`QuotaError` for what Kafka refuses (its messages)."""
    seen: dict[str, str | None] = {}
    for entity_type, name in pairs:
        if entity_type in seen:
            raise QuotaError(ErrorCode.invalid_request,
                             f"Invalid client quota entity, duplicate entity entry {entity_type}")
        if entity_type not in ENTITY_TYPES:
            raise QuotaError(ErrorCode.invalid_request, f"Unhandled client quota entity type: {entity_type}")
        if name == "":
            raise QuotaError(ErrorCode.invalid_request, f"Empty {entity_type} not supported")
        seen[entity_type] = name
    if not seen:
        raise QuotaError(ErrorCode.invalid_request, "Invalid empty client quota entity")
    if IP in seen and len(seen) > 1:
        # Kafka's wording, its missing space included
        raise QuotaError(ErrorCode.invalid_request,
                         "Invalid quota entity combination, IP entity shouldnot be combined with User or ClientId")
    return tuple(sorted(seen.items()))


def host_names(entities: Iterable[Entity]) -> set[str]:
    """The names of IP entities that are host names, not addresses."""
    return {n for (t, n), *_ in entities if t == IP and n is not None and ip_entity_name(n) is None}


def ip_entity_name(name: str) -> str | None:
    """An IP entity's name as an address (``::ffff:10.0.0.1`` -> ``10.0.0.1``); None when it is not an IP literal
    (a host name, which Kafka resolves; the handler checks it resolves)."""
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _keys_for(entity: Entity) -> Mapping[str, tuple[str, int] | None]:
    return IP_KEYS if entity[0][0] == IP else CLIENT_KEYS


def _check_value(key: str, value: float, integral: tuple[str, int] | None) -> None:
    """Kafka's ClientQuotaControlManager.validateQuotaKeyValue."""
    if not math.isfinite(value) or value <= 0:
        raise QuotaError(ErrorCode.invalid_request, f"Quota {key} must be greater than 0")
    if integral is not None:
        kind, largest = integral
        if value > largest:
            raise QuotaError(ErrorCode.invalid_request, f"Proposed value for {key} is too large for {kind}.")
        if abs(math.fmod(value, 1.0)) > 1e-6:
            raise QuotaError(ErrorCode.invalid_request, f"{key} cannot be a fractional value.")


def _precedence(user: str, client_id: str) -> tuple[Entity, ...]:
    u, c = (USER, user), (CLIENT_ID, client_id)
    du, dc = (USER, None), (CLIENT_ID, None)
    return ((c, u), (dc, u), (u,), (c, du), (dc, du), (du,), (c,), (dc,))


@dataclass(slots=True)
class _Rate:
    """An amount in ``samples`` windows of ``window_ms``: Kafka's SampledStat Rate."""

    window_ms: int
    samples: int
    windows: deque[list[float]] = field(default_factory=deque)  # [start_ms, amount], oldest first

    def record(self, amount: float, now_ms: int) -> None:
        self._expire(now_ms)
        if not self.windows or now_ms - self.windows[-1][0] >= self.window_ms:
            self.windows.append([now_ms, 0])
        self.windows[-1][1] += amount

    def _expire(self, now_ms: int) -> None:
        while self.windows and now_ms - self.windows[0][0] >= self.window_ms * self.samples:
            self.windows.popleft()

    def span_ms(self, now_ms: int) -> float:
        """Kafka's Rate.windowSize: the time the live samples span, plus the whole windows it lacks of ``num - 1``."""
        elapsed = now_ms - self.windows[0][0] if self.windows else 0
        missing = self.samples - 1 - int(elapsed // self.window_ms)
        if missing > 0:
            elapsed += missing * self.window_ms
        return max(elapsed, 1)  # one sample, measured at its start: Kafka divides by zero

    def per_second(self, now_ms: int) -> float:
        self._expire(now_ms)
        return sum(b for _, b in self.windows) * 1000 / self.span_ms(now_ms)


@dataclass(slots=True)
class _TokenBucket:
    """Kafka's TokenBucket stat: starts full, refills at ``rate`` per second up to ``burst``, may go negative."""

    tokens: float
    last_ms: int

    def refill(self, rate: float, burst: float, now_ms: int) -> float:
        self.tokens = min(burst, self.tokens + rate * (now_ms - self.last_ms) / 1000)
        self.last_ms = now_ms
        return self.tokens


class MutationQuota:
    """The controller mutation quota of one CreateTopics, DeleteTopics or CreatePartitions request.

    >>> q = MutationQuota(_TokenBucket(2.0, 0), rate=1.0, burst=2.0, strict=True, clock=lambda: 0)
    >>> q.record(10), q.throttle_ms, q.record(1), q.throttle_ms
    (True, 0, False, 8000)
    """

    __slots__ = ("_bucket", "_clock", "burst", "rate", "strict", "throttle_ms")

    def __init__(self, bucket: _TokenBucket | None, *, rate: float, burst: float, strict: bool,
                 clock: Callable[[], int]) -> None:
        self._bucket = bucket  # None: no quota applies
        self._clock = clock
        self.rate = rate
        self.burst = burst
        self.strict = strict
        self.throttle_ms = 0  # what the response carries and the connection is muted for

    def record(self, partitions: int) -> bool:
        """Take ``partitions`` tokens; False (nothing taken) when a strict quota refuses them."""
        if self._bucket is None:
            return True
        now = self._clock()
        tokens = self._bucket.refill(self.rate, self.burst, now)
        if self.strict and tokens < 0:
            self.throttle_ms = round(-tokens / self.rate * 1000)
            return False
        tokens = self._bucket.tokens = min(self.burst, tokens - partitions)
        if not self.strict and tokens < 0:
            self.throttle_ms = round(-tokens / self.rate * 1000)
        return True


class ClientQuotas:
    """The quotas of one broker and the rates they are checked against (one event-loop thread)."""

    def __init__(self, fs: FileSystem, data_dir: str, clock: Callable[[], int], *, window_num: int = 11,
                 window_ms: int = 1000, controller_window_num: int = 11, controller_window_ms: int = 1000,
                 connection_rate_max: int = _INT_MAX, listener_connection_rate_max: Mapping[str, int] | None = None
                 ) -> None:
        self._fs = fs
        self.path = os.path.join(data_dir, QUOTAS_FILE)
        self._clock = clock  # monotonic milliseconds
        self.window_num = window_num
        self.window_ms = window_ms
        self.controller_window_num = controller_window_num
        self.controller_window_ms = controller_window_ms
        self.connection_rate_max = connection_rate_max  # max.connection.creation.rate, the whole broker's
        self.listener_connection_rate_max = dict(listener_connection_rate_max or {})  # by lower-case listener name
        # IP entities named by a host name -> the address it resolved to (the broker looks them up when a quota
        # arrives and at start, as Kafka does when its quota record arrives); unresolved ones limit nothing
        self.resolved_hosts: dict[str, str] = {}
        self._quotas: dict[Entity, dict[str, float]] = {}
        # Measurements, by (quota key, the entity with the client's own names; Kafka's metric tags). Entries of
        # clients long gone are dropped once there are many (Kafka expires idle sensors after an hour).
        self._rates: dict[tuple[str, Entity], _Rate] = {}
        self._buckets: dict[Entity, _TokenBucket] = {}
        if fs.exists(self.path):
            try:
                self._quotas = _decode(fs.read_file(self.path))
            except (ValueError, TypeError, KeyError) as e:
                raise ValueError(f"{self.path} is damaged ({e}); fix or remove it") from None

    # -- what kafka-configs reads and writes --

    @property
    def entities(self) -> list[Entity]:
        return list(self._quotas)

    def describe(
        self, components: Iterable[tuple[str, int, str | None]], strict: bool
    ) -> list[tuple[Entity, dict[str, float]]]:
        """Entities matching every component ``(entity type, match type, name)``; match 0: exactly ``name``, 1: the
        default, 2: any. ``strict``: entities with no other types than the components name."""
        wanted: dict[str, tuple[int, str | None]] = {}
        for entity_type, match, name in components:  # Kafka's checks (ClientQuotasImage.describe), in its order
            if not entity_type:
                raise QuotaError(ErrorCode.invalid_request, "Invalid empty entity type.")
            if entity_type in wanted:
                raise QuotaError(ErrorCode.invalid_request,
                                 f"Entity type {entity_type} cannot appear more than once in the filter.")
            if entity_type not in ENTITY_TYPES:
                raise QuotaError(ErrorCode.unsupported_version, f"Unsupported entity type {entity_type}")
            if match == 0 and name is None:
                raise QuotaError(ErrorCode.invalid_request,
                                 "Request specified MATCH_TYPE_EXACT, but set match string to null.")
            if match in (1, 2) and name is not None:
                kind = "MATCH_TYPE_DEFAULT" if match == 1 else "MATCH_TYPE_SPECIFIED"
                raise QuotaError(ErrorCode.invalid_request,
                                 f"Request specified {kind}, but also specified a match string.")
            if match not in (0, 1, 2):
                raise QuotaError(ErrorCode.invalid_request, f"Unknown match type {match}")
            wanted[entity_type] = (match, name)
        if IP in wanted and len(wanted) > 1:
            raise QuotaError(ErrorCode.invalid_request, "Invalid entity filter component combination. IP filter "
                             "component should not be used with user or clientId filter component.")
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
                    if key in seen:
                        raise QuotaError(ErrorCode.invalid_request, f"Duplicate quota key {key}")
                    seen.add(key)
                    if remove:
                        changed.pop(key, None)
                        continue
                    if key not in keys:
                        raise QuotaError(ErrorCode.invalid_request, f"Invalid configuration key {key}")
                    _check_value(key, value, keys[key])
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
            # Measurements are kept: a changed quota bounds the rate measured so far, as Kafka changes the bound of
            # its existing sensors (a quota at another level measures under another key)
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

    def throttle_ms(self, key: str, user: str, client_id: str, nbytes: float, *, record_if_throttled: bool = True,
                    unrecord: bool = False, bound_ms: int | None = None) -> int:
        """Record ``nbytes`` (or any amount) against the client's quota for ``key``; the time to throttle it for.

        ``record_if_throttled=False`` (Fetch) takes the amount back out when the answer is a throttle, since the
        response will be sent empty; ``unrecord`` takes it back in any case (a Fetch throttled for another
        reason). ``bound_ms``: the longest throttle (default: the whole window).
        """
        found = self.applied(key, user, client_id)
        if found is None:
            return 0
        entity, quota = found
        names = {USER: user, CLIENT_ID: client_id}
        throttle = self._measure((key, tuple((t, names[t]) for t, _ in entity)), quota, nbytes, record_if_throttled,
                                 self.window_ms * self.window_num if bound_ms is None else bound_ms)
        if unrecord and (throttle == 0 or record_if_throttled):
            self._rates[(key, tuple((t, names[t]) for t, _ in entity))].record(-nbytes, self._clock())
        return throttle

    def request_throttle_ms(self, user: str, client_id: str, handling_ns: int) -> int:
        """Record ``handling_ns`` of request handling against ``request_percentage`` (Kafka's request-time: 100 is
        one thread all the time); the throttle, at most one window (ClientRequestQuotaManager)."""
        return self.throttle_ms(REQUEST, user, client_id, handling_ns * 100 / 1e9, bound_ms=self.window_ms)

    def broker_connection_delay_ms(self, listener: str) -> int:
        """Record a new connection on ``listener`` against ``max.connection.creation.rate`` and the listener's own
        rate; how long to wait before taking it up (0: at once), the longer of the two, at most one window (Kafka's
        ConnectionQuotas.waitForConnectionSlot)."""
        delay = 0
        for key, limit in self._connection_limits(listener):
            delay = max(delay, self._measure(key, limit, 1, True, self.window_ms))
        return delay

    def _connection_limits(self, listener: str) -> list[tuple[tuple[str, Entity], int]]:
        limits: list[tuple[tuple[str, Entity], int]] = []
        if self.connection_rate_max < _INT_MAX:
            limits.append((_BROKER_CONNECTIONS, self.connection_rate_max))
        listener_max = self.listener_connection_rate_max.get(listener.lower())
        if listener_max is not None and listener_max < _INT_MAX:
            limits.append(((_BROKER_CONNECTIONS[0], (("listener", listener.lower()),)), listener_max))
        return limits

    def connection_throttle_ms(self, ip: str, listener: str) -> int:
        """Record a new connection from ``ip`` (normalised); how long to hold it before closing it, 0: accept it.
        A throttled connection is not counted, here nor in the broker's and listener's rates (Kafka un-records it)."""
        throttle = self._ip_connection_throttle_ms(ip)
        if throttle > 0:
            for key, _ in self._connection_limits(listener):
                if key in self._rates:
                    self._rates[key].record(-1, self._clock())
        return throttle

    def _ip_connection_throttle_ms(self, ip: str) -> int:
        if not self._quotas:
            return 0
        quota = None
        for entity, values in self._quotas.items():
            if CONNECTION in values and entity[0][0] == IP:
                name = entity[0][1]
                if name is not None and (ip_entity_name(name) or self.resolved_hosts.get(name)) == ip:
                    quota = values[CONNECTION]
                    break
                if name is None and quota is None:
                    quota = values[CONNECTION]
        if quota is None:
            return 0
        return self._measure((CONNECTION, ((IP, ip),)), quota, 1, False, self.window_ms)

    def _measure(self, key: tuple[str, Entity], quota: float, amount: float, record_if_throttled: bool,
                 bound_ms: int) -> int:
        now = self._clock()
        rate = self._rates.get(key)
        if rate is None:
            if len(self._rates) >= RATES_MAX:
                self._forget_idle(now)
            rate = self._rates[key] = _Rate(self.window_ms, self.window_num)
        rate.record(amount, now)
        observed = rate.per_second(now)
        if observed <= quota:
            return 0
        if not record_if_throttled:
            rate.record(-amount, now)
        if quota <= 0:  # max.connection.creation.rate=0: Kafka's formula divides by zero; the bound is what remains
            return bound_ms
        throttle = (observed - quota) / quota * rate.span_ms(now)
        return min(round(throttle), bound_ms)

    def _forget_idle(self, now_ms: int) -> None:
        for k, r in list(self._rates.items()):
            r._expire(now_ms)
            if not r.windows:
                del self._rates[k]

    def mutation_quota(self, user: str, client_id: str, *, strict: bool) -> MutationQuota:
        """The controller_mutation_rate quota for one request of this client (KIP-599)."""
        found = self.applied(MUTATION, user, client_id)
        burst = self.controller_window_num * self.controller_window_ms / 1000
        if found is None:
            return MutationQuota(None, rate=1.0, burst=burst, strict=strict, clock=self._clock)
        entity, rate = found
        names = {USER: user, CLIENT_ID: client_id}
        key = tuple((t, names[t]) for t, _ in entity)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= RATES_MAX:  # a full bucket is what a new one would be
                now = self._clock()
                for k, b in list(self._buckets.items()):
                    if b.refill(rate, burst * rate, now) >= burst * rate:
                        del self._buckets[k]
            bucket = self._buckets[key] = _TokenBucket(burst * rate, self._clock())
        return MutationQuota(bucket, rate=rate, burst=burst * rate, strict=strict, clock=self._clock)


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
        if not values or not set(values) <= set(_keys_for(entity)):
            raise ValueError(f"bad quota keys for {entity_text(entity)}")
        out[entity] = values
    return out
