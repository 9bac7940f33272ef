"""The talk's system in one process: the log, a write side, five read sides, and the scripted scenarios.

Theory of operation. Everything is a client of the embedded broker, as separate services would be:

* the catalog is a read-after-write Hollow dataset (``loosely.hollow.raw``): its log is the topic
  ``movies.changes``, written only by the dataset's elected, fenced :class:`~loosely.hollow.raw.Writer`;
* the **write service** (:class:`~loosely.demo._catalog.Catalog`) only hands writes to that writer, which appends
  them to the log and answers with a token; its :class:`~loosely.demo._catalog.ChangeStream` edits the catalog a
  few times a second;
* each **read side** is a view of that topic kept by its own :class:`~loosely.views.Follower` (one consumer group
  per view version): full-text search in SQLite FTS5 and the talk's ``latest``/``counts`` views of ``the-topic``
  (served by :class:`~loosely.views.ViewServer`), JSON documents in a ``dir:`` sink served as files with a page
  (:class:`~loosely.demo._reads.DocumentSite`), numbers on a Prometheus endpoint; and the Hollow side: a
  :class:`~loosely.hollow.raw.RawProducer` folds the log into Hollow versions in ``hollow/``, and
  :class:`~loosely.demo._reads.HollowReader` answers lookups from a :class:`~loosely.hollow.raw.RawClient`'s
  memory -- eventual by default, read-your-writes with a write's token, strong on request;
* the **control** routes (``/demo/...`` on the write service's port) script the talk: a partition stops the broker
  for a while (the read sides keep answering from what they hold, Hollow lookups saying how stale they may be;
  writes fail with 503 saying what was written), then starts it again on the same address and data: every view
  catches up from its committed position, the writer is elected again, the Hollow client's tail and the producer
  resume; a blue/green rebuild builds a new version of a view beside the serving one and switches to it while
  the read service answers.

Everything keeps its state under the data directory (``log/``, ``views.db``, ``documents/``, ``hollow/``), so a
restart carries on; only the Prometheus numbers live in memory and are rebuilt from the log on each start.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loosely.broker.config import BrokerConfig
from loosely.broker.server import BrokerThread
from loosely.demo._catalog import WRITE_TIMEOUT_MS, Catalog, ChangeStream, catalog_dataset, metrics_view, movies_view
from loosely.demo._http import Request, Response, Service, json_response
from loosely.demo._reads import DocumentSite, HollowReader
from loosely.hollow.raw import Dataset, RawClient, RawProducer, Writer
from loosely.views import (
    STRING,
    Follower,
    RunnerConfig,
    Sink,
    SinkError,
    SqliteSink,
    View,
    count_by_key,
    latest_by_key,
    rebuild,
)
from loosely.views._documents import DirectoryStore, DocumentSink
from loosely.views._prometheus import PrometheusSink
from loosely.views._serve import ViewServer
from loosely.views._status import collect

__all__ = ["Address", "Demo", "DemoConfig"]

log = logging.getLogger(__name__)

Address = tuple[str, int]
# A partition lasts at most this long: the demo is for people watching, and a forgotten one must end by itself.
PARTITION_S_MAX = 600
# The catalog's Hollow producer publishes a version this often while writes come in. Lookups do not wait for it
# (the client reads new writes from the log at once); it bounds how much the clients hold beside the version.
HOLLOW_PUBLISH_MS = 1_000
# How long one attempt to create the catalog's topics waits for the log before it is tried again.
CATALOG_START_MS = 5_000
# How long the demo waits at start for the catalog's writer to be elected before it says it serves (a restart may
# wait for the previous writer's session to expire: 6 s).
WRITER_ELECTION_S_MAX = 30
# Old versions are dropped this long after a blue/green switch, so readers that resolved them can finish.
REBUILD_DROP_DELAY_MS = 1_000


@dataclass(frozen=True, slots=True)
class DemoConfig:
    data_dir: Path
    broker: BrokerConfig
    topic: str = "the-topic"  # the talk's kcat example
    dataset: str = "movies"  # the catalog's read-after-write Hollow dataset; its log is the topic <dataset>.changes
    partitions: int = 1
    views: Address = ("127.0.0.1", 8080)
    schema_registry: Address | None = ("127.0.0.1", 8081)
    write: Address = ("127.0.0.1", 8090)
    documents: Address = ("127.0.0.1", 8091)
    metrics: Address = ("127.0.0.1", 8092)
    hollow: Address = ("127.0.0.1", 8093)
    console: Address | None = ("127.0.0.1", 8094)  # the web console (loosely.console); None: off
    changes_per_second: float = 2.0
    client_config: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Running:
    """One read side's follower in its thread; ``error`` is what stopped it, if anything did."""

    name: str
    follower: Follower
    sink: Sink
    thread: threading.Thread | None = None
    error: BaseException | None = None


