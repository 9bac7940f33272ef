"""The console's web app: Starlette routes rendering Jinja2 templates, one page per thing a person looks at.

Every page is server-rendered HTML that works without JavaScript; ``static/console.js`` only refreshes the parts
marked ``data-poll`` (a search's progress, the live charts) by fetching their HTML fragment again. Cluster calls
block, so every route runs them in a worker thread (``run_in_threadpool``): the event loop -- which is the
broker's own when the console is served inside ``loosely broker`` -- never waits on the network.

Errors are one line on the page: a :class:`ConsoleError` (unreachable cluster, unknown topic, bad offset, a
read-only refusal) renders the page's error template with status 400 (403 for read-only, 502 when the cluster
cannot be reached); anything else is one line with its type, status 500, and the traceback only in the log.

With ``authenticate`` (``loosely console --users-file``: the broker's SCRAM users), every request, pages and
static files alike, needs HTTP Basic credentials it accepts (401 otherwise); the check (PBKDF2 on a cache miss)
runs in a worker thread.

Changes (create/delete topic, produce, offset reset) are POSTs; in ``read_only`` mode they are refused with 403.
A POST whose ``Origin`` is another site is refused too, so a web page elsewhere cannot drive the console through
the user's browser.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from loosely.console._cluster import Cluster, ConsoleError, KeyLookup, SearchProgress, SearchQuery
from loosely.console._hollow import HollowBrowser
from loosely.console._render import DECODINGS, FramedView, decode, framed_views, line_chart
from loosely.console._sampler import INTERVAL_MS_DEFAULT, LatencySource, Sampler
from loosely.registry import FramedDecoder, SchemaSource

__all__ = ["create_app"]

log = logging.getLogger(__name__)

_HERE: Final = Path(__file__).parent
SEARCHES_MAX: Final = 16
"""Searches remembered (running or finished, for their result pages); at most ``SEARCHES_RUNNING_MAX`` run."""
SEARCHES_RUNNING_MAX: Final = 4
SEARCH_RECORDS_MAX: Final = 10_000_000
SEARCH_TIME_MS_MAX: Final = 120_000
REGISTRY_TIMEOUT_S_MAX: Final = 5.0
"""A schema asked of the registry for a page waits at most this (a registry that is down costs one wait a few
seconds, not one per record: see :class:`loosely.registry.SchemaSource`)."""


class ReadOnly(ConsoleError):
    """A change asked of a read-only console."""


def _fmt_time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _bytes_text(n: int | None) -> str:
    """``1.5 MiB``; ``-`` when unknown."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _int(params: Mapping[str, str], name: str, default: int | None = None, *, low: int | None = None,
         high: int | None = None) -> int | None:
    text = params.get(name, "").strip()
    if not text:
        return default
    try:
        n = int(text)
    except ValueError:
        raise ConsoleError(f"{name} must be a whole number, got {text!r}") from None
    if (low is not None and n < low) or (high is not None and n > high):
        raise ConsoleError(f"{name} must be between {low} and {high}, got {n}")
    return n


