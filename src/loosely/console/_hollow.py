"""The Hollow pages' data: a blob store (a directory or ``s3://bucket/prefix``) read through loosely.hollow.api.

What Java's explorer, diff and history UIs show, computed on demand: the announced version and the blobs, each
type's schema and record count, records by primary key, the changed fields between two versions, and the changes
of one record along the delta chain. Loaded states are kept, at most ``STATES_MAX`` of them, newest use last;
everything here blocks and runs in worker threads.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

from loosely.console._cluster import ConsoleError
from loosely.hollow.api import (
    FilesystemBlobStore,
    HistoryEntry,
    TypeDiff,
    Version,
    diff_versions,
    load_version,
    record_history,
    record_json,
)
from loosely.hollow.core import HollowError, ObjectSchema, PrimaryKeyIndex, ReadStateEngine

__all__ = ["HollowBrowser", "TypeSummary"]

STATES_MAX: Final = 2
"""Read states kept in memory (a diff needs two); a third version loaded drops the least recently used."""

RECORDS_SHOWN_MAX: Final = 50


@dataclass(frozen=True, slots=True)
class TypeSummary:
    name: str
    kind: str
    schema: str
    records: int
    primary_key: tuple[str, ...] | None


def _open(spec: str) -> Any:
    if spec.startswith("s3://"):
        from loosely.hollow.api import S3BlobStore  # noqa: PLC0415 - boto3 only when an S3 store is asked for

        bucket, _, prefix = spec[5:].partition("/")
        return S3BlobStore(bucket, prefix, endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
    if not os.path.isdir(spec):
        raise ConsoleError(f"no Hollow blob store at {spec} (not a directory)")
    return FilesystemBlobStore(spec)


def parse_key(text: str) -> list[object]:
    """A primary key typed on the page: comma-separated values, each JSON when it parses (``1``, ``"a"``)."""
    out: list[object] = []
    for raw in text.split(","):
        part = raw.strip()
        try:
            out.append(json.loads(part))
        except ValueError:
            out.append(part)
    return out


class HollowBrowser:
    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._store: Any = None
        self._states: OrderedDict[int, ReadStateEngine] = OrderedDict()
        self._lock = threading.Lock()

    def store(self) -> Any:
        if self._store is None:
            self._store = _open(self.spec)
        return self._store

    def announced(self) -> int | None:
        try:
            v = self.store().latest_version()
        except HollowError as e:
            raise ConsoleError(f"Hollow store {self.spec}: {e}") from None
        return None if v is None else int(v)

    def version(self, text: str | None) -> int:
        if text:
            try:
                return int(text)
            except ValueError:
                raise ConsoleError(f"version {text!r} is not a number") from None
        v = self.announced()
        if v is None:
            raise ConsoleError(f"nothing is announced in {self.spec}")
        return v

    def blobs(self) -> list[tuple[str, int | None, int, str]]:
        """``(type, from version, to version, file name)`` of every blob, oldest first."""
        refs = self.store().refs()
        return [(r.type.value, None if r.from_version is None else int(r.from_version), int(r.to_version), r.name)
                for r in sorted(refs, key=lambda r: (r.to_version, r.from_version or 0))]

    def versions(self) -> list[int]:
        return sorted({to for _, _, to, _ in self.blobs()})

    def state(self, version: int) -> ReadStateEngine:
        with self._lock:
            engine = self._states.get(version)
            if engine is not None:
                self._states.move_to_end(version)
                return engine
        try:
            engine = load_version(self.store(), Version(version))
        except HollowError as e:
            raise ConsoleError(f"cannot load version {version}: {e}") from None
        with self._lock:
            self._states[version] = engine
            while len(self._states) > STATES_MAX:
                self._states.popitem(last=False)
        return engine

    def types(self, version: int) -> list[TypeSummary]:
        engine = self.state(version)
        out = []
        for t in engine.types():
            s = t.schema
            pk = s.primary_key if isinstance(s, ObjectSchema) else None
            out.append(TypeSummary(t.name, s.kind.name, s.to_text(), len(t.populated_ordinals()), pk or None))
        return out

    def records(self, version: int, type_name: str, key: str) -> list[tuple[int, object]]:
        """Records of a type: the one with primary key ``key`` when given, else the first ones."""
        engine = self.state(version)
        if not engine.has_type(type_name):
            raise ConsoleError(f"no type {type_name} at version {version}")
        if key:
            if not isinstance(engine.type(type_name).schema, ObjectSchema) or not engine.type(
                    type_name).schema.primary_key:  # type: ignore[union-attr]
                raise ConsoleError(f"{type_name} has no primary key to look a record up by")
            index = PrimaryKeyIndex(engine, type_name)
            try:
                o = index.find(*parse_key(key))  # type: ignore[arg-type]
            except (HollowError, TypeError, ValueError) as e:
                raise ConsoleError(f"key {key!r} for {type_name}: {e}") from None
            finally:
                index.close()
            return [] if o < 0 else [(o, record_json(engine, type_name, o))]
        ordinals = engine.type(type_name).populated_ordinals().tolist()[:RECORDS_SHOWN_MAX]
        return [(o, record_json(engine, type_name, o)) for o in ordinals]

    def diff(self, from_version: int, to_version: int) -> list[TypeDiff]:
        try:
            return list(diff_versions(self.store(), Version(from_version), Version(to_version)).values())
        except HollowError as e:
            raise ConsoleError(f"diff {from_version} -> {to_version}: {e}") from None

    def history(self, type_name: str, key: str) -> list[HistoryEntry]:
        versions = self.versions()
        if not versions:
            raise ConsoleError(f"the store {self.spec} holds no versions")
        snapshots = [to for kind, _, to, _ in self.blobs() if kind == "snapshot"]
        start = min(snapshots) if snapshots else versions[0]
        try:
            return record_history(self.store(), type_name, parse_key(key), Version(start),
                                  Version(self.version(None)))
        except HollowError as e:
            raise ConsoleError(f"history of {type_name} {key}: {e}") from None
