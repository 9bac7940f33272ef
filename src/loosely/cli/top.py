"""``loosely top``: a live terminal view of a broker, read from its Prometheus endpoint.

It scrapes ``--metrics URL`` every ``--interval`` seconds and shows rates computed between two scrapes: messages
and bytes per second per topic, requests per second and latency percentiles per API (from the histogram buckets),
connections, log sizes, and consumer-group states with lag. ``--once`` prints one frame (two scrapes) and exits,
for scripts and tests. Ctrl-C quits.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Scrape", "add_top_command", "parse_scrape", "render"]

Labels = tuple[tuple[str, str], ...]


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


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    cells = [header, *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
            for r in cells]


def render(now: Scrape, before: Scrape | None, source: str) -> str:
    lines = [
        f"loosely top - {source} - {time.strftime('%H:%M:%S', time.localtime(now.at_s))}",
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
            members = now.get("loosely_group_members", group=d["group"])
            rows.append([d["group"], d["state"], f"{int(members)}", f"{int(lag)}"])
        lines += _table(rows, ["GROUP", "STATE", "MEMBERS", "LAG"])
    return "\n".join(lines) + "\n"


def _fetch(url: str) -> Scrape:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return parse_scrape(resp.read().decode(), time.time())


def _top(args: argparse.Namespace) -> int:
    url = args.metrics if "://" in args.metrics else f"http://{args.metrics}/metrics"
    before: Scrape | None = None
    try:
        while True:
            try:
                now = _fetch(url)
            except (OSError, urllib.error.URLError) as e:
                print(f"loosely top: cannot scrape {url}: {e}", file=sys.stderr)
                return 1
            if before is not None or not args.once:
                frame = render(now, before, url)
                if args.once:
                    sys.stdout.write(frame)
                    return 0
                sys.stdout.write("\x1b[H\x1b[2J" + frame)
                sys.stdout.flush()
            before = now
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0


def add_top_command(sub: Any) -> None:
    p = sub.add_parser("top", help="live view of a broker's metrics in the terminal")
    p.add_argument("--metrics", required=True, metavar="URL|HOST:PORT",
                   help="the broker's Prometheus endpoint (loosely broker --metrics-listen)")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default 2)")
    p.add_argument("--once", action="store_true", help="print one frame and exit")
    p.set_defaults(func=_top)
