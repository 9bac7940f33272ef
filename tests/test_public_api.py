"""One public-API convention for every package: its ``__init__`` states its surface in ``__all__``, pinned here.

Changing a package's surface is a deliberate act: edit its ``__all__`` and this file together. A package is one of
two kinds, and both follow the same rule:

* a *facade* (hollow.core, hollow.api, views, registry, tls, testing, ...) keeps its code in private ``_modules``
  and re-exports its surface: ``__all__`` names those objects, and each must resolve;
* a *room of modules* (broker, storage, clients, security, cli, ...) whose modules are the API: ``__all__`` names
  its public submodules, all of them, so a new module is listed on purpose (and documented in the package's
  docstring).

A new package fails :func:`test_every_package_is_pinned` until its pin is added below.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import loosely

# loosely.protocol is being reworked by issue 19 step 1 (one primitive codec); its __all__ and pin come with that work.
NOT_YET = {"loosely.protocol"}

PINS: dict[str, list[str]] = {
    "loosely": [
        "__version__",
    ],
    "loosely.console": ["Cluster", "ConsoleError", "ConsoleServer", "KeyLookup", "SearchProgress", "SearchQuery",
                        "create_app"],
    "loosely.demo": ["Catalog", "ChangeStream", "Demo", "DemoConfig", "DocumentSite", "HollowReader", "movie_document"],
    "loosely.broker": [
        "acls",
        "config",
        "config_doc",
        "context",
        "extensions",
        "groups",
        "handlers",
        "internal",
        "key_search",
        "metrics",
        "producers",
        "quotas",
        "scrubber",
        "server",
        "transactions",
    ],
    "loosely.broker.groups": [
        "classic",
        "consumer",
        "consumer_shell",
        "coordinator",
        "records",
        "store",
    ],
    "loosely.broker.handlers": [
        "all_handlers",
    ],
    "loosely.broker.transactions": [
        "coordinator",
        "records",
        "state",
    ],
    "loosely.cli": [
        "acls_cmd",
        "admin",
        "console_cmd",
        "demo",
        "hollow_cmd",
        "hollow_raw_cmd",
        "kcat",
        "log_cmd",
        "main",
        "mirror_cmd",
        "registry_cmd",
        "security_cmd",
        "top",
        "users_cmd",
        "views_cmd",
    ],
    "loosely.cli.kcat": [
        "Conf",
        "Fatal",
        "UsageError",
        "main",
        "parse_args",
    ],
    "loosely.clients": [
        "access",
        "client_config",
        "fastpath",
        "groups",
        "kcat_format",
        "mirror",
        "mm2",
        "partitioner",
        "reachability",
    ],
    "loosely.hollow": [
        "api",
        "core",
        "raw",
    ],
    "loosely.hollow.raw": [
        "ANY", "BulkResult", "ConditionFailed", "ConsistencyTimeout", "Dataset", "Delete", "NotLeaderError", "Put",
        "RawClient", "RawClientStatistics", "RawProducer", "RawProducerStatistics", "RawVersion", "RemoteWriter",
        "Token", "VERSION_TYPE", "WriteError", "WriteResult", "Writer", "WriterServer", "WriterStatistics",
    ],
    "loosely.hollow.api": [
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
    ],
    "loosely.hollow.core": [
        "BlobHeader",
        "BlobKind",
        "BlobParts",
        "Char",
        "Checksum",
        "Column",
        "FieldType",
        "Float32",
        "Float64",
        "GenericList",
        "GenericMap",
        "GenericObject",
        "GenericRecord",
        "GenericSet",
        "HashKey",
        "HollowBlobError",
        "HollowBlobTruncatedError",
        "HollowDeltaOriginError",
        "HollowError",
        "HollowMappingError",
        "HollowSchemaError",
        "HollowUnsupportedBlobError",
        "HollowWriteError",
        "INLINE",
        "Int16",
        "Int32",
        "Int64",
        "Int8",
        "JavaType",
        "ListSchema",
        "MapSchema",
        "ObjectField",
        "ObjectMapper",
        "ObjectSchema",
        "PrimaryKeyIndex",
        "ReadStateEngine",
        "Records",
        "Schema",
        "SchemaKind",
        "SetSchema",
        "Shards",
        "TRANSIENT",
        "TypeChanges",
        "TypeName",
        "TypeNamed",
        "TypeReadState",
        "TypedReader",
        "UpdateEvent",
        "UpdateKind",
        "WriteStateEngine",
        "column",
        "deep_dump",
        "dump_state",
        "hollow_type",
        "parse_blob_header",
        "parse_schemas",
        "schema_hash",
        "schemas_to_text",
        "with_header_tags",
    ],
    "loosely.registry": [
        "KafkaStore",
        "REQUEST_BYTES_MAX",
        "Reference",
        "RegistryError",
        "RegistryServer",
        "RegistryState",
        "RegistryStatistics",
        "SchemaRegistry",
        "SchemaVersion",
    ],
    "loosely.security": [
        "authorizer",
        "credentials",
        "jaas",
        "jwt",
        "oauthbearer",
        "passwords",
        "plain",
        "sasl",
        "scram",
    ],
    "loosely.storage": [
        "checkpoint",
        "cleaner",
        "clock",
        "config",
        "dirlock",
        "faults",
        "fs",
        "index",
        "keyindex",
        "log",
        "manager",
        "retention",
        "segment",
        "verify",
    ],
    "loosely.testing": [
        "ApacheKafka",
        "FakeClock",
        "FaultyFileSystem",
        "InjectedFault",
        "embedded_broker",
        "embedded_schema_registry",
        "ensure_kafka_jars",
        "free_port",
    ],
    "loosely.tls": [
        "ANONYMOUS",
        "NoMatchingRuleError",
        "PrincipalRule",
        "SSL_SETTINGS",
        "ServerContexts",
        "TlsSettings",
        "build_server_context",
        "map_principal",
        "parse_rules",
        "principal_from_certificate",
        "rfc2253_name",
        "tls_settings",
    ],
    "loosely.views": [
        "Add",
        "BYTES",
        "Batch",
        "Catalog",
        "Change",
        "Delete",
        "Deserializer",
        "Fenced",
        "Follower",
        "Guarantee",
        "HollowSink",
        "JSON",
        "Json",
        "PoisonRecord",
        "PostgresSink",
        "Put",
        "Record",
        "Runner",
        "RunnerConfig",
        "RunnerStatistics",
        "STRING",
        "Serde",
        "Sink",
        "SinkError",
        "SinkStatistics",
        "SqliteSink",
        "StatusRow",
        "TopicPartition",
        "VersionDropped",
        "VersionInfo",
        "VersionState",
        "View",
        "ViewError",
        "ViewId",
        "ViewServer",
        "count_by_key",
        "default_groups",
        "fold_versioned",
        "group_id_for",
        "latest_by_key",
        "net_changes",
        "open_sink",
        "rebuild",
        "view_status",
    ],
}

PACKAGES = sorted(
    {"loosely"} | {m.name for m in pkgutil.walk_packages(loosely.__path__, "loosely.") if m.ispkg} - NOT_YET
)


def _public_submodules(package: str) -> set[str]:
    mod = importlib.import_module(package)
    return {m.name for m in pkgutil.iter_modules(mod.__path__) if not m.name.startswith("_")}


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_is_pinned(package: str) -> None:
    mod = importlib.import_module(package)
    assert "__all__" in vars(mod), f"{package}/__init__.py states no __all__"
    assert package in PINS, f"{package} is not pinned: add its __all__ to PINS in {__file__}"
    assert sorted(mod.__all__) == PINS[package]


@pytest.mark.parametrize("package", PACKAGES)
def test_public_names_resolve_and_a_room_lists_all_its_modules(package: str) -> None:
    mod = importlib.import_module(package)
    submodules = _public_submodules(package)
    for name in mod.__all__:
        assert not name.startswith("_") or name == "__version__", f"{package}: private name {name} in __all__"
        if name in submodules:
            importlib.import_module(f"{package}.{name}")
        else:
            assert getattr(mod, name) is not None, f"{package}.{name}"
    if submodules & set(mod.__all__):  # a room of modules: every public module listed
        assert submodules <= set(mod.__all__), f"{package}: modules missing from __all__"
