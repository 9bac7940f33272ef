"""``loosely top``: a live terminal view of a broker, read from its Prometheus endpoint.

It scrapes ``--metrics URL`` every ``--interval`` seconds and shows rates computed between two scrapes: messages
and bytes per second per topic, requests per second and latency percentiles per API (from the histogram buckets),
connections, log sizes, consumer-group states, and the lag of every group on every partition it committed to
(CURRENT-OFFSET, LOG-END-OFFSET and LAG, as ``kafka-consumer-groups --describe`` shows them; the broker exports
them as ``loosely_consumer_committed_offset`` / ``loosely_consumer_lag``), and the clients that push their metrics
(KIP-714: client id, software, pushes, series and the age of the last push). Optional sections: ``--views SINK_URL``
(with ``-b``) adds the state, lag and freshness of every view version in that sink (what ``loosely views status``
prints), ``--hollow DIR|s3://...`` the announced Hollow version and its age.

Theory of operation
-------------------
Each source (the metrics endpoint, the views sink, the Hollow store) is a :class:`Feed`: a daemon thread that
polls it every interval and keeps the latest answer, or the error and since when it has been failing. A source
that goes away is polled again until it is back, so a restarted broker reappears by itself; meanwhile the screen
says ``waiting for <url> (since ...)``. The main thread only draws and reads keys, so ``q`` quits at once even
while a poll waits on a silent host. On a terminal top uses the alternate screen in cbreak mode and restores the
terminal on every way out (``q``, Ctrl-C, SIGTERM); keys: ``q`` quit, ``p`` pause the display, ``s`` sort the lag
table by lag or by name. Without a terminal (a pipe) it prints one frame per interval. ``--once`` prints one frame
(two scrapes) and exits: 1, with one line on stderr, when the endpoint does not answer within ``--timeout``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import select
import shutil
import signal
import sys
import termios
import threading
import time
import tty
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from loosely.cli._args import add_client_options

__all__ = ["Feed", "Scrape", "add_top_command", "parse_scrape", "render"]

Labels = tuple[tuple[str, str], ...]
T = TypeVar("T")

TIMEOUT_S: Final = 10.0  # one poll of a source at most (``--timeout``), the CLI-wide default of issue 16
REDRAW_S: Final = 1.0  # the clock and the "since" ages move even when no poll finished


@dataclass
class Scrape:
    at_s: float
    samples: dict[str, dict[Labels, float]] = field(default_factory=lambda: defaultdict(dict))

    def get(self, name: str, **labels: str) -> float:
        return self.samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def series(self, name: str) -> dict[Labels, float]:
        return self.samples.get(name, {})


def parse_scrape(text: str, at_s: float) -> Scrape:
    s = Scrape(at_s)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            s.samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return s


def _rate(now: Scrape, before: Scrape | None, name: str, labels: Labels) -> float:
    if before is None or now.at_s <= before.at_s:
        return 0.0
    return max(0.0, now.series(name).get(labels, 0.0) - before.series(name).get(labels, 0.0)) / (
        now.at_s - before.at_s
    )


def _quantile(now: Scrape, before: Scrape | None, api: str, q: float) -> float | None:
    """The bucket bound holding quantile ``q`` of the requests between the two scrapes (all time without one)."""
    buckets = []
    for labels, value in now.series("loosely_request_duration_seconds_bucket").items():
        d = dict(labels)
        if d.get("api") != api:
            continue
        old = before.series("loosely_request_duration_seconds_bucket").get(labels, 0.0) if before else 0.0
        buckets.append((float(d["le"]), value - old))
    buckets.sort()
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    for bound, count in buckets:
        if count >= q * total:
            return bound
    return buckets[-1][0]


def _fmt_s(v: float | None) -> str:
    if v is None:
        return "-"
    if v == float("inf"):
        return ">10s"
    return f"{v * 1000:.1f}ms" if v < 1 else f"{v:.1f}s"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    return f"{seconds / 60:.1f}m" if seconds < 3600 else f"{seconds / 3600:.1f}h"


def _clock(at_s: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at_s))


def _table(rows: list[list[str]], header: list[str], text_columns: int = 1) -> list[str]:
    """Names left-aligned (the first ``text_columns``), numbers right-aligned."""
    cells = [header, *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return ["  ".join(c.ljust(w) if i < text_columns else c.rjust(w)
                      for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in cells]


def _partition_lag(now: Scrape, sort: str) -> list[str]:
    """One row per (group, topic, partition), kafka-consumer-groups' columns; ``sort``: "lag" (largest first) or
    "name"."""
    ends = {(d["topic"], d["partition"]): v for d, v in _dicts(now, "loosely_log_end_offset")}
    committed = {(d["group"], d["topic"], d["partition"]): v
                 for d, v in _dicts(now, "loosely_consumer_committed_offset")}
    rows = []
    for d, lag in _dicts(now, "loosely_consumer_lag"):
        key = (d["group"], d["topic"], d["partition"])
        rows.append((lag, key))
    rows.sort(key=lambda r: (-r[0], r[1]) if sort == "lag" else (r[1][0], r[1][1], int(r[1][2])))
    table = []
    for lag, (group, topic, partition) in rows:
        cur = committed.get((group, topic, partition))
        end = ends.get((topic, partition))
        table.append([group, topic, partition, "-" if cur is None else f"{int(cur)}",
                      "-" if end is None else f"{int(end)}", f"{int(lag)}"])
    omitted = int(now.get("loosely_consumer_lag_series_omitted"))
    out = _table(table, ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"], 2)
    return [*out, f"({omitted} group partitions past the broker's series bound)"] if omitted else out


def _dicts(now: Scrape, name: str) -> Iterator[tuple[dict[str, str], float]]:
    for labels, value in now.series(name).items():
        yield dict(labels), value


def render(now: Scrape, before: Scrape | None, source: str, sort: str = "lag") -> str:
    lines = [
        f"loosely top - {source} - {_clock(now.at_s)}",
        f"connections: {int(now.get('loosely_connections_active'))} active, "
        f"{int(now.get('loosely_connections_total'))} accepted",
        "",
    ]
    topics = sorted({dict(k)["topic"] for k in now.series("loosely_topic_messages_in_total")}
                    | {dict(k)["topic"] for k in now.series("loosely_log_size_bytes")})
    rows = []
    for t in topics:
        key = (("topic", t),)
        size = sum(v for k, v in now.series("loosely_log_size_bytes").items() if dict(k)["topic"] == t)
        end = sum(v for k, v in now.series("loosely_log_end_offset").items() if dict(k)["topic"] == t)
        rows.append([t, f"{_rate(now, before, 'loosely_topic_messages_in_total', key):.0f}",
                     f"{_rate(now, before, 'loosely_topic_bytes_in_total', key):.0f}",
                     f"{_rate(now, before, 'loosely_topic_bytes_out_total', key):.0f}", f"{int(size)}", f"{int(end)}"])
    lines += _table(rows, ["TOPIC", "MSG/S IN", "B/S IN", "B/S OUT", "LOG BYTES", "MESSAGES"])
    lines.append("")
    rows = []
    for labels in sorted(now.series("loosely_requests_total")):
        api = dict(labels)["api"]
        rows.append([api, f"{_rate(now, before, 'loosely_requests_total', labels):.1f}",
                     f"{int(now.series('loosely_requests_total')[labels])}",
                     f"{int(now.series('loosely_request_errors_total').get(labels, 0))}",
                     _fmt_s(_quantile(now, before, api, 0.5)), _fmt_s(_quantile(now, before, api, 0.99))])
    lines += _table(rows, ["API", "REQ/S", "TOTAL", "ERRORS", "P50", "P99"])
    states = now.series("loosely_group_state")
    if states:
        lines.append("")
        rows = []
        for labels in sorted(states):
            d = dict(labels)
            lag = sum(v for k, v in now.series("loosely_consumer_lag").items() if dict(k)["group"] == d["group"])
            lag = now.series("loosely_consumer_group_lag").get((("group", d["group"]),), lag)
            members = now.get("loosely_group_members", group=d["group"])
            rows.append([d["group"], d["state"], f"{int(members)}", f"{int(lag)}"])
        lines += _table(rows, ["GROUP", "STATE", "MEMBERS", "LAG"], 2)
    if now.series("loosely_consumer_lag"):
        lines.append("")
        lines += _partition_lag(now, sort)
    if now.series("loosely_telemetry_pushes_total"):
        lines.append("")
        lines += _clients(now)
    return "\n".join(lines) + "\n"


def _clients(now: Scrape) -> list[str]:
    """One row per client pushing its metrics (KIP-714), the most recent push first."""
    rows = []
    for labels, pushes in now.series("loosely_telemetry_pushes_total").items():
        d = dict(labels)
        age = now.series("loosely_telemetry_push_age_seconds").get(labels)
        software = f"{d.get('client_software_name', '')} {d.get('client_software_version', '')}".strip()
        rows.append((age if age is not None else float("inf"), [
            d.get("client_id", ""), d.get("client_instance_id", "")[:8], software or "-", f"{int(pushes)}",
            f"{int(now.series('loosely_telemetry_series').get(labels, 0))}", _age(age)]))
    rows.sort(key=lambda r: (r[0], r[1]))
    return _table([r for _, r in rows], ["CLIENT", "INSTANCE", "SOFTWARE", "PUSHES", "SERIES", "LAST PUSH"], 3)


def _one_line(e: BaseException) -> str:
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        e = e.reason if isinstance(e.reason, BaseException) else OSError(str(e.reason))
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


class Feed(Generic[T]):
    """One source polled every ``interval_s`` on a daemon thread: its latest value (and the one before, for rates),
    or the error and since when it has been failing. ``wake`` is called after each poll."""

    def __init__(self, name: str, poll: Callable[[], T], interval_s: float, wake: Callable[[], None]) -> None:
        self.name = name
        self._poll = poll
        self._interval_s = interval_s
        self._wake = wake
        self._lock = threading.Lock()
        self.latest: T | None = None
        self.previous: T | None = None
        self.error: str | None = None
        self.down_since_s: float | None = None
        self.back_at_s: float | None = None  # when it answered again after failing
        self._thread = threading.Thread(target=self._run, name=f"top-{name}", daemon=True)

    def start(self) -> Feed[T]:
        self._thread.start()
        return self

    def state(self) -> tuple[T | None, T | None, str | None, float | None, float | None]:
        with self._lock:
            return self.latest, self.previous, self.error, self.down_since_s, self.back_at_s

    def poll_once(self) -> Feed[T]:
        try:
            value = self._poll()
        except Exception as e:  # a source that fails is polled again; the screen says why
            with self._lock:
                if self.down_since_s is None:
                    self.down_since_s = time.time()
                self.error = _one_line(e)
        else:
            with self._lock:
                back = self.down_since_s is not None
                if back:
                    self.back_at_s = time.time()
                self.down_since_s = self.error = None
                # rates need two answers of the same run: after an outage the one before is from the old broker
                self.previous, self.latest = (None if back else self.latest), value
        return self

    def _run(self) -> None:
        while True:  # a daemon thread: it ends with the process
            self.poll_once()
            self._wake()
            time.sleep(self._interval_s)


def _waiting(what: str, error: str | None, since_s: float | None) -> str:
    return f"waiting for {what} (since {_clock(since_s or time.time())}): {error}"


# -- the sources --

def _metrics_url(spec: str) -> str:
    """``HOST:PORT`` or an http(s) URL -> the URL; ValueError naming what is wrong with anything else."""
    url = spec if "://" in spec else f"http://{spec}/metrics"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is no number
    except ValueError as e:
        raise ValueError(f"--metrics {spec!r}: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--metrics {spec!r}: expected HOST:PORT or an http(s):// URL")
    return url


def _scrape(url: str, timeout_s: float) -> Scrape:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        body = resp.read()
    try:
        return parse_scrape(body.decode(), time.time())
    except ValueError as e:
        raise ValueError(f"the answer is not Prometheus metrics ({_one_line(e)})") from None


class _ViewsSource:
    """Lag and freshness of the view versions in a sink, as ``loosely views status`` computes them. The sink is
    opened on the polling thread at its first poll and kept (SQLite connections belong to one thread)."""

    def __init__(self, sink_url: str, bootstrap: str, timeout_s: float, client_config: dict[str, str]) -> None:
        self.sink_url, self.bootstrap, self.timeout_s = sink_url, bootstrap, timeout_s
        self.client_config = client_config
        self._sink: Any = None

    def __call__(self) -> list[Any]:
        from loosely.cli.views_cmd import _catalog, _status_rows  # noqa: PLC0415 - only with --views
        from loosely.views import open_sink  # noqa: PLC0415

        if self._sink is None:
            self._sink = open_sink(self.sink_url)
        cat = _catalog(self._sink)
        return _status_rows(cat, cat.names(), self.bootstrap, self._sink, timeout_s=self.timeout_s,
                            client_config=self.client_config)


def _minted_at_s(version: int) -> float | None:
    """When a version minted as ``yyyyMMddHHmmssSSS`` UTC (Java's and loosely's default minter) was minted.

    >>> _minted_at_s(20231114221320123), _minted_at_s(7)
    (1700000000.123, None)
    """
    text = str(version)
    if len(text) != 17:
        return None
    try:
        t = dt.datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return t.timestamp() + int(text[14:]) / 1000


def _hollow_announcement(spec: str) -> tuple[int | None, float | None]:
    """The announced version of a Hollow store and when it was made: the time in the version when it holds one,
    else (a directory) when ``announced.version`` was written."""
    from loosely.hollow.api import FilesystemBlobStore, S3BlobStore  # noqa: PLC0415 - only with --hollow

    if spec.startswith("s3://"):
        bucket, _, prefix = spec[5:].partition("/")
        version = S3BlobStore(bucket, prefix, endpoint_url=os.environ.get("AWS_ENDPOINT_URL")).latest_version()
        return (None, None) if version is None else (int(version), _minted_at_s(int(version)))
    store = FilesystemBlobStore(spec, create=False)
    version = store.latest_version()
    if version is None:
        return None, None
    at_s = _minted_at_s(int(version))
    if at_s is None:
        with contextlib.suppress(OSError):
            at_s = (Path(spec) / "announced.version").stat().st_mtime
    return int(version), at_s


# -- the frame --

Announcement = tuple[int | None, float | None]


@dataclass
class _View:
    metrics_url: str
    metrics: Feed[Scrape]
    views: Feed[list[Any]] | None
    hollow: Feed[Announcement] | None
    sort: str = "lag"
    paused: bool = False


def _frame(v: _View, keys: bool) -> str:
    now, before, error, down_since, back_at = v.metrics.state()
    head = []
    if error is not None:
        head.append(_waiting(v.metrics_url, error, down_since))
    elif back_at is not None and time.time() - back_at < 10 * REDRAW_S:
        head.append(f"reconnected to {v.metrics_url} at {_clock(back_at)}")
    if keys:
        head.append(f"q quit  p pause  s sort lag by {'name' if v.sort == 'lag' else 'lag'}"
                    + ("  [PAUSED]" if v.paused else ""))
    if now is None:
        body = "" if error is not None else f"connecting to {v.metrics_url} ...\n"
    else:
        body = render(now, before, v.metrics_url if error is None else f"{v.metrics_url}, last scraped", v.sort)
    return "\n".join(head) + ("\n" if head else "") + body + _sections(v.views, v.hollow)


def _sections(views: Feed[list[Any]] | None, hollow: Feed[Announcement] | None) -> str:
    out = []
    if views is not None:
        out += _section(views, "views", lambda rows: _views_table(views.name, rows))
    if hollow is not None:
        out += _section(hollow, "hollow", lambda ann: _announcement_line(hollow.name, ann))
    return "".join(line + "\n" for line in out)


def _section(feed: Feed[T], label: str, show: Callable[[T], str]) -> list[str]:
    """The last answer of ``feed``, under a "waiting" line while it fails."""
    value, _, error, since, _ = feed.state()
    out = [""]
    if error is not None:
        out.append(f"{label}: {_waiting(feed.name, error, since)}")
    if value is not None:
        out.append(show(value))
    return out


def _views_table(sink: str, rows: list[Any]) -> str:
    from loosely.views._status import render_table  # noqa: PLC0415 - only with --views

    return render_table(rows) if rows else f"views {sink}: no view versions yet"


def _announcement_line(store: str, ann: Announcement) -> str:
    version, at_s = ann
    if version is None:
        return f"hollow {store}: nothing announced"
    return f"hollow {store}: announced {version}, age {_age(None if at_s is None else max(0.0, time.time() - at_s))}"


# -- the loops --

def _once(args: argparse.Namespace, url: str) -> int:
    try:
        before = _scrape(url, args.timeout)
        time.sleep(args.interval)
        now = _scrape(url, args.timeout)
    except (OSError, ValueError) as e:  # URLError is an OSError; ValueError: not the Prometheus text format
        print(f"loosely top: cannot scrape {url}: {_one_line(e)}", file=sys.stderr)
        return 1
    views, hollow = _extra_feeds(args, _nop)
    sys.stdout.write(render(now, before, url) + _sections(views and views.poll_once(), hollow and hollow.poll_once()))
    return 0


def _nop() -> None:
    pass


def _extra_feeds(args: argparse.Namespace, wake: Callable[[], None]
                 ) -> tuple[Feed[list[Any]] | None, Feed[Announcement] | None]:
    views = hollow = None
    if args.views:
        source = _ViewsSource(args.views, args.bootstrap, args.timeout, args.kafka_config)
        views = Feed(args.views, source, args.interval, wake)
    if args.hollow:
        hollow = Feed(args.hollow, lambda: _hollow_announcement(args.hollow), args.interval, wake)
    return views, hollow


@contextlib.contextmanager
def _terminal(fd: int) -> Iterator[None]:
    """The alternate screen in cbreak mode (keys arrive one by one, Ctrl-C still interrupts), undone on exit."""
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    sys.stdout.write("\x1b[?1049h\x1b[?25l")
    sys.stdout.flush()
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        sys.stdout.write("\x1b[?25h\x1b[?1049l")
        sys.stdout.flush()


def _live(args: argparse.Namespace, url: str) -> int:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)

    def wake() -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(wake_w, b".")

    view = _View(url, Feed(url, lambda: _scrape(url, args.timeout), args.interval, wake), *_extra_feeds(args, wake))
    keys = sys.stdin.isatty() and sys.stdout.isatty()
    signal.signal(signal.SIGTERM, _interrupt)
    for f in (view.metrics, view.views, view.hollow):
        if f is not None:
            f.start()
    try:
        with _terminal(sys.stdin.fileno()) if keys else contextlib.nullcontext():
            if keys:
                _draw_loop(view, wake_r)
            else:
                while True:  # a pipe: a frame per interval
                    time.sleep(args.interval)
                    sys.stdout.write(_frame(view, keys=False) + "\n")
                    sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `loosely top | head`: the reader is gone, so is the reason to run
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
    return 0


def _interrupt(_sig: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _draw_loop(view: _View, wake_r: int) -> None:
    """Redraw after each poll and every REDRAW_S, and at once after a key; return on ``q``."""
    stdin = sys.stdin.fileno()
    while True:
        ready, _, _ = select.select([wake_r, stdin], [], [], REDRAW_S)
        if wake_r in ready:
            os.read(wake_r, 4096)
        if stdin in ready:
            for key in os.read(stdin, 64).decode(errors="replace"):
                if key in "qQ":
                    return
                if key == "p":
                    view.paused = not view.paused
                elif key == "s":
                    view.sort = "name" if view.sort == "lag" else "lag"
        elif view.paused:
            continue
        size = shutil.get_terminal_size()
        lines = _frame(view, keys=True).splitlines()[: size.lines - 1]
        sys.stdout.write("\x1b[H\x1b[2J" + "\n".join(line[: size.columns] for line in lines))
        sys.stdout.flush()


def _top(args: argparse.Namespace) -> int:
    if args.interval <= 0 or args.timeout <= 0:
        print("loosely top: --interval and --timeout must be above 0", file=sys.stderr)
        return 2
    try:
        url = _metrics_url(args.metrics)
    except ValueError as e:
        print(f"loosely top: {e}", file=sys.stderr)
        return 2
    return _once(args, url) if args.once else _live(args, url)


def add_top_command(sub: Any) -> None:
    p = sub.add_parser("top", help="live view of a broker's metrics in the terminal (q quits)")
    p.add_argument("--metrics", required=True, metavar="URL|HOST:PORT",
                   help="the broker's Prometheus endpoint (loosely broker --metrics-listen)")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default 2)")
    p.add_argument("--timeout", type=float, default=TIMEOUT_S, metavar="SECONDS",
                   help="one poll of a source gives up after this (default %(default)g)")
    p.add_argument("--once", action="store_true",
                   help="print one frame and exit (1 when the endpoint does not answer)")
    p.add_argument("--views", metavar="SINK_URL", help="also show the view versions in this sink (needs -b)")
    p.add_argument("-b", "--bootstrap", default="127.0.0.1:9092",
                   help="Kafka bootstrap servers, for --views lag (default %(default)s)")
    add_client_options(p)
    p.add_argument("--hollow", metavar="DIR|s3://BUCKET/PREFIX", help="also show this Hollow store's announcement")
    p.set_defaults(func=_top)
