"""The SCRAM credential store: salted credentials per user and mechanism, in one durable file of the data directory.

File format (``<data_dir>/scram-credentials.json``, UTF-8 JSON, replaced whole on every change)::

    {"version": 1,
     "users": {"alice": {"SCRAM-SHA-256": {"salt": B64, "iterations": 8192, "stored_key": B64, "server_key": B64},
                         "SCRAM-SHA-512": {...}}}}

Only the salt, the iteration count, StoredKey and ServerKey are kept (what Kafka keeps in its metadata log): neither
the password nor the salted password, so reading the file does not let anyone log in. Every change is written with
the injected filesystem's ``write_atomic`` (temporary file, fsync, rename, fsync of the directory), so after a crash
or ``kill -9`` the file holds either the old or the new set, whole. It is checked when read (shape, base64, key
lengths, iteration range); a file that fails the check stops the broker with a message naming it rather than
letting it start with fewer users than the operator made.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Iterator, Sequence
from typing import Final, Protocol

from loosely.security.scram import SCRAM_MECHANISMS, ScramCredential

__all__ = ["CREDENTIALS_FILE", "CredentialStore", "CredentialStoreError", "Files", "read_credentials"]

CREDENTIALS_FILE: Final = "scram-credentials.json"
FORMAT_VERSION: Final = 1


class Files(Protocol):
    """The part of :class:`loosely.storage.fs.FileSystem` the store needs (injected; tests pass a faulty one)."""

    def exists(self, path: str) -> bool: ...

    def read_file(self, path: str) -> bytes: ...

    def write_atomic(self, path: str, data: bytes) -> None: ...


class CredentialStoreError(OSError):
    """The credentials file cannot be read as written by this store (an OSError: the broker reports it and stops)."""


def _b64(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("expected a base64 string")
    return base64.b64decode(value, validate=True)


def _decode(data: bytes) -> dict[str, dict[str, ScramCredential]]:
    doc = json.loads(data)
    if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION or not isinstance(doc.get("users"), dict):
        raise ValueError(f"expected {{'version': {FORMAT_VERSION}, 'users': {{...}}}}")
    users: dict[str, dict[str, ScramCredential]] = {}
    for user, mechs in doc["users"].items():
        if not isinstance(mechs, dict):
            raise ValueError(f"user {user!r}: expected an object")
        for name, c in mechs.items():
            m = SCRAM_MECHANISMS.get(name)
            if m is None or not isinstance(c, dict):
                raise ValueError(f"user {user!r}: unknown mechanism {name!r}")
            iterations = c.get("iterations")
            if not isinstance(iterations, int) or not m.iterations_min <= iterations <= m.iterations_max:
                raise ValueError(f"user {user!r} {name}: iterations out of range")
            cred = ScramCredential(
                _b64(c.get("salt")), iterations, _b64(c.get("stored_key")), _b64(c.get("server_key"))
            )
            size = len(m.hash(b""))
            if len(cred.stored_key) != size or len(cred.server_key) != size:
                raise ValueError(f"user {user!r} {name}: keys of the wrong length")
            users.setdefault(user, {})[name] = cred
    return users


def read_credentials(data: bytes) -> dict[str, dict[str, ScramCredential]]:
    """The users of a credentials file's bytes; :class:`ValueError` with the reason when they are not one."""
    try:
        return _decode(data)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as e:
        raise ValueError(f"not a SCRAM credentials file ({e})") from None


def _encode(users: dict[str, dict[str, ScramCredential]]) -> bytes:
    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    doc = {
        "version": FORMAT_VERSION,
        "users": {
            user: {
                name: {
                    "salt": b64(c.salt),
                    "iterations": c.iterations,
                    "stored_key": b64(c.stored_key),
                    "server_key": b64(c.server_key),
                }
                for name, c in sorted(mechs.items())
            }
            for user, mechs in sorted(users.items())
        },
    }
    return json.dumps(doc, indent=1).encode()


class CredentialStore:
    """SCRAM credentials by user and mechanism, loaded at start and rewritten atomically on every change.

    >>> import tempfile
    >>> from loosely.storage.fs import OsFileSystem
    >>> from loosely.security.scram import SCRAM_MECHANISMS, credential_from_password
    >>> d = tempfile.mkdtemp()
    >>> store = CredentialStore(OsFileSystem(), d)
    >>> store.put("alice", "SCRAM-SHA-256", credential_from_password(SCRAM_MECHANISMS["SCRAM-SHA-256"], "x"))
    >>> CredentialStore(OsFileSystem(), d).get("alice", "SCRAM-SHA-256").iterations
    4096
    """

    def __init__(self, fs: Files, data_dir: str) -> None:
        self._fs = fs
        self.path = os.path.join(data_dir, CREDENTIALS_FILE)
        self._users: dict[str, dict[str, ScramCredential]] = {}
        if fs.exists(self.path):
            try:
                self._users = _decode(fs.read_file(self.path))
            except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as e:
                raise CredentialStoreError(f"{self.path} is damaged ({e}); restore it from a backup") from None

    def get(self, user: str, mechanism: str) -> ScramCredential | None:
        return self._users.get(user, {}).get(mechanism)

    def mechanisms(self, user: str) -> dict[str, ScramCredential]:
        return dict(self._users.get(user, {}))

    def users(self) -> Iterator[str]:
        return iter(sorted(self._users))

    def put(self, user: str, mechanism: str, credential: ScramCredential) -> None:
        self.apply([(user, mechanism, credential)])

    def remove(self, user: str, mechanism: str) -> bool:
        if self.get(user, mechanism) is None:
            return False
        self.apply([(user, mechanism, None)])
        return True

    def apply(self, changes: Sequence[tuple[str, str, ScramCredential | None]]) -> None:
        """Upserts (a credential) and deletions (None) as one atomic write; memory changes only once it is durable."""
        users = {u: dict(m) for u, m in self._users.items()}
        for user, mechanism, cred in changes:
            assert mechanism in SCRAM_MECHANISMS, mechanism
            if cred is None:
                users.get(user, {}).pop(mechanism, None)
                if user in users and not users[user]:
                    del users[user]
            else:
                users.setdefault(user, {})[mechanism] = cred
        data = _encode(users)
        assert _decode(data) == users  # the bytes about to be made durable read back as what we mean
        self._fs.write_atomic(self.path, data)
        self._users = users
