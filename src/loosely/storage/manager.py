"""All the logs of one data directory: topics, their partitions, configs, ids and checkpoints.

Data directory layout (Kafka's, plus one directory of our own)::

    <data>/
      .topics/<topic id>.json                {"name", "topic_id", "partitions", "configs", "internal"}; the truth
      <topic>-<partition>/                   one PartitionLog each
        00000000000000000000.log/.index/.timeindex/.keyindex
        partition.metadata                   Kafka's "version: 0 / topic_id: <base64>" file
      recovery-point-offset-checkpoint       offsets below which each log is known to be fsynced
      log-start-offset-checkpoint            each log's start offset (advanced by DeleteRecords)
      cleaner-offset-checkpoint              how far each compacted log has been cleaned
      .kafka_cleanshutdown                   present only while the broker is stopped cleanly
      .lock                                  flock'ed while open, holds the holder's PID (loosely.storage.dirlock)
      .trash-<uuid>/                         a deleted partition being removed

Creating a topic writes its ``.topics`` file (atomically) before its partition directories; deleting removes
that file first. So on start-up a partition directory without a topic file is the remains of an interrupted
create or delete and is removed, and a topic file is never without its partitions for long.

:meth:`LogManager.open` takes the directory's lock before reading anything and :meth:`LogManager.close` releases
it last, so every tool that writes a data directory through this class (the broker, the embedded broker, the
demo) excludes every other. Disk errors in housekeeping and checkpoints are reported to one
:class:`~loosely.storage.faults.StorageFaults` shared by all logs and never escape; a close that met one leaves no
clean-shutdown marker, so the next start re-validates the logs' tails.
"""

from __future__ import annotations

import base64
import json
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from loosely.protocol.errors import ErrorCode
from loosely.protocol.names import TopicPartition
from loosely.storage.checkpoint import read_checkpoint, write_checkpoint
from loosely.storage.clock import Clock, SystemClock
from loosely.storage.config import InvalidConfigError, LogConfig, resolve_log_config, validate_overrides
from loosely.storage.dirlock import DataDirLock
from loosely.storage.faults import StorageFaults
from loosely.storage.fs import FileSystem, OsFileSystem
from loosely.storage.log import LogError, PartitionLog, StorageError

__all__ = ["TOPIC_NAME_BYTES_MAX", "LogManager", "Topic", "validate_topic_name"]

TOPIC_NAME_BYTES_MAX: Final = 249  # Kafka's Topic.MAX_NAME_LENGTH
PARTITIONS_MAX: Final = 10_000  # a limit on everything: more than any single node should hold per topic
_LEGAL: Final = re.compile(r"^[a-zA-Z0-9._-]+$")
_TOPICS_DIR: Final = ".topics"
_CLEAN_SHUTDOWN: Final = ".kafka_cleanshutdown"
RECOVERY_POINTS: Final = "recovery-point-offset-checkpoint"
LOG_START_OFFSETS: Final = "log-start-offset-checkpoint"
CLEANER_OFFSETS: Final = "cleaner-offset-checkpoint"


def validate_topic_name(name: str) -> None:
    """Kafka's topic name rules; raises :class:`LogError` INVALID_TOPIC_EXCEPTION."""
    if not name:
        raise LogError(ErrorCode.invalid_topic_exception, "topic name is empty")
    if name in (".", ".."):
        raise LogError(ErrorCode.invalid_topic_exception, f"topic name cannot be {name!r}")
    if len(name) > TOPIC_NAME_BYTES_MAX:
        raise LogError(
            ErrorCode.invalid_topic_exception,
            f"topic name is {len(name)} characters, the limit is {TOPIC_NAME_BYTES_MAX}",
        )
    if not _LEGAL.match(name):
        raise LogError(
            ErrorCode.invalid_topic_exception,
            f"topic name {name!r} has characters other than ASCII alphanumerics, '.', '_' and '-'",
        )


@dataclass(slots=True)
class Topic:
    name: str
    topic_id: uuid.UUID
    overrides: dict[str, str]
    config: LogConfig
    logs: list[PartitionLog] = field(default_factory=list)
    internal: bool = False

    @property
    def partitions(self) -> int:
        return len(self.logs)


