"""Read-after-write Hollow over the log: writes through Kafka, reads from memory, strong consistency on request.

An open take on Netflix's RAW Hollow. A :class:`Dataset` is a set of Hollow types with primary keys (the object
mapper's ``@hollow_type(primary_key=...)`` dataclasses), the compacted topic ``<name>.changes`` of their upserts
and deletes, and a blob store for Hollow versions. Three roles work on it, each in any number of processes:

* :class:`Writer` -- the elected, fenced serialization point: ``put``, ``delete``, ``bulk`` (one transaction, all
  or nothing), conditional on the version a record has (``if_version``); a write returns once committed, with
  its version (the log offset of its record) and a :class:`Token`. Standbys take over when it dies. Other
  services reach it over HTTP (:class:`WriterServer`, :class:`RemoteWriter`).
* :class:`RawProducer` -- folds the topic into ordinary Hollow snapshots and deltas, exactly once (the log
  positions each version holds are in its header); Java's ``HollowConsumer`` reads them unchanged. Any number
  may run: they elect one on the log, the others stand by, and a deposed one is fenced.
* :class:`RawClient` -- a Hollow consumer plus an overlay of the changes tailed since its version: ``get`` is
  eventual by default, ``consistency="strong"`` is linearizable per key, ``after=token`` reads your writes.

The public API (details in ``docs/raw-hollow.md``)::

    Dataset(name, types, *, bootstrap_servers, blob_store, client_config=None, partitions=1, replication_factor=-1)
    Writer(dataset, *, http_address=None, session_timeout_ms=6000, ...)   .start() .close() .is_leader()
        .wait_for_leadership(ms) .leader_address() .version_of(type, key) .statistics()
        .put(record, *, if_version=ANY, if_content=ANY) -> WriteResult(version, token)
        .delete(type, key, *, if_version=ANY, if_content=ANY) -> WriteResult
        .bulk([Put(record, if_version, if_content), Delete(type_name, key_tuple, if_version, if_content), ...])
            -> BulkResult(versions, token)
        if_version: ANY (default), None (only if absent) or an int version; if_content: ANY, None (absent) or the
        record the current one must equal; errors: ConditionFailed(current_version), NotLeaderError(leader),
        WriteError(uncertain)
    WriterServer(writer, host="127.0.0.1", port=0).start() .url .close()     POST /put /delete /bulk, GET /leader
    RemoteWriter(url_or_urls, dataset, *, timeout_ms=10000)   .put .delete .bulk (as Writer) .leader() .close()
    RawProducer(dataset, *, cycle_interval_ms=1000, max_pending=10000, snapshot_every_cycles=10,
                session_timeout_ms=6000, heartbeat_interval_ms=1000, election_timeout_ms=30000)
        .start() .close() .open() .catch_up() .run_cycle() .is_leader() .version .statistics()
    RawClient(dataset, *, timeout_ms=5000, refresh_interval_ms=500, freshness_interval_ms=200)   .start() .close()
        .get(type, key, *, consistency="eventual"|"strong", after=token, timeout_ms=None) -> record | None
        .get_versioned(...) -> (record | None, version | None)
        .find(type, *, consistency, after, timeout_ms, **field_values) -> [record]   .records(type, ...) -> [record]
        .wait_for(token_or_ends) .sync() .staleness_ms .reached() .version .statistics()
        errors: ConsistencyTimeout
    Token(offsets)   str(token) / Token.parse(text) / token.merge(other)

``type`` is a class of the dataset or its Hollow type name; ``key`` a tuple of primary key values, or the value
of a one-field key.

>>> import tempfile
>>> from dataclasses import dataclass
>>> from loosely.hollow.core import hollow_type
>>> from loosely.testing import embedded_broker
>>> @hollow_type(primary_key=("id",))
... @dataclass
... class Movie:
...     id: int
...     title: str
>>> with embedded_broker() as broker:
...     ds = Dataset("movies", [Movie], bootstrap_servers=broker.bootstrap_servers, blob_store=tempfile.mkdtemp())
...     with Writer(ds) as writer, RawClient(ds) as client:
...         _ = writer.wait_for_leadership(30_000)
...         written = writer.put(Movie(1, "Heat"))
...         client.get(Movie, 1, after=written.token)
Movie(id=1, title='Heat')
"""

from loosely.hollow.raw._client import ConsistencyTimeout, RawClient, RawClientStatistics
from loosely.hollow.raw._codec import Token
from loosely.hollow.raw._dataset import VERSION_TYPE, Dataset, RawVersion
from loosely.hollow.raw._http import RemoteWriter, WriterServer
from loosely.hollow.raw._producer import RawProducer, RawProducerStatistics
from loosely.hollow.raw._writer import (
    ANY,
    BulkResult,
    ConditionFailed,
    Delete,
    NotLeaderError,
    Put,
    WriteError,
    Writer,
    WriteResult,
    WriterStatistics,
)

__all__ = [
    "ANY",
    "VERSION_TYPE",
    "BulkResult",
    "ConditionFailed",
    "ConsistencyTimeout",
    "Dataset",
    "Delete",
    "NotLeaderError",
    "Put",
    "RawClient",
    "RawClientStatistics",
    "RawProducer",
    "RawProducerStatistics",
    "RawVersion",
    "RemoteWriter",
    "Token",
    "WriteError",
    "WriteResult",
    "Writer",
    "WriterServer",
    "WriterStatistics",
]
