"""Sinks chosen by URL, so the command line and configuration files name them in one string.

=============================================  =========================================================
``sqlite:///abs/path.db`` / ``sqlite:rel.db``   :class:`~loosely.views.SqliteSink` (``?search=title,body`` adds FTS5)
``postgresql://user@host:port/db``              :class:`~loosely.views.PostgresSink`
``dir:///abs/path``                             JSON documents per key in a directory
``s3://bucket/prefix?endpoint=http://h:p``      JSON documents per key in an S3 bucket
``sphinx://host:port/index?fields=title,body``  Sphinx real-time index over SphinxQL (its catalog in the index)
``prometheus://host:port``                      gauges on a Prometheus endpoint this process serves
``influxdb://host:port/database``               InfluxDB line protocol points (its catalog in the database)
``hollow:///abs/dir?interval_ms=2000``          a Hollow dataset in a filesystem blob store
``hollow+s3://bucket/prefix?endpoint=...``      a Hollow dataset in an S3 blob store
=============================================  =========================================================

>>> open_sink("sqlite::memory:").guarantee
<Guarantee.EXACTLY_ONCE: 'exactly-once'>
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from loosely.views._sink import Sink
from loosely.views._sqlite import SqliteSink

__all__ = ["open_sink"]


def _fields(q: dict[str, list[str]], name: str) -> tuple[str, ...]:
    raw = q.get(name, [""])[0]
    return tuple(f for f in raw.split(",") if f)


def open_sink(url: str, **options: Any) -> Sink:
    """The sink a URL names; ``options`` go to its constructor."""
    scheme, _, rest = url.partition(":")
    parsed = urllib.parse.urlsplit(url)
    q = urllib.parse.parse_qs(parsed.query)
    if scheme == "sqlite":
        path = rest.split("?", 1)[0]
        if path.startswith("///"):
            path = path[2:]
        elif path.startswith("//"):
            raise ValueError(f"{url}: use sqlite:///absolute/path or sqlite:relative/path")
        return SqliteSink(path, search=_fields(q, "search"), **options)
    if scheme in ("postgresql", "postgres"):
        from loosely.views._postgres import PostgresSink  # noqa: PLC0415 - optional dependency (psycopg)

        return PostgresSink(url.split("?", 1)[0], **options)
    if scheme == "dir":
        from loosely.views._documents import DirectoryStore, DocumentSink  # noqa: PLC0415

        return DocumentSink(DirectoryStore(parsed.path), **options)
    if scheme == "s3":
        from loosely.views._documents import DocumentSink, S3Store  # noqa: PLC0415 - optional dependency (boto3)

        endpoint = q.get("endpoint", [None])[0]
        return DocumentSink(S3Store(parsed.netloc, parsed.path.strip("/"), endpoint_url=endpoint), **options)
    if scheme == "sphinx":
        from loosely.views._sphinx import SphinxSink  # noqa: PLC0415 - optional dependency (pymysql)

        return SphinxSink(parsed.hostname or "127.0.0.1", parsed.port or 9306, parsed.path.strip("/"),
                          fields=_fields(q, "fields"), **options)
    if scheme == "prometheus":
        from loosely.views._prometheus import PrometheusSink  # noqa: PLC0415

        return PrometheusSink(parsed.hostname or "127.0.0.1", parsed.port or 0, **options)
    if scheme == "influxdb":
        from loosely.views._influx import InfluxSink  # noqa: PLC0415

        host = f"http://{parsed.hostname or '127.0.0.1'}:{parsed.port or 8086}"
        return InfluxSink(host, parsed.path.strip("/"), **options)
    if scheme in ("hollow", "hollow+s3"):
        from loosely.views._hollow import HollowSink  # noqa: PLC0415 - the Hollow engine only when asked

        if "interval_ms" in q:
            options.setdefault("publish_interval_ms", int(q["interval_ms"][0]))
        if scheme == "hollow":
            from loosely.hollow.api import FilesystemBlobStore  # noqa: PLC0415

            return HollowSink(FilesystemBlobStore(parsed.path), **options)
        from loosely.hollow.api import S3BlobStore  # noqa: PLC0415 - optional dependency (boto3)

        endpoint = q.get("endpoint", [None])[0]
        return HollowSink(S3BlobStore(parsed.netloc, parsed.path.strip("/"), endpoint_url=endpoint), **options)
    raise ValueError(f"unknown sink URL {url!r}; see loosely.views._urls for the schemes")
