"""The S3 blob store: any S3-compatible object storage through boto3 (AWS S3, SeaweedFS, MinIO, ...).

Objects are named like the filesystem store's files, under an optional key prefix (``<prefix>snapshot-<v>``,
``<prefix>delta-<from>-<to>``, ``<prefix>announced.version`` ...), so ``aws s3 sync`` of a bucket gives a
directory Java's filesystem retriever reads, and the other way round.  (Netflix's reference implementation keys
deltas by their from-version alone and keeps a ``snapshot.index``; a listing by prefix does both jobs here, in
one request, and keeps every transition, so a failed cycle's orphan cannot shadow the live chain.)

* ``publish`` is one PUT with ``If-None-Match: *``: a blob is never replaced (S3 answers 412, and identical
  bytes count as published); S3 makes a PUT visible whole or not at all;
* the announcement is one PUT of ``announced.version`` (the reference implementation's ``S3Announcer``);
* ``retrieve_snapshot`` asks for the exact snapshot first, then lists ``snapshot-``; deltas list
  ``delta-<from>-`` -- a trailing dash, so ``delta-12-`` never matches ``delta-123-...``.

Timeouts and retries are kept short (``connect_timeout_s``, ``read_timeout_s``, ``attempts_max``) so an
unreachable store fails a refresh in seconds and the consumer's own backoff takes over.  Connection errors,
timeouts and 5xx answers raise :class:`BlobStoreUnavailableError`; a missing object is "not found".
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from loosely.hollow.api._blobs import (
    ANNOUNCED_VERSION_FILE,
    Blob,
    BlobData,
    BlobRef,
    BlobType,
    Version,
    parse_blob_name,
    pick_snapshot,
    pick_transition,
)
from loosely.hollow.api._interfaces import BlobConflictError, BlobStoreUnavailableError

__all__ = ["S3BlobStore", "S3StoreStatistics"]

_ANNOUNCEMENT_BYTES_MAX = 64


@dataclass(frozen=True, slots=True)
class S3StoreStatistics:
    published_blobs: int
    published_bytes: int
    announcements: int
    requests: int
    errors: int


def _status(e: Exception) -> int:
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 0


def _code(e: Exception) -> str:
    response = getattr(e, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


class S3BlobStore:
    """Publisher, Announcer, BlobRetriever and AnnouncementWatcher over a bucket (and key prefix).

    Give ``client`` (a boto3 S3 client) or ``endpoint_url`` and credentials; ``create_bucket`` creates the bucket
    when it is missing (for tests and first deployments).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
        connect_timeout_s: float = 2.0,
        read_timeout_s: float = 30.0,
        attempts_max: int = 2,
        create_bucket: bool = False,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        if client is None:
            import boto3  # noqa: PLC0415 - boto3 is the optional "s3" extra; only this store needs it
            from botocore.config import Config  # noqa: PLC0415

            config = Config(
                connect_timeout=connect_timeout_s,
                read_timeout=read_timeout_s,
                retries={"max_attempts": attempts_max, "mode": "standard"},
                s3={"addressing_style": "path"},
            )
            client = boto3.client(
                "s3", endpoint_url=endpoint_url, region_name=region, aws_access_key_id=access_key,
                aws_secret_access_key=secret_key, config=config,
            )
        self.client = client
        self._lock = threading.Lock()
        self._counts = {"published": 0, "bytes": 0, "announcements": 0, "requests": 0, "errors": 0}
        if create_bucket:
            self._call("creating the bucket", self._create_bucket)

    def __repr__(self) -> str:
        return f"S3BlobStore({self.bucket!r}, {self.prefix!r})"

    def _create_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as e:
            if _status(e) not in (404, 403) and _code(e) not in ("404", "NoSuchBucket"):
                raise
            self.client.create_bucket(Bucket=self.bucket)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one S3 request; anything but an answer from the store about the object is "unavailable"."""
        self._count("requests")
        try:
            return fn(*args, **kwargs)
        except BlobConflictError:
            raise
        except Exception as e:
            status = _status(e)
            if status and status < 500 and status not in (408, 429):
                raise  # the store answered: the caller decides (404, 412, ...)
            self._count("errors")
            raise BlobStoreUnavailableError(f"S3 {self.bucket}/{self.prefix}: {what}: {e}") from e

    def _key(self, name: str) -> str:
        return self.prefix + name

    # -- Publisher / Announcer --

    def publish(self, ref: BlobRef, data: bytes) -> None:
        key = self._key(ref.name)
        try:
            self._call(f"publishing {ref.name}", self.client.put_object, Bucket=self.bucket, Key=key, Body=data,
                       IfNoneMatch="*")
        except BlobStoreUnavailableError:
            raise
        except Exception as e:
            if _status(e) not in (412, 409):
                raise BlobStoreUnavailableError(f"S3 {self.bucket}: publishing {ref.name}: {e}") from e
            if self._get(key, ref.name) != data:
                raise BlobConflictError(f"s3://{self.bucket}/{key} exists with other content") from None
        self._count("published")
        self._count("bytes", len(data))

    def announce(self, version: Version) -> None:
        body = str(int(version)).encode("ascii")
        try:
            self._call(f"announcing {version}", self.client.put_object, Bucket=self.bucket,
                       Key=self._key(ANNOUNCED_VERSION_FILE), Body=body)
        except BlobStoreUnavailableError:
            raise
        except Exception as e:
            raise BlobStoreUnavailableError(f"S3 {self.bucket}: announcing {version}: {e}") from e
        self._count("announcements")

    def delete(self, ref: BlobRef) -> None:
        try:
            self._call(f"deleting {ref.name}", self.client.delete_object, Bucket=self.bucket, Key=self._key(ref.name))
        except BlobStoreUnavailableError:
            raise
        except Exception as e:
            raise BlobStoreUnavailableError(f"S3 {self.bucket}: deleting {ref.name}: {e}") from e

    # -- reading --

    def _get(self, key: str, what: str) -> bytes | None:
        try:
            response = self._call(f"reading {what}", self.client.get_object, Bucket=self.bucket, Key=key)
            return bytes(self._call(f"reading {what}", response["Body"].read))
        except BlobStoreUnavailableError:
            raise
        except Exception as e:
            if _status(e) == 404 or _code(e) in ("NoSuchKey", "404"):
                return None
            raise BlobStoreUnavailableError(f"S3 {self.bucket}: reading {what}: {e}") from e

    def latest_version(self) -> Version | None:
        raw = self._get(self._key(ANNOUNCED_VERSION_FILE), ANNOUNCED_VERSION_FILE)
        if raw is None:
            return None
        text = raw.decode("ascii", errors="replace").strip()
        if len(raw) > _ANNOUNCEMENT_BYTES_MAX or not text.lstrip("-").isdigit():
            raise BlobStoreUnavailableError(f"s3://{self.bucket}/{self._key(ANNOUNCED_VERSION_FILE)}: not a version")
        return Version(int(text))

    def _list(self, name_prefix: str) -> list[BlobRef]:
        refs: list[BlobRef] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._key(name_prefix)}
            if token:
                kwargs["ContinuationToken"] = token
            try:
                page = self._call("listing", self.client.list_objects_v2, **kwargs)
            except BlobStoreUnavailableError:
                raise
            except Exception as e:
                raise BlobStoreUnavailableError(f"S3 {self.bucket}: listing {name_prefix}: {e}") from e
            for obj in page.get("Contents", []):
                ref = parse_blob_name(str(obj["Key"])[len(self.prefix) :])
                if ref is not None:
                    refs.append(ref)
            if not page.get("IsTruncated"):
                return refs
            token = page.get("NextContinuationToken")

    def refs(self) -> list[BlobRef]:
        return self._list("")

    def __iter__(self) -> Iterator[BlobRef]:
        return iter(self.refs())

    def _exists(self, ref: BlobRef) -> bool:
        try:
            self._call(f"looking up {ref.name}", self.client.head_object, Bucket=self.bucket, Key=self._key(ref.name))
            return True
        except BlobStoreUnavailableError:
            raise
        except Exception as e:
            if _status(e) == 404 or _code(e) in ("NoSuchKey", "404", "NotFound"):
                return False
            raise BlobStoreUnavailableError(f"S3 {self.bucket}: looking up {ref.name}: {e}") from e

    def _load(self, ref: BlobRef) -> BlobData:
        data = self._get(self._key(ref.name), ref.name)
        if data is None:
            raise BlobStoreUnavailableError(f"s3://{self.bucket}/{self._key(ref.name)} vanished before it was read")
        return data

    def _blob(self, ref: BlobRef | None) -> Blob | None:
        return None if ref is None else Blob(ref, lambda: self._load(ref))

    def retrieve_snapshot(self, desired_version: Version) -> Blob | None:
        exact = BlobRef.snapshot(desired_version)
        if self._exists(exact):
            return self._blob(exact)
        return self._blob(pick_snapshot(self._list("snapshot-"), desired_version))

    def retrieve_delta(self, from_version: Version) -> Blob | None:
        return self._blob(pick_transition(self._list(f"delta-{from_version}-"), BlobType.DELTA, from_version))

    def retrieve_reverse_delta(self, from_version: Version) -> Blob | None:
        refs = self._list(f"reversedelta-{from_version}-")
        return self._blob(pick_transition(refs, BlobType.REVERSE_DELTA, from_version))

    def retrieve_header(self, version: Version) -> Blob | None:
        ref = BlobRef.header(version)
        return self._blob(ref) if self._exists(ref) else None

    def statistics(self) -> S3StoreStatistics:
        with self._lock:
            c = self._counts
            return S3StoreStatistics(c["published"], c["bytes"], c["announcements"], c["requests"], c["errors"])
