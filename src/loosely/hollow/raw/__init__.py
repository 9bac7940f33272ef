"""Read-after-write Hollow over the log: writes through Kafka, reads from memory, strong consistency on request.

An open take on Netflix's RAW Hollow. A :class:`Dataset` is a set of Hollow types with primary keys (the object
mapper's ``@hollow_type(primary_key=...)`` dataclasses), the compacted topic ``<name>.changes`` of their upserts
and deletes, and a blob store for Hollow versions. Three roles work on it, each in any number of processes:

* :class:`Writer` -- the elected, fenced serialization point: ``put``, ``delete``, ``bulk`` (one transaction, all
  or nothing), conditional on the version a record has (``if_version``); a write returns once committed, with
  its version (the log offset of its record) and a :class:`Token`. Standbys take over when it dies. Other
  services reach it over HTTP (:class:`WriterServer`, :class:`RemoteWriter`).
* :class:`RawProducer` -- folds the topic into ordinary Hollow snapshots and deltas, exactly once (the log
  positions each version holds are in its header); Java's ``HollowConsumer`` reads them unchanged.
* :class:`RawClient` -- a Hollow consumer plus an overlay of the changes tailed since its version: ``get`` is
  eventual by default, ``consistency="strong"`` is linearizable per key, ``after=token`` reads your writes.

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
