"""JSON documents per key, in a directory or an S3 bucket, for single-page apps: idempotent, not transactional.

Layout under the store's root::

    <name>/current.json              {"version": N}: the serving version (one atomic write switches)
    <name>/current -> vN             (directories only) a symlink, so a static file server can serve
                                     /<name>/current/<key>.json
    <name>/v<N>/_meta.json           topics and creation time of version N
    <name>/v<N>/<quoted key>.json    {"key": ..., "value": ..., "versions": {"<topic>/<partition>": offset}}

A document is written whole (temporary file and rename; one S3 PUT), so a reader never sees a torn one. The
store cannot share a transaction with the source offsets, so the guarantee is *idempotent* (see
:mod:`loosely.views._sink`): the runner commits offsets to the consumer group after :meth:`DocumentSink.apply`
returns, and each document carries, per source partition, the offset of the last record applied to it; a replay
after a crash skips what a document already contains. A delete removes the document (and with it its versions),
so during a replay a deleted key can reappear until its delete is replayed; the end state is exact.

Keys are percent-quoted into file names; a quoted key longer than 200 bytes is stored under its SHA-256 instead
(the document keeps the real key).

>>> import tempfile
>>> from loosely.views import Batch, Put, TopicPartition, latest_by_key
>>> sink = DocumentSink(DirectoryStore(tempfile.mkdtemp()))
>>> sink.open(latest_by_key("profiles", ["p"]))
>>> sink.apply(Batch.build([(TopicPartition("p", 0), 4, 0, Put("ada/1", {"name": "Ada"}))]))
>>> sink.switch("profiles", 1)
>>> sink.get("profiles", "ada/1"), sorted(sink.store.children("profiles/v1"))
({'name': 'Ada'}, ['_meta.json', 'ada%2F1.json'])
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
import urllib.parse
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from loosely.views._batch import DELETED, Batch, entries_by_key, fold_versioned
from loosely.views._model import Json, TopicPartition, View, ViewError
from loosely.views._sink import Guarantee, SinkError, SinkStatistics, VersionDropped, VersionInfo, VersionState

__all__ = ["DirectoryStore", "DocumentSink", "DocumentStore", "S3Store", "doc_name"]

# File names are at most 255 bytes on common filesystems; leave room for ".json" and temporary suffixes.
_NAME_BYTES_MAX = 200


def doc_name(key: str) -> str:
    q = urllib.parse.quote(key, safe="")
    if len(q.encode()) > _NAME_BYTES_MAX or q.startswith(("_", ".")) or not q:
        q = "~" + hashlib.sha256(key.encode()).hexdigest()
    return q + ".json"


class DocumentStore(Protocol):
    """Four operations on whole objects, and a listing; ``path`` is ``/``-separated and relative to the root."""

    def read(self, path: str) -> bytes | None: ...

    def write(self, path: str, data: bytes) -> None: ...

    def remove(self, path: str) -> None: ...

    def remove_tree(self, prefix: str) -> None: ...

    def children(self, prefix: str) -> list[str]: ...


def _syncfs(path: str) -> None:
    """Flush the filesystem holding ``path`` (Linux ``syncfs``): one call makes a whole batch of renamed
    documents durable, where an ``fsync`` per document cost milliseconds each (measured: 4000 documents took
    seconds)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _LIBC is not None and _LIBC.syncfs(fd) == 0:
            return
        os.sync()
    finally:
        os.close(fd)


try:
    import ctypes

    _LIBC: Any = ctypes.CDLL(None, use_errno=True)
    _LIBC.syncfs.argtypes = [ctypes.c_int]
except (OSError, AttributeError):  # not Linux
    _LIBC = None