def _time_ms(text: str) -> int:
    """A time typed on the page: epoch milliseconds, or ISO 8601 (UTC unless it says otherwise)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        t = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConsoleError(f"time {text!r}: give epoch milliseconds or an ISO 8601 time") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.UTC)
    return int(t.timestamp() * 1000)


class _BasicAuth:
    """ASGI middleware: HTTP requests pass only with Basic credentials ``check`` accepts."""

    def __init__(self, app: ASGIApp, check: Callable[[str, str], bool]) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            auth = Headers(scope=scope).get("authorization", "")
            scheme, _, token = auth.partition(" ")
            user = password = ""
            if scheme.lower() == "basic":
                with contextlib.suppress(ValueError, UnicodeDecodeError):
                    user, _, password = base64.b64decode(token, validate=True).decode().partition(":")
            if not user or not await run_in_threadpool(self.check, user, password):
                response = PlainTextResponse("this console needs a user and password\n", status_code=401,
                                             headers={"WWW-Authenticate": 'Basic realm="loosely console"'})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    bootstrap: str,
    *,
    client_config: Mapping[str, str] | None = None,
    read_only: bool = False,
    hollow: str | None = None,
    key_lookup: KeyLookup | None = None,
    views: Sequence[str] = (),
    authenticate: Callable[[str, str], bool] | None = None,
    sample_interval_ms: int = INTERVAL_MS_DEFAULT,
    timeout_s: float = 10.0,
    schema_registry: str | None = None,
    request_latencies: LatencySource | None = None,
) -> Starlette:
    """The console for the cluster at ``bootstrap`` (librdkafka ``client_config`` for TLS/SASL), as an ASGI app.

    ``hollow``: a blob store (directory or ``s3://bucket/prefix``) for the Hollow pages. ``views``: URLs of
    views sinks (``sqlite:///views.db``, ...) whose versions the views page shows and switches. ``key_lookup``: the
    broker's key index (``(topic, partition, key, limit) -> offsets``, newest first), used by key searches
    instead of a scan when given. ``authenticate(user, password) -> bool``: require HTTP Basic auth (e.g.
    :class:`loosely.security.passwords.PasswordCheck`). ``sample_interval_ms``: how often the charts' samples are
    taken. ``schema_registry``: a schema registry's URL; keys and values in Confluent's framing are then shown
    decoded (Avro, JSON Schema, Protobuf) as JSON with their schema id and subject. ``request_latencies``: the
    broker's cumulative request counts and seconds per API (see :mod:`loosely.console._sampler`), charted as
    mean latency per sampling interval.
    """
    cluster = Cluster(bootstrap, dict(client_config or {}), timeout_s=timeout_s)
    sampler = Sampler(cluster, interval_ms=sample_interval_ms, latencies=request_latencies)
    browser = HollowBrowser(hollow) if hollow else None
    views_browser: Any = None
    if views:
        from loosely.console._views import ViewsBrowser  # noqa: PLC0415 - the views' imports only when asked for

        views_browser = ViewsBrowser(views, bootstrap, dict(client_config or {}), timeout_s)
    decoder: FramedDecoder | None = None
    if schema_registry:
        decoder = FramedDecoder(SchemaSource(schema_registry, timeout_s=min(timeout_s, REGISTRY_TIMEOUT_S_MAX)))

    async def framed(records: Sequence[Any], how: str) -> dict[tuple[int, int, str], FramedView]:
        """The framed fields of ``records`` decoded (asked of the registry in a worker thread), when ``how``
        shows values as JSON; ``text`` and ``hex`` show the bytes themselves."""
        if decoder is None or how not in ("auto", "json"):
            return {}
        return await run_in_threadpool(framed_views, decoder, records)

    searches: OrderedDict[str, SearchProgress] = OrderedDict()
    searches_lock = threading.Lock()
    env = Environment(loader=FileSystemLoader(_HERE / "templates"), autoescape=select_autoescape(["html"]))
    env.globals.update(read_only=read_only, bootstrap=bootstrap, hollow=hollow, views=bool(views), fmt_time=_fmt_time,
                       size=_bytes_text,
                       decode=decode, quote=quote, decodings=DECODINGS, indexed=key_lookup is not None,
                       schema_registry=schema_registry)

    def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(template).render(**context), status_code=status)

    def chart(series: Mapping[str, Any], unit: str = "") -> Markup:
        return Markup(line_chart(series, unit=unit))

    def refuse_if_read_only(what: str) -> None:
        if read_only:
            raise ReadOnly(f"this console is read-only: {what} refused")

    # -- cluster and topics -----------------------------------------------------------------------------------

    async def overview(request: Request) -> Response:
        ov = await run_in_threadpool(cluster.overview)
        topics = await run_in_threadpool(cluster.topics)
        show_internal = request.query_params.get("internal") == "1"
        shown = [t for t in topics if show_internal or not t.name.startswith("_")]
        latency = chart(sampler.latencies(), "ms per request") if request_latencies is not None else None
        return page("overview.html", ov=ov, topics=shown, hidden=len(topics) - len(shown),
                    chart=chart(sampler.rates(), "messages/s"), latency_chart=latency)

    async def rates_chart(request: Request) -> Response:
        return HTMLResponse(chart(sampler.rates(), "messages/s"))

    async def latency_chart(request: Request) -> Response:
        if request_latencies is None:
            return HTMLResponse("this console has no source of request latencies (see --broker-metrics)",
                                status_code=404)
        return HTMLResponse(chart(sampler.latencies(), "ms per request"))

    async def topic(request: Request) -> Response:
        name = request.path_params["name"]
        detail = await run_in_threadpool(cluster.topic, name)
        return page("topic.html", t=detail)

    async def create_topic(request: Request) -> Response:
        form = await request.form()
        refuse_if_read_only("creating a topic")
        name = str(form.get("name", "")).strip()
        params = {k: str(v) for k, v in form.items()}
        partitions = _int(params, "partitions", 1, low=1, high=100_000)
        replication = _int(params, "replication", 1, low=1, high=100)
        configs: dict[str, str] = {}
        for line in str(form.get("configs", "")).splitlines():
            if line.strip():
                k, sep, v = line.partition("=")
                if not sep:
                    raise ConsoleError(f"topic config {line.strip()!r}: write NAME=VALUE, one a line")
                configs[k.strip()] = v.strip()
        assert partitions is not None and replication is not None
        await run_in_threadpool(cluster.create_topic, name, partitions, replication, configs)
        return RedirectResponse(f"/topics/{quote(name)}", status_code=303)

    async def delete_topic(request: Request) -> Response:
        name = request.path_params["name"]
        refuse_if_read_only(f"deleting topic {name}")
        await run_in_threadpool(cluster.delete_topic, name)
        return RedirectResponse("/?deleted=" + quote(name), status_code=303)

    # -- messages -------------------------------------------------------------------------------------------

    async def messages(request: Request) -> Response:
        name = request.path_params["name"]
        q = request.query_params
        partition = _int(q, "partition", 0, low=0)
        limit = _int(q, "limit", 50, low=1, high=500)
        how = q.get("decode", "auto")
        if how not in DECODINGS:
            raise ConsoleError(f"decode must be one of {', '.join(DECODINGS)}")
        assert partition is not None and limit is not None
        if q.get("time", "").strip():
            offset = await run_in_threadpool(cluster.offset_for_time, name, partition, _time_ms(q["time"]))
        else:
            offset = _int(q, "offset", 0) or 0
        records = await run_in_threadpool(cluster.browse, name, partition, offset, limit)
        count = await run_in_threadpool(cluster.partitions, name)
        return page("messages.html", topic=name, partition=partition, partitions=count, offset=offset, limit=limit,
                    how=how, records=records, time=q.get("time", ""), framed=await framed(records, how))

    async def produce(request: Request) -> Response:
        name = request.path_params["name"]
        form = await request.form()
        refuse_if_read_only(f"producing to {name}")
        params = {k: str(v) for k, v in form.items()}
        partition = _int(params, "partition", None, low=0)
        key = params.get("key", "")
        headers = []
        for line in params.get("headers", "").splitlines():
            if line.strip():
                k, _, v = line.partition("=")
                headers.append((k.strip(), v.strip().encode()))
        p, o = await run_in_threadpool(cluster.produce, name, partition, key.encode() if key else None,
                                       params.get("value", "").encode(), headers)
        return RedirectResponse(f"/topics/{quote(name)}/messages?partition={p}&offset={o}&produced=1",
                                status_code=303)

    async def search(request: Request) -> Response:
        name = request.path_params["name"]
        q = request.query_params
        text = q.get("text", "")
        fld = q.get("field", "key")
        if fld not in ("key", "value", "header"):
            raise ConsoleError("search field must be key, value or header")
        if not text:
            count = await run_in_threadpool(cluster.partitions, name)
            return page("search.html", topic=name, s=None, partitions=count)
        query = SearchQuery(name, fld, text, _int(q, "partition", None, low=0),
                            _int(q, "records_max", 1_000_000, low=1, high=SEARCH_RECORDS_MAX) or 1,
                            _int(q, "time_ms_max", 10_000, low=1, high=SEARCH_TIME_MS_MAX) or 1,
                            _int(q, "matches_max", 100, low=1, high=1000) or 1)
        progress = SearchProgress(query)
        with searches_lock:
            running = sum(not s.done for s in searches.values())
            if running >= SEARCHES_RUNNING_MAX:
                raise ConsoleError(f"{running} searches are running already; wait for one to end")
            searches[progress.id] = progress
            while len(searches) > SEARCHES_MAX:
                searches.popitem(last=False)
        threading.Thread(target=cluster.search, args=(progress, key_lookup), name=f"console-search-{progress.id}",
                         daemon=True).start()
        return RedirectResponse(f"/searches/{progress.id}", status_code=303)

    def _search(request: Request) -> SearchProgress:
        s = searches.get(request.path_params["id"])
        if s is None:
            raise ConsoleError("no such search (the console keeps the last few only)")
        return s

    async def search_page(request: Request) -> Response:
        s = _search(request)
        count = await run_in_threadpool(cluster.partitions, s.query.topic)
        how = request.query_params.get("decode", "auto")
        return page("search.html", topic=s.query.topic, s=s, partitions=count, how=how,
                    framed=await framed(list(s.matches), how))

    async def search_fragment(request: Request) -> Response:
        s = _search(request)
        how = request.query_params.get("decode", "auto")
        return page("_search_result.html", s=s, how=how, framed=await framed(list(s.matches), how))

    # -- consumer groups ------------------------------------------------------------------------------------

    async def groups(request: Request) -> Response:
        found = await run_in_threadpool(cluster.groups)
        return page("groups.html", groups=found)

    async def group(request: Request) -> Response:
        g = await run_in_threadpool(cluster.group, request.path_params["id"])
        sampler.watch(g.group_id)
        return page("group.html", g=g, chart=chart(sampler.group_lag(g.group_id), "messages behind"),
                    topics=sorted({p.topic for p in g.partitions}), reset=request.query_params.get("reset"))

    async def lag_chart(request: Request) -> Response:
        sampler.watch(request.path_params["id"])
        return HTMLResponse(chart(sampler.group_lag(request.path_params["id"]), "messages behind"))

    async def reset(request: Request) -> Response:
        group_id = request.path_params["id"]
        form = await request.form()
        refuse_if_read_only(f"resetting the offsets of {group_id}")
        topic_name, to = str(form.get("topic", "")), str(form.get("to", "")).strip()
        if to == "offset":
            to = str(form.get("offset", "")).strip()
        await run_in_threadpool(cluster.reset_offsets, group_id, topic_name, to)
        return RedirectResponse(f"/groups/{quote(group_id)}?reset={quote(topic_name)}", status_code=303)

    # -- Hollow ---------------------------------------------------------------------------------------------

    def need_hollow() -> HollowBrowser:
        if browser is None:
            raise ConsoleError("no Hollow blob store given (start the console with --hollow DIR-or-S3-URL)")
        return browser

    async def hollow_home(request: Request) -> Response:
        b = need_hollow()
        announced = await run_in_threadpool(b.announced)
        blobs = await run_in_threadpool(b.blobs)
        version = await run_in_threadpool(b.version, request.query_params.get("version"))
        types = await run_in_threadpool(b.types, version)
        return page("hollow.html", announced=announced, blobs=blobs, version=version, types=types,
                    versions=sorted({to for _, _, to, _ in blobs}))

    async def hollow_type(request: Request) -> Response:
        b = need_hollow()
        version = await run_in_threadpool(b.version, request.query_params.get("version"))
        name, key = request.path_params["name"], request.query_params.get("key", "")
        records = await run_in_threadpool(b.records, version, name, key)
        types = {t.name: t for t in await run_in_threadpool(b.types, version)}
        return page("hollow_type.html", version=version, t=types.get(name), name=name, key=key, records=records)

    async def hollow_diff(request: Request) -> Response:
        b = need_hollow()
        q = request.query_params
        versions = await run_in_threadpool(b.versions)
        if not q.get("from") or not q.get("to"):
            return page("hollow_diff.html", versions=versions, diffs=None, a=None, b=None)
        va, vb = await run_in_threadpool(b.version, q["from"]), await run_in_threadpool(b.version, q["to"])
        diffs = await run_in_threadpool(b.diff, va, vb)
        return page("hollow_diff.html", versions=versions, diffs=diffs, a=va, b=vb)

    async def hollow_history(request: Request) -> Response:
        b = need_hollow()
        q = request.query_params
        type_name, key = q.get("type", ""), q.get("key", "")
        entries = await run_in_threadpool(b.history, type_name, key) if type_name and key else None
        return page("hollow_history.html", type_name=type_name, key=key, entries=entries)

    # -- views --------------------------------------------------------------------------------------------

    def need_views() -> Any:
        if views_browser is None:
            raise ConsoleError("no views sink given (start the console with --views SINK-URL)")
        return views_browser

    async def views_page(request: Request) -> Response:
        status = await run_in_threadpool(need_views().status)
        return page("views.html", sinks=status, switched=request.query_params.get("switched"))

    async def views_switch(request: Request) -> Response:
        form = await request.form()
        b = need_views()
        name, url = str(form.get("view", "")), str(form.get("sink", ""))
        refuse_if_read_only(f"switching view {name}")
        version = _int({k: str(v) for k, v in form.items()}, "version", None, low=0)
        if version is None:
            raise ConsoleError("switch: which version?")
        await run_in_threadpool(b.switch, url, name, version)
        return RedirectResponse(f"/views?switched={quote(name)}@{version}", status_code=303)

    # -- wiring ---------------------------------------------------------------------------------------------

    def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            if request.method == "POST":
                origin = request.headers.get("origin")
                if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
                    return page("error.html", 403, message=f"refused a change asked from another site ({origin})")
            try:
                return await handler(request)
            except ReadOnly as e:
                return page("error.html", 403, message=str(e))
            except ConsoleError as e:
                status = 502 if str(e).startswith("cannot reach") else 400
                return page("error.html", status, message=str(e))
            except HTTPException:
                raise
            except Exception as e:
                log.exception("console page %s failed", request.url.path)
                return page("error.html", 500, message=f"internal error: {type(e).__name__}: {e}")
        return run

    routes = [
        Route("/", guarded(overview)),
        Route("/charts/rates", guarded(rates_chart)),
        Route("/charts/latency", guarded(latency_chart)),
        Route("/topics", guarded(create_topic), methods=["POST"]),
        Route("/topics/{name}", guarded(topic)),
        Route("/topics/{name}/delete", guarded(delete_topic), methods=["POST"]),
        Route("/topics/{name}/messages", guarded(messages)),
        Route("/topics/{name}/produce", guarded(produce), methods=["POST"]),
        Route("/topics/{name}/search", guarded(search)),
        Route("/searches/{id}", guarded(search_page)),
        Route("/searches/{id}/result", guarded(search_fragment)),
        Route("/groups", guarded(groups)),
        Route("/groups/{id}", guarded(group)),
        Route("/groups/{id}/lag-chart", guarded(lag_chart)),
        Route("/groups/{id}/reset", guarded(reset), methods=["POST"]),
        Route("/hollow", guarded(hollow_home)),
        Route("/hollow/types/{name}", guarded(hollow_type)),
        Route("/hollow/diff", guarded(hollow_diff)),
        Route("/hollow/history", guarded(hollow_history)),
        Route("/views", guarded(views_page)),
        Route("/views/switch", guarded(views_switch), methods=["POST"]),
        Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sampler.start()
        try:
            yield
        finally:
            sampler.stop()
            await run_in_threadpool(cluster.close)

    middleware = [Middleware(_BasicAuth, check=authenticate)] if authenticate is not None else []
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    app.state.cluster = cluster
    app.state.sampler = sampler
    return app
