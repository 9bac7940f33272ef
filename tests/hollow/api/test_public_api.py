"""The public surface of loosely.hollow.api is exactly this list; changing it is a deliberate act."""

from __future__ import annotations

from loosely.hollow import api

PUBLIC = [
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


def test_all_is_pinned() -> None:
    assert sorted(api.__all__) == PUBLIC


def test_every_public_name_resolves() -> None:
    for name in api.__all__:
        assert getattr(api, name) is not None, name


def test_classes_and_functions_are_documented() -> None:
    for name in api.__all__:
        obj = getattr(api, name)
        if isinstance(obj, type) and obj.__module__.startswith("loosely.hollow.api"):
            assert obj.__doc__, f"{name} has no docstring"
