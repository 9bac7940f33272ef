"""Hollow producer and consumer lifecycle, on top of :mod:`loosely.hollow.core`.

Single producer, many consumers: a :class:`Producer` runs cycles (populate, publish snapshot / delta / reverse
delta / header, integrity check, validators, announce; rollback on failure) and a :class:`Consumer` loads the
announced version and follows it (deltas, reverse deltas to pin older versions, double snapshots when no delta
chain reaches), serving the last good version while the store is unreachable or a blob is corrupt.

Storage is reached through four small interfaces -- :class:`Publisher`, :class:`Announcer`,
:class:`BlobRetriever`, :class:`AnnouncementWatcher` -- implemented by:

* :class:`FilesystemBlobStore`: one directory with Java Hollow's file names (Java consumers read it, and the
  other way round), atomic writes;
* :class:`S3BlobStore`: S3-compatible object storage (boto3);
* :class:`InMemoryBlobStore`: for tests;
* :class:`KafkaAnnouncer` / :class:`KafkaAnnouncementWatcher`: announcements on a compacted topic, with leader
  election among producers and fencing of a deposed leader.

Consumer-side indexes follow the consumer through deltas: :class:`HashIndex`, :class:`UniqueKeyIndex`,
:class:`PrefixIndex`.  Tools: :func:`dump_records`, :func:`diff_states` / :func:`diff_versions`,
:func:`record_history`, :func:`add_json`.
"""

from loosely.hollow.api._blobs import (
    Blob,
    BlobIntegrityError,
    BlobRef,
    BlobType,
    Version,
)
from loosely.hollow.api._clock import (
    AlwaysLeader,
    Clock,
    LeaderElection,
    ManualLeader,
    SystemClock,
    TimestampVersionMinter,
    VersionMinter,
)
from loosely.hollow.api._consumer import (
    Consumer,
    ConsumerStatistics,
    DeltaApplied,
    RefreshError,
    RefreshEvent,
    RefreshFailed,
    RefreshListener,
    RefreshStarted,
    RefreshSucceeded,
    SnapshotLoaded,
)
from loosely.hollow.api._cycle import Stage
from loosely.hollow.api._filesystem import FilesystemBlobStore
from loosely.hollow.api._incremental import IncrementalWriteState
from loosely.hollow.api._indexes import HashIndex, PrefixIndex, UniqueKeyIndex
from loosely.hollow.api._interfaces import (
    AnnouncementWatcher,
    Announcer,
    BlobConflictError,
    BlobRetriever,
    BlobStoreUnavailableError,
    NotLeaderError,
    Publisher,
)
from loosely.hollow.api._kafka import KafkaAnnouncementWatcher, KafkaAnnouncer, KafkaAnnouncerStatistics
from loosely.hollow.api._memory import InMemoryBlobStore
from loosely.hollow.api._planning import UpdatePlan, load_version, plan_update
from loosely.hollow.api._producer import (
    BlobPublished,
    ChecksumMismatchError,
    CycleCompleted,
    CycleMetrics,
    CycleStarted,
    CycleStatus,
    Producer,
    ProducerEvent,
    ProducerListener,
    ProducerStatistics,
    Restored,
    StageCompleted,
    WriteState,
)
from loosely.hollow.api._s3 import S3BlobStore
from loosely.hollow.api._tools import (
    Change,
    HistoryEntry,
    TypeDiff,
    add_json,
    diff_states,
    diff_versions,
    dump_records,
    record_history,
    record_json,
)
from loosely.hollow.api._validators import (
    DuplicatePrimaryKeyValidator,
    MinimumRecordCountValidator,
    RecordCountChangeValidator,
    ValidationContext,
    ValidationError,
    ValidationResult,
    Validator,
)

__all__ = [
    "AlwaysLeader",
    "AnnouncementWatcher",
    "Announcer",
    "Blob",
    "BlobConflictError",
    "BlobIntegrityError",
    "BlobPublished",
    "BlobRef",
    "BlobRetriever",
    "BlobStoreUnavailableError",
    "BlobType",
    "Change",
    "ChecksumMismatchError",
    "Clock",
    "Consumer",
    "ConsumerStatistics",
    "CycleCompleted",
    "CycleMetrics",
    "CycleStarted",
    "CycleStatus",
    "DeltaApplied",
    "DuplicatePrimaryKeyValidator",
    "FilesystemBlobStore",
    "HashIndex",
    "HistoryEntry",
    "InMemoryBlobStore",
    "IncrementalWriteState",
    "KafkaAnnouncementWatcher",
    "KafkaAnnouncer",
    "KafkaAnnouncerStatistics",
    "LeaderElection",
    "ManualLeader",
    "MinimumRecordCountValidator",
    "NotLeaderError",
    "PrefixIndex",
    "Producer",
    "ProducerEvent",
    "ProducerListener",
    "ProducerStatistics",
    "Publisher",
    "RecordCountChangeValidator",
    "RefreshError",
    "RefreshEvent",
    "RefreshFailed",
    "RefreshListener",
    "RefreshStarted",
    "RefreshSucceeded",
    "Restored",
    "S3BlobStore",
    "SnapshotLoaded",
    "Stage",
    "StageCompleted",
    "SystemClock",
    "TimestampVersionMinter",
    "TypeDiff",
    "UniqueKeyIndex",
    "UpdatePlan",
    "ValidationContext",
    "ValidationError",
    "ValidationResult",
    "Validator",
    "Version",
    "VersionMinter",
    "WriteState",
    "add_json",
    "diff_states",
    "diff_versions",
    "dump_records",
    "load_version",
    "plan_update",
    "record_history",
    "record_json",
]