class DirectoryStore:
    """Documents as files. With ``fsync=True`` (default) each batch ends with one ``syncfs`` of the directory's
    filesystem before the runner commits offsets, so the offsets never run ahead of the files, even across a
    power loss."""

    def __init__(self, root: str, *, fsync: bool = True) -> None:
        self.root = os.path.abspath(root)
        self.location = f"dir:{os.path.realpath(self.root)}"
        self.fsync = fsync
        os.makedirs(self.root, exist_ok=True)

    def _p(self, path: str) -> str:
        return os.path.join(self.root, *path.split("/"))

    def read(self, path: str) -> bytes | None:
        try:
            with open(self._p(path), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write(self, path: str, data: bytes) -> None:
        full = self._p(path)
        tmp = f"{full}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, full)

    def sync_dir(self, prefix: str) -> None:
        if self.fsync:
            _syncfs(self._p(prefix))

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._p(path))

    def remove_tree(self, prefix: str) -> None:
        import shutil  # noqa: PLC0415 - only for drops

        shutil.rmtree(self._p(prefix), ignore_errors=True)

    def children(self, prefix: str) -> list[str]:
        try:
            return [n for n in os.listdir(self._p(prefix)) if not n.endswith(".tmp")]
        except FileNotFoundError:
            return []

    def link(self, prefix: str, name: str, target: str) -> None:
        """Atomically point ``prefix/name`` at ``target`` (a sibling), for static file servers."""
        tmp = self._p(f"{prefix}/.{name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, self._p(f"{prefix}/{name}"))


class S3Store:
    """Documents as S3 objects (boto3; path-style addressing, so it works with SeaweedFS and MinIO too)."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None, client: Any = None,
                 create_bucket: bool = True) -> None:
        import boto3  # noqa: PLC0415 - optional dependency (the "s3" extra)
        from botocore.config import Config  # noqa: PLC0415

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.location = f"s3:{endpoint_url or ''}/{bucket}/{self.prefix}"
        self.client = client or boto3.client(
            "s3", endpoint_url=endpoint_url, region_name="us-east-1",
            aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "loosely"),
            aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "loosely"),
            config=Config(s3={"addressing_style": "path"}, max_pool_connections=32,
                          retries={"max_attempts": 5, "mode": "standard"}),
        )
        if create_bucket:
            try:
                self.client.create_bucket(Bucket=bucket)
            except self.client.exceptions.BucketAlreadyOwnedByYou:
                pass
            except self.client.exceptions.BucketAlreadyExists:
                pass

    def _k(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def read(self, path: str) -> bytes | None:
        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=self._k(path))["Body"].read()
            return body
        except self.client.exceptions.NoSuchKey:
            return None

    def write(self, path: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._k(path), Body=data, ContentType="application/json")

    def remove(self, path: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._k(path))

    def _list(self, prefix: str, delimiter: bool) -> Iterable[dict[str, Any]]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._k(prefix).rstrip("/") + "/"}
        if delimiter:
            kwargs["Delimiter"] = "/"
        yield from self.client.get_paginator("list_objects_v2").paginate(**kwargs)

    def remove_tree(self, prefix: str) -> None:
        for page in self._list(prefix, delimiter=False):
            objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objs:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objs, "Quiet": True})

    def children(self, prefix: str) -> list[str]:
        base = self._k(prefix).rstrip("/") + "/"
        out = []
        for page in self._list(prefix, delimiter=True):
            out += [o["Key"][len(base):] for o in page.get("Contents", [])]
            out += [p["Prefix"][len(base):].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return out


class DocumentSink:
    guarantee = Guarantee.IDEMPOTENT
    wants_positions = True

    def __init__(self, store: DocumentStore, *, parallel_writes: int | None = None) -> None:
        self.store = store
        self.location: str | None = getattr(store, "location", None)
        # Object stores answer each request in milliseconds; overlapping them is what makes a batch fast.
        self.parallel_writes = parallel_writes or (16 if isinstance(store, S3Store) else 1)
        self._pool = ThreadPoolExecutor(self.parallel_writes) if self.parallel_writes > 1 else None
        self._view: View[object, object] | None = None
        self._batches = self._written = self._apply_ms = self._failures = 0

    def open(self, view: View[object, object]) -> None:
        meta = f"{view.name}/v{view.version}/_meta.json"
        if self.store.read(meta) is None:
            self.store.write(meta, json.dumps({"topics": list(view.topics), "created_ms": int(time.time() * 1000)})
                             .encode())
        self._view = view

    def stored_positions(self) -> dict[TopicPartition, int]:
        return {}  # the consumer group holds them

    def _apply_key(self, prefix: str, key: str, entries: list[tuple[TopicPartition, int, Any]]) -> int:
        path = f"{prefix}/{doc_name(key)}"
        raw = self.store.read(path)
        if raw is None:
            current: Json | object = DELETED
            versions: dict[str, int] = {}
        else:
            doc = json.loads(raw)
            current, versions = doc["value"], doc["versions"]
        value, versions, changed = fold_versioned(current, versions, entries)  # type: ignore[arg-type]
        if not changed:
            return 0
        if value is DELETED:
            self.store.remove(path)
        else:
            self.store.write(path, json.dumps({"key": key, "value": value, "versions": versions},
                                              ensure_ascii=False, separators=(",", ":")).encode())
        return 1

    def apply(self, batch: Batch) -> None:
        v = self._view
        if v is None:
            raise SinkError("the sink is not open: call open(view) first")
        t0 = time.monotonic()
        prefix = f"{v.name}/v{v.version}"
        meta = f"{prefix}/_meta.json"
        dropped = f"{v.id} was dropped from {getattr(self.store, 'location', 'the store')}"
        if self.store.read(meta) is None:  # dropped: writing on would leave orphan documents
            raise VersionDropped(dropped)
        groups = entries_by_key(batch)
        try:
            if self._pool is None:
                written = sum(self._apply_key(prefix, k, es) for k, es in groups.items())
            else:
                written = sum(self._pool.map(lambda item: self._apply_key(prefix, *item), groups.items()))
            sync = getattr(self.store, "sync_dir", None)
            if sync is not None:
                sync(prefix)
        except (ViewError, VersionDropped):
            self._failures += 1
            raise
        except Exception as e:
            self._failures += 1
            if self.store.read(meta) is None:  # dropped under this batch: its directory went away mid-write
                self.store.remove_tree(prefix)
                raise VersionDropped(dropped) from e
            raise SinkError(f"writing {len(groups)} documents of {v.id} failed: {e!r}") from e
        if self.store.read(meta) is None:  # dropped under this batch: what it wrote is orphaned, so clear it
            self._failures += 1
            self.store.remove_tree(prefix)
            raise VersionDropped(dropped)
        self._batches += 1
        self._written += written
        self._apply_ms += int((time.monotonic() - t0) * 1000)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def statistics(self) -> SinkStatistics:
        return SinkStatistics(self._batches, self._written, self._apply_ms, self._failures)

    # -- catalog ------------------------------------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(n for n in self.store.children("") if not n.startswith((".", "_")))

    def serving_version(self, name: str) -> int | None:
        raw = self.store.read(f"{name}/current.json")
        return None if raw is None else int(json.loads(raw)["version"])

    def versions(self, name: str) -> list[VersionInfo]:
        serving = self.serving_version(name)
        out = []
        for child in self.store.children(name):
            if not (child.startswith("v") and child[1:].isdigit()):
                continue
            n = int(child[1:])
            raw = self.store.read(f"{name}/{child}/_meta.json")
            if raw is None:
                continue  # dropped (object stores may keep an empty prefix) or still being created
            meta: dict[str, Any] = json.loads(raw)
            state = VersionState.SERVING if n == serving else VersionState.BUILDING
            out.append(VersionInfo(name, n, tuple(meta["topics"]), state, meta["created_ms"], {}, None))
        return sorted(out, key=lambda i: i.version)

    def switch(self, name: str, version: int) -> None:
        if self.store.read(f"{name}/v{version}/_meta.json") is None:
            raise ViewError(f"{name}@{version} does not exist")
        self.store.write(f"{name}/current.json", json.dumps({"version": version}).encode())
        link = getattr(self.store, "link", None)
        if link is not None:
            link(name, "current", f"v{version}")

    def drop(self, name: str, version: int) -> None:
        if self.serving_version(name) == version:
            raise ViewError(f"{name}@{version} is serving; switch to another version before dropping it")
        self.store.remove(f"{name}/v{version}/_meta.json")  # first, so a half-done drop is no version at all
        self.store.remove_tree(f"{name}/v{version}")

    def get(self, name: str, key: str, version: int | None = None) -> Json | None:
        version = self.serving_version(name) if version is None else version
        if version is None:
            return None
        raw = self.store.read(f"{name}/v{version}/{doc_name(key)}")
        return None if raw is None else json.loads(raw)["value"]

    def scan(self, name: str, *, after: str = "", limit: int = 100, version: int | None = None) -> list[
        tuple[str, Json]
    ]:
        """Keys in order of their document names (a listing: fine for tools and tests, slow for big views)."""
        version = self.serving_version(name) if version is None else version
        if version is None:
            return []
        prefix = f"{name}/v{version}"
        out = []
        for child in sorted(self.store.children(prefix)):
            if child.startswith("_") or not child.endswith(".json"):
                continue
            raw = self.store.read(f"{prefix}/{child}")
            if raw is None:
                continue
            doc = json.loads(raw)
            if doc["key"] > after:
                out.append((doc["key"], doc["value"]))
        out.sort(key=lambda kv: kv[0])
        return out[:limit]