class LogManager:
    def __init__(
        self,
        data_dir: str,
        *,
        fs: FileSystem | None = None,
        clock: Clock | None = None,
        broker_defaults: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = os.path.abspath(data_dir)
        self.fs: FileSystem = fs or OsFileSystem()
        self.clock: Clock = clock or SystemClock()
        self.broker_defaults = dict(broker_defaults or {})
        self.topics: dict[str, Topic] = {}
        self._by_id: dict[uuid.UUID, Topic] = {}
        self.cleaner_offsets: dict[TopicPartition, int] = {}
        self.was_clean_shutdown = False
        self.faults = StorageFaults(self.clock)
        self.lock = DataDirLock(self.data_dir)
        self._open = False

    # --- start and stop ------------------------------------------------------------------------------------

    def open(self) -> None:
        """Lock the data directory and load every log; raises ``DataDirLockedError`` if another holds it."""
        assert not self._open, "LogManager.open() twice"
        self.fs.makedirs(self.data_dir)
        self.lock.acquire()
        try:
            self._load()
        except BaseException:
            self._close_all()
            self.lock.release()
            raise
        self._open = True

    def _load(self) -> None:
        fs = self.fs
        fs.makedirs(os.path.join(self.data_dir, _TOPICS_DIR))
        marker = os.path.join(self.data_dir, _CLEAN_SHUTDOWN)
        self.was_clean_shutdown = fs.exists(marker)
        recovery = read_checkpoint(fs, os.path.join(self.data_dir, RECOVERY_POINTS))
        starts = read_checkpoint(fs, os.path.join(self.data_dir, LOG_START_OFFSETS))
        self.cleaner_offsets = read_checkpoint(fs, os.path.join(self.data_dir, CLEANER_OFFSETS))
        if not self.was_clean_shutdown:
            recovery = {}  # trust nothing we did not just validate
        topics_dir = os.path.join(self.data_dir, _TOPICS_DIR)
        for name in fs.listdir(topics_dir):
            if not name.endswith(".json"):
                if name.endswith(".tmp"):
                    fs.remove(os.path.join(topics_dir, name))
                continue
            meta = json.loads(fs.read_file(os.path.join(topics_dir, name)))
            topic_name = str(meta["name"])
            overrides = {str(k): str(v) for k, v in meta["configs"].items()}
            t = Topic(
                topic_name,
                uuid.UUID(meta["topic_id"]),
                overrides,
                resolve_log_config(overrides, self.broker_defaults),
                internal=bool(meta.get("internal", False)),
            )
            for p in range(int(meta["partitions"])):
                tp = TopicPartition(topic_name, p)
                t.logs.append(self._open_log(t, p, recovery.get(tp, 0), starts.get(tp, 0)))
            self.topics[topic_name] = t
            self._by_id[t.topic_id] = t
        # Partition directories nobody owns: an interrupted create or delete.
        for name in fs.listdir(self.data_dir):
            topic, sep, part = name.rpartition("-")
            if sep and part.isdigit() and os.path.isdir(os.path.join(self.data_dir, name)):
                owner = self.topics.get(topic)
                if owner is None or int(part) >= owner.partitions:
                    fs.rmtree(os.path.join(self.data_dir, name))
            elif name.startswith(".trash-"):
                fs.rmtree(os.path.join(self.data_dir, name))
        if self.was_clean_shutdown:
            fs.remove(marker)
            fs.fsync_dir(self.data_dir)

    def _close_all(self) -> bool:
        clean = True
        for t in self.topics.values():
            for log in t.logs:
                clean = log.close() and clean
        return clean

    def _open_log(self, t: Topic, partition: int, recovery_point: int, log_start: int) -> PartitionLog:
        d = os.path.join(self.data_dir, f"{t.name}-{partition}")
        log = PartitionLog(
            self.fs,
            self.clock,
            d,
            t.config,
            recovery_point=recovery_point,
            log_start_offset=log_start,
            clean_shutdown=self.was_clean_shutdown,
            faults=self.faults,
        )
        meta_path = os.path.join(d, "partition.metadata")
        if not self.fs.exists(meta_path):
            tid = base64.urlsafe_b64encode(t.topic_id.bytes).decode().rstrip("=")
            self.fs.write_atomic(meta_path, f"version: 0\ntopic_id: {tid}\n".encode())
        return log

    def write_checkpoints(self) -> bool:
        """Write the three checkpoint files. A disk error is reported, not raised: returns False then."""
        try:
            self._write_checkpoints()
        except OSError as e:
            self.faults.report("checkpoints", "checkpoint", e)
            return False
        self.faults.resolved("checkpoints", "checkpoint")
        return True

    def _write_checkpoints(self) -> None:
        rec: dict[TopicPartition, int] = {}
        starts: dict[TopicPartition, int] = {}
        for t in self.topics.values():
            for p, log in enumerate(t.logs):
                tp = TopicPartition(t.name, p)
                rec[tp] = log.recovery_point
                starts[tp] = log.log_start_offset
        write_checkpoint(self.fs, os.path.join(self.data_dir, RECOVERY_POINTS), rec)
        write_checkpoint(self.fs, os.path.join(self.data_dir, LOG_START_OFFSETS), starts)
        live = {k: v for k, v in self.cleaner_offsets.items() if k[0] in self.topics}
        write_checkpoint(self.fs, os.path.join(self.data_dir, CLEANER_OFFSETS), live)

    def close(self) -> None:
        """Flush and close every log, checkpoint, mark the shutdown clean, release the lock.

        Disk errors on the way are reported; the clean-shutdown marker is written only if none happened, so after
        a close on a failing disk the next start re-validates instead of trusting what is there.
        """
        if not self._open:
            return
        try:
            clean = self._close_all()
            clean = self.write_checkpoints() and clean
            if clean:
                try:
                    self.fs.write_atomic(os.path.join(self.data_dir, _CLEAN_SHUTDOWN), b"")
                except OSError as e:
                    self.faults.report("checkpoints", "clean shutdown marker", e, "; the next start recovers")
        finally:
            self._open = False
            self.lock.release()

    # --- topics --------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Topic]:
        return iter(list(self.topics.values()))

    def get(self, name: str) -> Topic | None:
        return self.topics.get(name)

    def by_id(self, topic_id: uuid.UUID) -> Topic | None:
        return self._by_id.get(topic_id)

    def log(self, topic: str, partition: int) -> PartitionLog | None:
        t = self.topics.get(topic)
        if t is None or not 0 <= partition < len(t.logs):
            return None
        return t.logs[partition]

    def validate_new_topic(self, name: str, partitions: int, overrides: Mapping[str, str]) -> dict[str, str]:
        validate_topic_name(name)
        if name in self.topics:
            raise LogError(ErrorCode.topic_already_exists, f"topic {name!r} already exists")
        collides = name.replace(".", "_")
        for other in self.topics:
            if other.replace(".", "_") == collides:
                raise LogError(
                    ErrorCode.invalid_topic_exception,
                    f"topic {name!r} collides with existing topic {other!r} ('.' and '_' collide in metrics)",
                )
        if not 1 <= partitions <= PARTITIONS_MAX:
            raise LogError(
                ErrorCode.invalid_partitions, f"number of partitions must be in [1, {PARTITIONS_MAX}], got {partitions}"
            )
        try:
            return validate_overrides(overrides)
        except InvalidConfigError as e:
            raise LogError(ErrorCode.invalid_config, str(e)) from e

    def create_topic(
        self, name: str, partitions: int, overrides: Mapping[str, str] | None = None, *, internal: bool = False
    ) -> Topic:
        checked = self.validate_new_topic(name, partitions, overrides or {})
        t = Topic(name, uuid.uuid4(), checked, resolve_log_config(checked, self.broker_defaults), internal=internal)
        try:
            self._write_topic_meta(t, partitions)
            for p in range(partitions):
                t.logs.append(self._open_log(t, p, 0, 0))
            self.fs.fsync_dir(self.data_dir)
        except OSError as e:
            # A full disk: take back what was made and answer KAFKA_STORAGE_ERROR. Partition directories that
            # cannot be removed now are removed on the next start (nobody owns them); a topic file that cannot be
            # removed brings the topic back, empty, on the next start, as if the create had succeeded.
            for log in t.logs:
                log.close()
            try:
                self.fs.remove(os.path.join(self.data_dir, _TOPICS_DIR, f"{t.topic_id.hex}.json"))
                for p in range(partitions):
                    self.fs.rmtree(os.path.join(self.data_dir, f"{name}-{p}"))
            except OSError:
                pass
            self.faults.report(name, "create topic", e)
            raise StorageError(name, "create topic", e) from e
        self.topics[name] = t
        self._by_id[t.topic_id] = t
        return t

    def _write_topic_meta(self, t: Topic, partitions: int, overrides: Mapping[str, str] | None = None) -> None:
        meta = {
            "name": t.name,
            "topic_id": str(t.topic_id),
            "partitions": partitions,
            "configs": dict(t.overrides if overrides is None else overrides),
            "internal": t.internal,
        }
        # Named by id: a 249-character topic name plus ".json.tmp" would not fit in a file name.
        path = os.path.join(self.data_dir, _TOPICS_DIR, f"{t.topic_id.hex}.json")
        self.fs.write_atomic(path, json.dumps(meta, sort_keys=True).encode())

    def delete_topic(self, name: str) -> None:
        t = self.topics.get(name)
        if t is None:
            raise LogError(ErrorCode.unknown_topic_or_partition, f"topic {name!r} does not exist")
        try:
            # The topic file goes first: once it is gone the topic is deleted, whatever the rest of this does.
            self.fs.remove(os.path.join(self.data_dir, _TOPICS_DIR, f"{t.topic_id.hex}.json"))
        except OSError as e:
            self.faults.report(name, "delete topic", e)
            raise StorageError(name, "delete topic", e) from e
        try:
            self.fs.fsync_dir(os.path.join(self.data_dir, _TOPICS_DIR))
        except OSError as e:
            self.faults.report(name, "delete topic", e, "; a power loss now may bring the topic back")
        del self.topics[name]
        self._by_id.pop(t.topic_id, None)
        for p, log in enumerate(t.logs):
            for s in log.segments:
                s.close()
            self.cleaner_offsets.pop(TopicPartition(name, p), None)
            try:
                doomed = os.path.join(self.data_dir, f".trash-{uuid.uuid4().hex}")
                self.fs.rename(log.dir, doomed)
                self.fs.rmtree(doomed)
            except OSError as e:  # an unowned directory: the next start removes it (see the module docstring)
                self.faults.report(f"{name}-{p}", "delete topic", e, "; removed on the next start")

    def add_partitions(self, name: str, total: int) -> Topic:
        t = self.topics.get(name)
        if t is None:
            raise LogError(ErrorCode.unknown_topic_or_partition, f"topic {name!r} does not exist")
        if total <= t.partitions:
            raise LogError(
                ErrorCode.invalid_partitions,
                f"topic {name!r} has {t.partitions} partitions; the new count {total} must be larger",
            )
        if total > PARTITIONS_MAX:
            raise LogError(ErrorCode.invalid_partitions, f"at most {PARTITIONS_MAX} partitions per topic")
        try:
            for p in range(t.partitions, total):
                self._open_log(t, p, 0, 0).close()  # the directories first: an error leaves the topic as it was
            self._write_topic_meta(t, total)
        except OSError as e:
            self.faults.report(name, "add partitions", e)
            raise StorageError(name, "add partitions", e) from e
        for p in range(t.partitions, total):
            t.logs.append(self._open_log(t, p, 0, 0))
        return t

    def set_overrides(self, name: str, overrides: Mapping[str, str]) -> Topic:
        """Replace a topic's config overrides (AlterConfigs semantics) and apply them to its logs."""
        t = self.topics.get(name)
        if t is None:
            raise LogError(ErrorCode.unknown_topic_or_partition, f"topic {name!r} does not exist")
        try:
            checked = validate_overrides(overrides)
        except InvalidConfigError as e:
            raise LogError(ErrorCode.invalid_config, str(e)) from e
        try:
            self._write_topic_meta(t, t.partitions, checked)  # on disk first: a full disk leaves the old configs
        except OSError as e:
            self.faults.report(name, "alter configs", e)
            raise StorageError(name, "alter configs", e) from e
        t.overrides = checked
        t.config = resolve_log_config(checked, self.broker_defaults)
        for log in t.logs:
            log.config = t.config
        return t

    def set_broker_defaults(self, broker_defaults: Mapping[str, str]) -> None:
        """Replace the broker-level topic defaults (dynamic broker configs) and re-resolve every topic's config:
        retention, rolling and the rest follow at once wherever no topic override says otherwise. Nothing is
        written: the broker keeps its dynamic configs itself."""
        self.broker_defaults = dict(broker_defaults)
        for t in self.topics.values():
            t.config = resolve_log_config(t.overrides, self.broker_defaults)
            for log in t.logs:
                log.config = t.config

    # --- housekeeping --------------------------------------------------------------------------------------

    def tick(self) -> int:
        """Time-based work for every log: roll idle segments, apply retention, flush.ms. Returns segments deleted."""
        deleted = 0
        for t in list(self.topics.values()):
            for log in t.logs:
                deleted += log.housekeeping()
        return deleted

    def flush_due(self) -> None:
        """``flush.ms`` for every log (the broker calls this every second); disk errors are reported, not raised."""
        for t in list(self.topics.values()):
            for log in t.logs:
                log.housekeeping_flush()
