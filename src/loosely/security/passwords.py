"""Checking a user name and password against the broker's SCRAM users, for HTTP services that speak Basic auth.

The schema registry (and any other HTTP service beside the broker) lets in the same users as the broker's SASL
listeners, so a team keeps one list of users. Only SCRAM credentials are stored (salt, iterations, StoredKey,
ServerKey: :mod:`loosely.security.scram`), never passwords, and a password is checked the way a SCRAM server checks
a login (RFC 5802 section 3): ``SaltedPassword = PBKDF2(password, salt, iterations)``, ``ClientKey =
HMAC(SaltedPassword, "Client Key")``, and ``H(ClientKey)`` must equal the stored ``StoredKey``, compared in constant
time. Any of the user's mechanisms that matches lets the user in.

**Cost and the cache.** PBKDF2 with 4,096 to 16,384 iterations takes milliseconds on purpose, and HTTP clients send
the password with every request. A successful check is therefore remembered: the cache maps a keyed digest of
``user NUL password`` (HMAC with a random per-process key, so the cache never holds a password nor a digest that
outlives the process) to the credentials that accepted it, and a hit counts only while the user's credentials are
still exactly those (a changed or removed password takes effect on the next request). Failures are not cached:
each costs its PBKDF2, which is what slows down guessing. The cache holds at most ``cache_entries_max`` entries and
forgets the oldest first.

>>> from loosely.security.scram import SCRAM_MECHANISMS, credential_from_password
>>> users = {"alice": {"SCRAM-SHA-256": credential_from_password(SCRAM_MECHANISMS["SCRAM-SHA-256"], "s3cret")}}
>>> check = PasswordCheck(lambda: users)
>>> check("alice", "s3cret"), check("alice", "wrong"), check("bob", "s3cret")
(True, False, False)
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Final

from loosely.security.credentials import read_credentials
from loosely.security.scram import SCRAM_MECHANISMS, ScramCredential, salted_password

__all__ = ["CACHE_ENTRIES_MAX", "CredentialsFile", "PasswordCheck", "password_matches"]

Credentials = Mapping[str, Mapping[str, ScramCredential]]  # user -> mechanism name -> credential

CACHE_ENTRIES_MAX: Final = 1024  # users x passwords remembered as good; 1,024 entries are ~200 KiB


def password_matches(mechanism: str, credential: ScramCredential, password: str) -> bool:
    """Whether ``password`` is the one ``credential`` was made from (constant-time comparison of StoredKey)."""
    m = SCRAM_MECHANISMS[mechanism]
    salted = salted_password(m, password.encode(), credential.salt, credential.iterations)
    return hmac.compare_digest(m.hash(m.hmac(salted, b"Client Key")), credential.stored_key)


class PasswordCheck:
    """``check(user, password) -> bool`` against the users ``credentials()`` returns now (called on every check,
    so it should be cheap: a dict the broker keeps, or :class:`CredentialsFile`). Thread-safe."""

    def __init__(self, credentials: Callable[[], Credentials], *, cache_entries_max: int = CACHE_ENTRIES_MAX) -> None:
        self._credentials = credentials
        self._cache_entries_max = cache_entries_max
        self._key = secrets.token_bytes(32)
        self._good: OrderedDict[bytes, Mapping[str, ScramCredential]] = OrderedDict()
        self._lock = threading.Lock()
        self.failures_total = 0

    def __call__(self, user: str, password: str) -> bool:
        mechanisms = self._credentials().get(user)
        if not mechanisms:
            # no such user: still spend a PBKDF2, so a guesser cannot tell unknown users from wrong passwords
            password_matches("SCRAM-SHA-256", _DECOY, password)
            return self._failed()
        digest = hmac.digest(self._key, user.encode() + b"\x00" + password.encode(), "sha256")
        with self._lock:
            if self._good.get(digest) == mechanisms:
                self._good.move_to_end(digest)
                return True
        if not any(password_matches(name, c, password) for name, c in mechanisms.items()):
            return self._failed()
        with self._lock:
            self._good[digest] = dict(mechanisms)
            while len(self._good) > self._cache_entries_max:
                self._good.popitem(last=False)
        return True

    def _failed(self) -> bool:
        with self._lock:
            self.failures_total += 1
        return False


_DECOY: Final = ScramCredential(b"\x00" * 32, 4096, b"\x00" * 32, b"\x00" * 32)


class CredentialsFile:
    """The users of a ``scram-credentials.json`` (the broker's, in its data directory), read again when it changes.

    The broker replaces the file whole (rename), so a read sees the old or the new users, never a mix. A file that
    cannot be read or parsed keeps the users last read (and the error is in :attr:`error`); one that never could
    be read means no users, so every check fails rather than letting anyone in.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._users: Credentials = {}
        self._lock = threading.Lock()
        self.error: str | None = None
        self()

    def __call__(self) -> Credentials:
        try:
            st = os.stat(self.path)
        except OSError as e:
            self.error = f"{self.path}: {e.strerror}"
            return self._users
        seen = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if seen != self._seen:
                try:
                    with open(self.path, "rb") as f:
                        self._users = read_credentials(f.read())
                    self.error = None
                except (OSError, ValueError) as e:
                    self.error = f"{self.path}: {e}"
                self._seen = seen
            return self._users
