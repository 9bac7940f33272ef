"""Delegation tokens (KIP-48), as Apache Kafka issues and checks them: the rules, pure, and their durable store.

Theory of operation
-------------------
A delegation token is a shared secret a client gets from the broker over an authenticated connection and hands
to a worker, which then logs in with SCRAM as the token's *owner* without the owner's password. The token is::

    token id  a random UUID string: the SCRAM user name, with the ``tokenauth=true`` extension
    HMAC      HMAC-SHA512(key = delegation.token.secret.key as UTF-8, data = token id as UTF-8)
              base64 of it is the SCRAM password

plus who owns it, who asked for it, who may renew it, and three times: issued, expiry (pushed forward by each
renewal, at most ``delegation.token.expiry.time.ms`` ahead) and max (issued + ``delegation.token.max.lifetime.ms``,
or less when asked; renewals never pass it). The rules are Kafka's DelegationTokenControlManager's: a token is
*expired* once ``now`` is past its expiry or its max; renew and expire name the token by its HMAC and are allowed
to its owner and renewers; renew and (a non-negative) expire of an expired token answer DELEGATION_TOKEN_EXPIRED;
expire with a negative period removes it at once; expired tokens are purged every
``delegation.token.expiry.check.interval.ms``. Describe shows a token to its owner, its requester and its
renewers, and to others by ACL (DESCRIBE on the DelegationToken resource, or DESCRIBE_TOKENS on the owner's User
resource): that part is the broker's (:mod:`loosely.broker.handlers.tokens`), this module only filters by owner.

The SCRAM credential of a token is made from its HMAC the way Kafka makes it: the base64 HMAC as the password, a
random salt, 4096 iterations, for either mechanism. It is derived on the first login and kept in memory; nothing
secret is on disk. A token that has expired but is not purged yet cannot log in (Kafka lets the login finish and
ends the session at once; loosely refuses it, which a client reports more clearly).

File format (``<data_dir>/delegation-tokens.json``, UTF-8 JSON, replaced whole with ``write_atomic`` on every
change, so a crash leaves the old or the new set)::

    {"version": 1, "tokens": [{"token_id": "...", "owner": "User:alice", "requester": "User:alice",
                               "renewers": ["User:bob"], "issue_ms": 1, "max_ms": 2, "expiry_ms": 3}]}

No HMAC is stored (it is recomputed from the secret key, as Kafka recomputes it from its metadata log records), so
changing ``delegation.token.secret.key`` makes every token fail to log in, as in Kafka.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Final, Protocol

from loosely.protocol.errors import ErrorCode
from loosely.security.scram import SCRAM_MECHANISMS, ScramCredential, TokenLogin, credential_from_password

__all__ = [
    "EXPIRY_CHECK_INTERVAL_MS_DEFAULT",
    "EXPIRY_TIME_MS_DEFAULT",
    "MAX_LIFETIME_MS_DEFAULT",
    "TOKENS_FILE",
    "DelegationTokens",
    "TokenInfo",
    "TokenLogin",
    "TokenStoreError",
    "token_hmac",
]

TOKENS_FILE: Final = "delegation-tokens.json"
FORMAT_VERSION: Final = 1
# Kafka's defaults (DelegationTokenManagerConfigs): 7 days, 1 day, 1 hour
MAX_LIFETIME_MS_DEFAULT: Final = 7 * 24 * 3600 * 1000
EXPIRY_TIME_MS_DEFAULT: Final = 24 * 3600 * 1000
EXPIRY_CHECK_INTERVAL_MS_DEFAULT: Final = 3600 * 1000
_LONG_MAX: Final = 2**63 - 1
_TOKENS_MAX: Final = 100_000  # a limit on the file a broker will load (Kafka has none; 100,000 is ~20 MB)


def token_hmac(secret_key: str, token_id: str) -> bytes:
    """Kafka's token HMAC: HmacSHA512 of the token id, keyed with the secret key (both UTF-8).

    >>> len(token_hmac("secret", "token-1"))
    64
    """
    return hmac.new(secret_key.encode(), token_id.encode(), hashlib.sha512).digest()


def _sum(now_ms: int, period_ms: int) -> int:
    return _LONG_MAX if now_ms > _LONG_MAX - period_ms else now_ms + period_ms


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: str
    owner: str  # Kafka principal, "User:alice"
    requester: str
    renewers: tuple[str, ...]
    issue_ms: int
    max_ms: int
    expiry_ms: int

    def expired(self, now_ms: int) -> bool:
        return self.max_ms < now_ms or self.expiry_ms < now_ms

    def may_renew(self, principal: str) -> bool:
        """Owner or renewer: who may renew and expire it (Kafka's allowedToRenew)."""
        return principal == self.owner or principal in self.renewers

    def owner_or_renewer(self, principal: str) -> bool:
        """Owner, requester or renewer: who sees it in Describe without an ACL (Kafka's ownerOrRenewer)."""
        return principal in (self.owner, self.requester) or principal in self.renewers


class TokenStoreError(OSError):
    """The tokens file cannot be read as written by this store (the broker reports it and stops)."""


class Files(Protocol):
    def exists(self, path: str) -> bool: ...

    def read_file(self, path: str) -> bytes: ...

    def write_atomic(self, path: str, data: bytes) -> None: ...


def _encode(tokens: Iterable[TokenInfo]) -> bytes:
    doc = {
        "version": FORMAT_VERSION,
        "tokens": [
            {"token_id": t.token_id, "owner": t.owner, "requester": t.requester, "renewers": list(t.renewers),
             "issue_ms": t.issue_ms, "max_ms": t.max_ms, "expiry_ms": t.expiry_ms}
            for t in sorted(tokens, key=lambda t: t.token_id)
        ],
    }
    return json.dumps(doc, indent=1).encode()


def _decode(data: bytes) -> dict[str, TokenInfo]:
    doc = json.loads(data)
    if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION or not isinstance(doc.get("tokens"), list):
        raise ValueError(f"expected {{'version': {FORMAT_VERSION}, 'tokens': [...]}}")
    if len(doc["tokens"]) > _TOKENS_MAX:
        raise ValueError(f"more than {_TOKENS_MAX} tokens")
    out: dict[str, TokenInfo] = {}
    for t in doc["tokens"]:
        if not isinstance(t, dict):
            raise ValueError("a token is not an object")
        strings = [s for k in ("token_id", "owner", "requester") if isinstance(s := t.get(k), str) and s]
        times = [n for k in ("issue_ms", "max_ms", "expiry_ms") if isinstance(n := t.get(k), int)]
        renewers = t.get("renewers")
        if len(strings) != 3 or len(times) != 3:
            raise ValueError("a token lacks its id, owner, requester or times")
        if not isinstance(renewers, list) or not all(isinstance(r, str) for r in renewers):
            raise ValueError(f"token {strings[0]!r}: renewers must be a list of principals")
        info = TokenInfo(strings[0], strings[1], strings[2], tuple(renewers), times[0], times[1], times[2])
        out[info.token_id] = info
    return out


class DelegationTokens:
    """The broker's tokens: Kafka's rules, one durable file, and the logins they allow.

    ``secret_key`` None: tokens are disabled (every API answers DELEGATION_TOKEN_AUTH_DISABLED, no token logs in);
    the file is still read, so tokens come back when the key does.

    >>> import tempfile
    >>> from loosely.storage.fs import OsFileSystem
    >>> d = tempfile.mkdtemp()
    >>> tokens = DelegationTokens(OsFileSystem(), d, "secret")
    >>> info, mac = tokens.create("User:alice", "User:alice", ("User:bob",), -1, now_ms=1000)
    >>> tokens.renew(mac, "User:bob", -1, now_ms=2000)
    (<ErrorCode.none: 0>, 86402000)
    >>> DelegationTokens(OsFileSystem(), d, "secret").get(info.token_id).expiry_ms
    86402000
    """

    def __init__(
        self,
        fs: Files,
        data_dir: str,
        secret_key: str | None,
        *,
        max_lifetime_ms: int = MAX_LIFETIME_MS_DEFAULT,
        expiry_time_ms: int = EXPIRY_TIME_MS_DEFAULT,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._fs = fs
        self.path = os.path.join(data_dir, TOKENS_FILE)
        self.secret_key = secret_key or None  # Kafka: an empty key is no key
        self.max_lifetime_ms = max_lifetime_ms
        self.expiry_time_ms = expiry_time_ms
        self._new_id = new_id
        self._tokens: dict[str, TokenInfo] = {}
        if fs.exists(self.path):
            try:
                self._tokens = _decode(fs.read_file(self.path))
            except (ValueError, TypeError, UnicodeDecodeError) as e:
                raise TokenStoreError(f"{self.path} is damaged ({e}); restore it from a backup or remove it") from None
        self._by_hmac: dict[bytes, str] = {}
        self._credentials: dict[tuple[str, str], ScramCredential] = {}
        if self.secret_key is not None:
            self._by_hmac = {self.hmac(t): t for t in self._tokens}
        self.created_total = 0
        self.purged_total = 0

    @property
    def enabled(self) -> bool:
        return self.secret_key is not None

    def hmac(self, token_id: str) -> bytes:
        assert self.secret_key is not None
        return token_hmac(self.secret_key, token_id)

    def get(self, token_id: str) -> TokenInfo | None:
        return self._tokens.get(token_id)

    def tokens(self) -> list[TokenInfo]:
        return sorted(self._tokens.values(), key=lambda t: (t.issue_ms, t.token_id))

    def __len__(self) -> int:
        return len(self._tokens)

    # --- the APIs' decisions (the caller has checked the connection and the ACLs) ---------------------------

    def create(
        self, owner: str, requester: str, renewers: tuple[str, ...], max_lifetime_ms: int, now_ms: int
    ) -> tuple[TokenInfo, bytes]:
        """A new token, durable before this returns; ``max_lifetime_ms`` <= 0 takes the broker's."""
        assert self.enabled
        lifetime = self.max_lifetime_ms if max_lifetime_ms <= 0 else min(self.max_lifetime_ms, max_lifetime_ms)
        max_ms = _sum(now_ms, lifetime)
        info = TokenInfo(self._new_id(), owner, requester, renewers, now_ms, max_ms,
                         min(max_ms, _sum(now_ms, self.expiry_time_ms)))  # fmt: skip
        self._apply({info.token_id: info})
        mac = self.hmac(info.token_id)
        self._by_hmac[mac] = info.token_id
        self.created_total += 1
        return info, mac

    def by_hmac(self, mac: bytes) -> TokenInfo | None:
        token_id = self._by_hmac.get(bytes(mac))
        return None if token_id is None else self._tokens.get(token_id)

    def renew(self, mac: bytes, principal: str, period_ms: int, now_ms: int) -> tuple[ErrorCode, int]:
        """(error, new expiry); Kafka's order: unknown, expired, not owner nor renewer."""
        info = self.by_hmac(mac)
        if info is None:
            return ErrorCode.delegation_token_not_found, 0
        if info.expired(now_ms):
            return ErrorCode.delegation_token_expired, 0
        if not info.may_renew(principal):
            return ErrorCode.delegation_token_owner_mismatch, 0
        period = self.expiry_time_ms if period_ms <= 0 else min(self.expiry_time_ms, period_ms)
        expiry = min(info.max_ms, now_ms + period)
        self._apply({info.token_id: replace(info, expiry_ms=expiry)})
        return ErrorCode.none, expiry

    def expire(self, mac: bytes, principal: str, period_ms: int, now_ms: int) -> tuple[ErrorCode, int]:
        """(error, new expiry); a negative period removes the token now. Kafka's order: unknown, not owner nor
        renewer, then (for a period >= 0) expired."""
        info = self.by_hmac(mac)
        if info is None:
            return ErrorCode.delegation_token_not_found, 0
        if not info.may_renew(principal):
            return ErrorCode.delegation_token_owner_mismatch, 0
        if period_ms < 0:
            self._apply({info.token_id: None})
            return ErrorCode.none, now_ms
        if info.expired(now_ms):
            return ErrorCode.delegation_token_expired, 0
        expiry = min(info.max_ms, _sum(now_ms, period_ms))
        self._apply({info.token_id: replace(info, expiry_ms=expiry)})
        return ErrorCode.none, expiry

    def purge(self, now_ms: int) -> list[TokenInfo]:
        """Remove the expired tokens (``delegation.token.expiry.check.interval.ms``); returns them."""
        gone = [t for t in self._tokens.values() if t.expired(now_ms)]
        if gone:
            self._apply(dict.fromkeys((t.token_id for t in gone), None))
            self.purged_total += len(gone)
        return gone

    # --- logins -------------------------------------------------------------------------------------------

    def login(self, token_id: str, mechanism: str, now_ms: int) -> TokenLogin | None:
        """The SCRAM login of a token (None: unknown, expired, or tokens disabled)."""
        info = self._tokens.get(token_id)
        if info is None or not self.enabled or info.expired(now_ms) or mechanism not in SCRAM_MECHANISMS:
            return None
        key = (token_id, mechanism)
        credential = self._credentials.get(key)
        if credential is None:
            password = base64.b64encode(self.hmac(token_id)).decode()
            m = SCRAM_MECHANISMS[mechanism]
            credential = self._credentials[key] = credential_from_password(m, password, m.iterations_min)
        owner_name = info.owner.partition(":")[2]
        return TokenLogin(owner_name, credential, info.expiry_ms)

    def statistics(self) -> dict[str, int]:
        return {"tokens": len(self._tokens), "created_total": self.created_total, "purged_total": self.purged_total}

    def _apply(self, changes: dict[str, TokenInfo | None]) -> None:
        """Upserts and removals as one atomic write; memory changes only once the file is durable."""
        tokens = dict(self._tokens)
        for token_id, info in changes.items():
            if info is None:
                tokens.pop(token_id, None)
            else:
                tokens[token_id] = info
        data = _encode(tokens.values())
        assert _decode(data) == tokens  # the bytes about to be made durable read back as what we mean
        self._fs.write_atomic(self.path, data)
        self._tokens = tokens
        removed = {token_id for token_id, info in changes.items() if info is None}
        if removed:
            self._by_hmac = {m: t for m, t in self._by_hmac.items() if t not in removed}
            self._credentials = {k: c for k, c in self._credentials.items() if k[0] not in removed}