@dataclass(slots=True)
class _Rebuild:
    side: str
    view: str
    from_version: int | None
    to_version: int
    state: str = "building"
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"side": self.side, "view": self.view, "from_version": self.from_version,
                "to_version": self.to_version, "state": self.state, "error": self.error}


class Demo:
    """Start with :meth:`start`, stop with :meth:`stop`; :meth:`failure` says if a read side stopped on its own."""

    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self.data = config.data_dir
        self.db = self.data / "views.db"
        self.documents_dir = self.data / "documents"
        self.hollow_dir = self.data / "hollow"
        self._broker_config = config.broker
        self.broker: BrokerThread | None = None
        self.bootstrap = ""
        self.registry: Any = None
        self.catalog: Catalog | None = None
        self.changes: ChangeStream | None = None
        self.services: dict[str, Service | ViewServer] = {}
        self.hollow: HollowReader | None = None
        self.dataset: Dataset | None = None
        self.writer: Writer | None = None
        self.hollow_producer: RawProducer | None = None
        self.hollow_client: RawClient | None = None
        self.metrics_url = ""
        self._views_catalog: SqliteSink | None = None
        self._sides: list[_Running] = []
        self._lock = threading.Lock()
        self._partition_until: float | None = None
        self._partitions = 0
        self._stopping = threading.Event()
        self._background: list[threading.Thread] = []
        self.rebuilds: list[_Rebuild] = []
        self._fatal: str | None = None
        self._catalog_ready = threading.Event()  # the catalog's writer, producer and client are started
        self._catalog_error: str | None = None  # why they are not, while they are not
        self._catalog_started: list[Writer | RawProducer | RawClient] = []

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> Demo:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        cfg = self.config
        self.data.mkdir(parents=True, exist_ok=True)
        b = self._broker_config
        try:
            self.broker = BrokerThread(b).start()
        except OSError as e:
            if e.errno is None:  # the data directory is locked by another broker: that error says so itself
                raise
            # "[Errno 98] Address already in use" names no address
            raise OSError(e.errno, f"cannot serve the broker on {b.host}:{b.port}: {e.strerror}") from None
        # A restart after a partition must come back where clients look for it, even when port 0 was asked for.
        self._broker_config = dataclasses.replace(self._broker_config, port=self.broker.port)
        self.bootstrap = self.broker.bootstrap_servers
        # The catalog: a read-after-write Hollow dataset (its topics are made with the demo's, below).
        self.dataset = dataset = catalog_dataset(cfg.dataset, self.bootstrap, str(self._hollow_dir()),
                                                 partitions=cfg.partitions, client_config=cfg.client_config)
        self._ensure_topics()
        if cfg.schema_registry is not None:  # what the team's Docker stack had beside Kafka
            from loosely.registry import SchemaRegistry  # noqa: PLC0415 - avro and protobuf load only when asked

            host, port = cfg.schema_registry
            try:
                self.registry = SchemaRegistry(self.bootstrap, host=host, port=port,
                                               client_config=cfg.client_config).start()
            except Exception as e:  # the broker cannot be read back, the port is taken: one line, exit 1
                raise OSError(f"schema registry on {host}:{port}: {e}") from None
        # Its writer is elected on the log while the rest starts.
        self.writer = Writer(dataset, write_timeout_ms=WRITE_TIMEOUT_MS)
        self.hollow_producer = RawProducer(dataset, cycle_interval_ms=HOLLOW_PUBLISH_MS)
        self.hollow_client = RawClient(dataset)
        self._in_background("catalog", self._start_catalog)
        catalog = dataset.changes_topic
        # The read sides: each a view of the log in its own store, kept by its own follower.
        self._side("latest", lambda: latest_by_key("latest", [cfg.topic], value=STRING), SqliteSink(str(self.db)))
        self._side("counts", lambda: count_by_key("counts", [cfg.topic]), SqliteSink(str(self.db)))
        self._side("search", lambda: movies_view("movies", catalog), self._search_sink())
        self._side("documents", lambda: movies_view("movies", catalog), self._documents_sink())
        try:
            metrics = PrometheusSink(*cfg.metrics)
        except SinkError as e:  # the port is taken: one line, exit 1
            raise OSError(str(e)) from None
        self._side("metrics", lambda: metrics_view("catalog", catalog), metrics)
        self._views_catalog = SqliteSink(str(self.db))
        views_catalog = self._views_catalog
        self.services["views"] = ViewServer(views_catalog, *cfg.views, status=lambda: collect(
            [i for n in views_catalog.names() for i in views_catalog.versions(n)], self.bootstrap,
            int(time.time() * 1000), client_config=cfg.client_config)).start()
        self.services["documents"] = Service("documents page", DocumentSite(self.documents_dir).route,
                                             *cfg.documents).start()
        self.hollow = HollowReader(self.hollow_client, ready=self._catalog_ready)
        self.services["hollow"] = Service("Hollow read service", self.hollow.route, *cfg.hollow).start()
        self.metrics_url = f"http://{cfg.metrics[0]}:{metrics.port}/metrics"
        self.catalog = Catalog(self.writer, hollow_url=self._url("hollow"), reads={
            "search": f"{self._url('views')}/views/movies/search?q=...", "documents": self._url("documents") + "/",
            "hollow": f"{self._url('hollow')}/movies/<id>", "metrics": self.metrics_url})
        self.services["write"] = Service("write service", self._write_route, *cfg.write).start()
        self._wait_for_the_writer()
        self.changes = ChangeStream(self.catalog, cfg.changes_per_second).start()
        if cfg.console is not None:  # the web console: a Kafka client of the broker, with the views and Hollow pages
            self.services["console"] = self._console(*cfg.console)

    def _start_catalog(self) -> None:
        """Start the catalog's writer (it then waits to be elected on its own), producer and client once the log
        answers: until then writes answer 503 and Hollow lookups say the client is starting, as during a
        partition, and the rest of the demo serves."""
        dataset, parts = self.dataset, (self.writer, self.hollow_producer, self.hollow_client)
        assert dataset is not None
        while not self._stopping.is_set():
            try:
                dataset.ensure_topics(CATALOG_START_MS)  # short: a stop waits for it
                break
            except Exception as e:  # the log is not reachable (yet): keep trying, say why in /demo/status
                self._catalog_error = f"waiting for the log: {e}"
                self._stopping.wait(1)
        for part in parts:
            if self._stopping.is_set():
                return
            assert part is not None
            part.start()
            self._catalog_started.append(part)
        self._catalog_error = None
        self._catalog_ready.set()

    def _wait_for_the_writer(self) -> None:
        """Return once the catalog's writer is elected and its Hollow client has started, so that what the demo
        prints works at once (a write and then a read of it); or as soon as that is known not to be coming soon
        (the log does not answer: the demo serves anyway, writes answer 503)."""
        writer = self.writer
        assert writer is not None
        deadline = time.monotonic() + WRITER_ELECTION_S_MAX
        while not (writer.is_leader() and self._catalog_ready.is_set()) and time.monotonic() < deadline \
                and self._catalog_error is None and writer.election_error is None:
            time.sleep(0.02)

    def _console(self, host: str, port: int) -> Any:
        from loosely.console import ConsoleServer, create_app  # noqa: PLC0415 - Starlette loads only when asked for

        app = create_app(self.bootstrap, client_config=self.config.client_config, hollow=str(self.hollow_dir),
                         views=[f"sqlite:///{self.db.resolve()}"], key_lookup=self._key_lookup,
                         schema_registry=self.registry.url if self.registry is not None else None)
        try:
            return ConsoleServer(app, host, port).start()
        except OSError as e:  # the port is taken: one line, exit 1
            raise OSError(f"console on {host}:{port}: {e}") from None

    def _key_lookup(self, topic: str, partition: int, key: bytes, limit: int) -> list[int]:
        """The broker's key index, for the console's key search (a scan when the broker is away)."""
        broker = self.broker
        if broker is None:
            raise LookupError("the broker is away (a partition is on): try again when it is back")
        return broker.broker.key_lookup(topic, partition, key, limit)

    def _side(self, name: str, load: Callable[[], View[Any, Any]], sink: Sink) -> None:
        follower = Follower(load, sink, self.bootstrap, RunnerConfig(client_config=self.config.client_config))
        running = _Running(name, follower, sink)

        def run() -> None:
            try:
                follower.run()
            except BaseException as e:  # reported by failure(), which ends the demo with one line
                running.error = e

        running.thread = threading.Thread(target=run, name=f"demo-view-{name}", daemon=True)
        self._sides.append(running)
        running.thread.start()

    def _search_sink(self) -> SqliteSink:
        return SqliteSink(str(self.db), search=("title", "genres"))

    def _documents_sink(self) -> DocumentSink:
        return DocumentSink(DirectoryStore(str(self.documents_dir)))

    def _hollow_dir(self) -> Path:
        self.hollow_dir.mkdir(parents=True, exist_ok=True)
        return self.hollow_dir

    def _ensure_topics(self) -> None:
        """Create the demo's topics in the broker itself, on its loop, before the views subscribe to them."""
        broker = self.broker
        assert broker is not None
        dataset = self.dataset
        assert dataset is not None
        compact = {"cleanup.policy": "compact"}  # as Dataset.ensure_topics makes them; it then finds them there
        topics = ((self.config.topic, self.config.partitions, None), (dataset.changes_topic, dataset.partitions,
                                                                      compact), (dataset.writer_topic, 1, compact))

        def create() -> None:
            logs = broker.broker.ctx.logs
            for t, partitions, overrides in topics:
                if logs.get(t) is None:
                    logs.create_topic(t, partitions, overrides)

        broker.call(create)

    @property
    def catalog_topic(self) -> str:
        """The catalog's log: the changes topic of its dataset."""
        return f"{self.config.dataset}.changes" if self.dataset is None else self.dataset.changes_topic

    def failure(self) -> str | None:
        """Why the demo cannot go on (a read side stopped, the broker did not come back), or ``None``."""
        if self._fatal is not None:
            return self._fatal
        failed = next((s for s in self._sides if s.error is not None), None)
        return None if failed is None else f"read side {failed.name} stopped: {failed.error}"

    def stop(self) -> None:
        self._stopping.set()
        if self.changes is not None:
            self.changes.stop()
        for s in self._sides:
            s.follower.stop()
        for t in self._background:  # a partition ends at once; a rebuild cannot be interrupted, and dies with us
            t.join(60 if t.name in ("demo-partition", "demo-catalog") else 5)
        for s in self._sides:
            if s.thread is not None:
                s.thread.join(60)
            s.sink.close()
        for svc in self.services.values():
            svc.stop()
        for part in self._catalog_started:  # the writer first: the change stream and the write service are gone
            part.close()
        if self.registry is not None:
            self.registry.stop()
        if self._views_catalog is not None:
            self._views_catalog.close()
        with self._lock:
            broker, self.broker = self.broker, None
        if broker is not None:
            broker.stop()

    # -- the scenarios ---------------------------------------------------------------------------------------

    def partition(self, seconds: float) -> None:
        """Stop the broker now and start it again after ``seconds`` (in the background)."""
        if not 0 < seconds <= PARTITION_S_MAX:
            raise ValueError(f"a partition lasts more than 0 and at most {PARTITION_S_MAX} seconds")
        with self._lock:
            if self._partition_until is not None:
                raise RuntimeError("a partition is already under way")
            broker, self.broker = self.broker, None
            self._partition_until = time.monotonic() + seconds
            self._partitions += 1
        assert broker is not None
        broker.stop()
        log.info("partition: the broker is stopped for %.0f s", seconds)
        self._in_background("partition", lambda: self._heal(seconds))

    def _heal(self, seconds: float) -> None:
        self._stopping.wait(seconds)
        broker = None
        deadline = time.monotonic() + 10
        while broker is None and not self._stopping.is_set():
            try:
                broker = BrokerThread(self._broker_config).start()
            except OSError as e:  # the port in TIME_WAIT or taken: try for a while, then say so
                if time.monotonic() > deadline:
                    self._fatal = f"the broker did not come back after the partition: {e}"
                    break
                time.sleep(0.2)
        with self._lock:
            self.broker = broker
            self._partition_until = None
        log.info("partition over: the broker is back on %s", self.bootstrap)

    def start_rebuild(self, side: str) -> _Rebuild:
        """Build the next version of a read side's view beside the serving one, and switch to it (background)."""
        sinks: dict[str, Callable[[], Any]] = {"search": self._search_sink, "documents": self._documents_sink}
        if side not in sinks:
            raise ValueError(f"blue/green works on the read sides {', '.join(sinks)}; not {side!r}")
        sink = sinks[side]()
        view = movies_view("movies", self.catalog_topic)
        with self._lock:
            if any(r.state == "building" for r in self.rebuilds):
                sink.close()
                raise RuntimeError("a rebuild is already under way")
            versions = [v.version for v in sink.versions(view.name)]
            job = _Rebuild(side, view.name, sink.serving_version(view.name), max(versions, default=0) + 1)
            self.rebuilds.append(job)

        def run() -> None:
            try:
                rebuild(view.with_version(job.to_version), sink, self.bootstrap,
                        config=RunnerConfig(client_config=self.config.client_config),
                        drop_delay_ms=REBUILD_DROP_DELAY_MS, report_interval_ms=200, timeout_s=PARTITION_S_MAX)
                job.state = "done"
            except Exception as e:  # reported in /demo/status; the serving version is untouched
                job.state, job.error = "failed", str(e)
            finally:
                sink.close()

        self._in_background(f"rebuild-{side}", run)
        return job

    def _in_background(self, name: str, fn: Callable[[], None]) -> None:
        t = threading.Thread(target=fn, name=f"demo-{name}", daemon=True)
        self._background.append(t)
        t.start()

    def status(self) -> dict[str, Any]:
        until = self._partition_until
        sides = {}
        for s in self._sides:
            stats = s.follower.statistics()
            runner = s.follower.runner
            sides[s.name] = {"view": runner.view.id if runner is not None else None,
                             "records": stats.records if stats else 0, "lag": stats.lag_total if stats else None,
                             "error": None if s.error is None else str(s.error)}
        changes = self.changes
        return {
            "broker": "partitioned" if until is not None else "up",
            "partition_seconds_left": None if until is None else max(0.0, round(until - time.monotonic(), 1)),
            "partitions": self._partitions,
            "changes": None if changes is None else {"on": changes.on, "per_second": changes.per_second,
                                                     "sent": changes.sent, "failed": changes.failed},
            "read_sides": sides,
            "hollow": self._hollow_status(),
            "rebuilds": [r.as_json() for r in self.rebuilds],
        }

    def _hollow_status(self) -> dict[str, Any] | None:
        writer, producer, client = self.writer, self.hollow_producer, self.hollow_client
        if writer is None or producer is None or client is None:
            return None
        w, p, c = writer.statistics(), producer.statistics(), client.statistics()
        return {"state": "started" if self._catalog_ready.is_set() else f"starting ({self._catalog_error})",
                "writer": "elected" if w.leader else "not elected", "writer_error": w.last_error,
                "published_version": p.version, "client_version": c.version, "client_overlay": c.overlay,
                "staleness_ms": c.staleness_ms}

    # -- HTTP ------------------------------------------------------------------------------------------------

    def _write_route(self, req: Request) -> Response:
        if req.path[:1] != ("demo",):
            assert self.catalog is not None
            return self.catalog.route(req)
        what = req.path[1:]
        if what in ((), ("status",)) and req.method == "GET":
            return json_response(200, self.status())
        if req.method != "POST":
            return json_response(405, {"error": "the demo's controls are POST /demo/partition?seconds=N, "
                                                "/demo/rebuild?side=search|documents, /demo/changes?on=0|1"})
        try:
            if what == ("partition",):
                seconds = float(req.query.get("seconds", "20"))
                self.partition(seconds)
                return json_response(202, {"partitioned_for_seconds": seconds,
                                           "try": "writes now answer 503; reads keep answering"})
            if what == ("rebuild",):
                return json_response(202, self.start_rebuild(req.query.get("side", "search")).as_json())
            if what == ("changes",) and self.changes is not None:
                self.changes.on = req.query.get("on", "1") not in ("0", "false", "off")
                return json_response(200, {"on": self.changes.on})
        except ValueError as e:
            return json_response(400, {"error": str(e)})
        except RuntimeError as e:
            return json_response(409, {"error": str(e)})
        return json_response(404, {"error": f"no control {req.raw_path}"})

    def _url(self, name: str) -> str:
        svc = self.services.get(name)
        if svc is None:
            return ""
        if isinstance(svc, ViewServer):
            return f"http://{self.config.views[0]}:{svc.port}"
        return svc.url

    # -- what to open and try --------------------------------------------------------------------------------

    def addresses(self) -> dict[str, Any]:
        """Every address, for scripts and tests (the first line ``loosely demo`` prints)."""
        w = self.services.get("write")
        return {"bootstrap_servers": self.bootstrap, "http": self._url("views"), "topic": self.config.topic,
                "schema_registry": self.registry.url if self.registry is not None else None,
                "catalog_topic": self.catalog_topic, "write": w.url if isinstance(w, Service) else None,
                "documents": self._url("documents"), "metrics": self.metrics_url or None,
                "hollow": self._url("hollow"), "console": self._url("console") or None}

    def guide(self) -> str:
        a = self.addresses()
        b, views, write, topic = a["bootstrap_servers"], a["http"], a["write"], a["topic"]
        registry = (f"\n  schemas    {a['schema_registry']}  (a Confluent-compatible schema registry, in _schemas)"
                    if a["schema_registry"] else "")
        stream = "on" if self.changes is not None and self.changes.on else "off"
        console = (f"\n  console    {a['console']}/  (open it: topics, messages, key search, groups and lag, views, "
                   "Hollow)" if a["console"] else "")
        return f"""loosely demo: writes go to the log, reads come from views of it
  broker     {b}  (log in {self.data / "log"}; topics {a["catalog_topic"]} and {topic})
  write      {write}/movies/<id>  (PUT, POST, DELETE: only appends to the log; change stream {stream})
  search     {views}/views/movies/search?q=...  (SQLite FTS5 in {self.db})
  documents  {a["documents"]}/  (open it: a page reading JSON files from {self.documents_dir})
  metrics    {a["metrics"]}  (Prometheus)
  hollow     {a["hollow"]}/movies/<id>  (read-after-write Hollow, from memory; ?after=TOKEN reads a write,
             ?consistency=strong every write before it; blobs in {self.hollow_dir}){registry}{console}

Write, then read it back from every side:
  curl -X PUT {write}/movies/heat -d '{{"title": "Heat", "year": 1995, "genres": ["crime"], "rating": 8.3}}'
  curl '{views}/views/movies/search?q=heat'
  curl {a["documents"]}/docs/movies/current/heat.json
  curl '{a["hollow"]}/movies/heat?consistency=strong'   # or the write's "read_your_write" link
  curl -s {a["metrics"]} | grep 'rating/heat'

The talk's scenarios:
  curl -X POST '{write}/demo/partition?seconds=20'   # the broker goes away: reads answer, writes get 503
  curl -X POST '{write}/demo/rebuild?side=search'    # blue/green: version N+1 is built, then switched to
  curl -X POST '{write}/demo/changes?on=0'           # stop the change stream (on=1 starts it)
  curl {write}/demo/status

The talk's kcat example, with the views latest and counts of {topic}:
  seq 100000 | awk '{{printf "%s,{{\\"id\\":\\"%s\\", value: \\"bar\\"}}\\n", $1, $1}}' | \\
      kcat -P -b {b} -t {topic} -K ','
  curl {views}/views/latest/keys/42
  curl {views}/views/counts/keys/42

Stop with Ctrl-C; the data stays in {self.data}."""
