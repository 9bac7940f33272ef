"""A dataset: Hollow types with primary keys, the compacted topic of their changes, and a blob store.

Topics (created on first use, compacted):

    <name>.changes   ``partitions`` partitions: every write, keyed by ``["Type",[key...]]`` (see ``_codec``)
    <name>.writer    one partition: the writer election (its consumer group) and the leader's address
    <name>.producer  one partition: the producer election (its consumer group) and, written only in the elected
                     producer's fenced transactions, the announced version (see ``_producer``)

Besides the user's types, every published Hollow version holds one more type, :data:`VERSION_TYPE`
(``RawVersion @PrimaryKey(key) { string key; long offset; }``): the log offset -- the *version* -- of each
record, so a client can answer ``get_versioned`` from memory. Java consumers see it as an ordinary type.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final

from loosely.hollow.api import BlobStoreUnavailableError, FilesystemBlobStore
from loosely.hollow.core import INLINE, Int64, ObjectMapper, hollow_type
from loosely.hollow.raw._codec import key_json, key_partition

__all__ = ["VERSION_TYPE", "Dataset", "RawVersion"]

VERSION_TYPE: Final = "RawVersion"
POSITIONS_TAG: Final = "loosely.raw.positions"
DATASET_TAG: Final = "loosely.raw.dataset"


@hollow_type(name=VERSION_TYPE, primary_key=("key",))
@dataclass(frozen=True, slots=True)
class RawVersion:
    """The log offset that set the record with this canonical key."""

    key: Annotated[str, INLINE]
    offset: Int64


class Dataset:
    """Where a read-after-write Hollow dataset lives and what it holds.

    ``types``: ``@hollow_type(primary_key=...)`` dataclasses (or NamedTuples); ``blob_store``: a directory or a
    store object (publisher, announcer, retriever and watcher in one, such as ``FilesystemBlobStore``);
    ``client_config``: librdkafka settings for every client (security, ...); ``replication_factor`` -1 takes
    the cluster's default.
    """

    def __init__(
        self,
        name: str,
        types: Iterable[type],
        *,
        bootstrap_servers: str,
        blob_store: Any,
        client_config: Mapping[str, str] | None = None,
        partitions: int = 1,
        replication_factor: int = -1,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self.name = name
        self.types = list(types)
        self.bootstrap_servers = bootstrap_servers
        self.blob_store = (FilesystemBlobStore(blob_store) if isinstance(blob_store, str | os.PathLike)
                           else blob_store)
        self.client_config = dict(client_config or {})
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.mapper = ObjectMapper()
        self._by_name: dict[str, type] = {}
        self._keys: dict[type, tuple[str, ...]] = {}
        for cls in self.types:
            schema = self.mapper.schema(cls)
            if not schema.primary_key:
                raise ValueError(f"type {schema.name} has no primary key: use @hollow_type(primary_key=...)")
            if schema.name == VERSION_TYPE:
                raise ValueError(f"the type name {VERSION_TYPE} is taken by the dataset itself")
            self._by_name[schema.name] = cls
            self._keys[cls] = tuple(schema.primary_key)
        self._topics_ready = False

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, {sorted(self._by_name)})"

    @property
    def changes_topic(self) -> str:
        return f"{self.name}.changes"

    @property
    def writer_topic(self) -> str:
        return f"{self.name}.writer"

    @property
    def producer_topic(self) -> str:
        return f"{self.name}.producer"

    @property
    def announce_namespace(self) -> str:
        """The producer election's namespace on :attr:`producer_topic`: its consumer group is
        ``hollow-leader-raw-<name>``, its transactional id ``hollow-raw-<name>`` (``raw-`` keeps them apart from a
        plain Hollow producer's ``KafkaAnnouncer`` of the same name)."""
        return f"raw-{self.name}"

    @property
    def type_names(self) -> list[str]:
        return list(self._by_name)

    def type_of(self, type_name: str) -> type:
        try:
            return self._by_name[type_name]
        except KeyError:
            raise ValueError(f"dataset {self.name} has no type {type_name!r} (it has "
                             f"{', '.join(sorted(self._by_name))})") from None

    def type_name(self, cls: type) -> str:
        if cls not in self._keys:
            raise ValueError(f"{cls.__name__} is not a type of dataset {self.name}")
        return self.mapper.type_name(cls)

    def key_of(self, record: object) -> tuple[str, tuple[object, ...]]:
        """``(type name, primary key values)`` of a record."""
        cls = type(record)
        name = self.type_name(cls)
        return name, tuple(_attr_path(record, p) for p in self._keys[cls])

    def key_fields(self, type_name: str) -> tuple[str, ...]:
        return self._keys[self.type_of(type_name)]

    def key_bytes(self, type_name: str, key: tuple[object, ...]) -> bytes:
        self.type_of(type_name)
        return key_json(type_name, key)

    def partition_of(self, key: bytes) -> int:
        return key_partition(key, self.partitions)

    def config(self, **settings: Any) -> dict[str, Any]:
        """librdkafka settings: the bootstrap servers, ``settings``, then the dataset's ``client_config``."""
        return {"bootstrap.servers": self.bootstrap_servers, **settings, **self.client_config}

    def ensure_topics(self, timeout_ms: int = 30_000) -> None:
        """Create the three topics unless they exist; a changes topic with another partition count is an error."""
        if self._topics_ready:
            return
        from confluent_kafka import KafkaException  # noqa: PLC0415 - only the log-facing classes need it
        from confluent_kafka.admin import (  # type: ignore[attr-defined,unused-ignore]  # noqa: PLC0415
            AdminClient,
            NewTopic,
        )

        admin = AdminClient(self.config())
        compact = {"cleanup.policy": "compact"}
        wanted = [NewTopic(self.changes_topic, self.partitions, self.replication_factor, config=compact),
                  NewTopic(self.writer_topic, 1, self.replication_factor, config=compact),
                  NewTopic(self.producer_topic, 1, self.replication_factor, config=compact)]
        deadline = time.monotonic() + timeout_ms / 1000
        for topic, future in admin.create_topics(wanted, request_timeout=timeout_ms / 1000).items():
            try:
                future.result(max(0.1, deadline - time.monotonic()))
            except KafkaException as e:
                if e.args and getattr(e.args[0], "name", lambda: "")() == "TOPIC_ALREADY_EXISTS":
                    continue
                raise BlobStoreUnavailableError(f"dataset {self.name}: cannot create topic {topic}: {e}") from e
        meta = admin.list_topics(self.changes_topic, timeout=max(0.1, deadline - time.monotonic()))
        found = meta.topics.get(self.changes_topic)
        if found is not None and found.partitions and len(found.partitions) != self.partitions:
            raise ValueError(f"topic {self.changes_topic} has {len(found.partitions)} partitions, the dataset "
                             f"says {self.partitions}")
        self._topics_ready = True


def _attr_path(obj: object, path: str) -> object:
    value = obj
    for part in path.split("."):
        value = getattr(value, part)
    return value
