"""Consumer lag and freshness of every view version in a sink: what ``loosely views status`` prints.

* **lag**: records in the source topics the version has not applied yet (high watermark minus stored position,
  summed over partitions). Exactly-once sinks store their positions themselves; for the others the positions are
  the consumer group's committed offsets.
* **freshness**: how old the newest applied record is (now minus its timestamp). A view with lag 0 is as fresh as
  its source; a large value with lag 0 just means nothing was produced lately.

>>> from loosely.views import TopicPartition
>>> row = status_row(VersionInfo("orders", 2, ("o",), VersionState.SERVING, 0, {TopicPartition("o", 0): 90}, 1_000),
...                  {TopicPartition("o", 0): 100}, now_ms=4_000)
>>> row.lag, row.freshness_ms, row.caught_up
(10, 3000, False)
>>> print(render_table([row]))
VIEW    VERSION  STATE    LAG  FRESHNESS  CAUGHT-UP
orders  2        serving  10   3.0s       no
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as KTopicPartition

from loosely.views._model import TopicPartition
from loosely.views._sink import VersionInfo, VersionState

__all__ = ["StatusRow", "collect", "committed_group", "high_watermarks", "render_table", "status_row"]


@dataclass(frozen=True, slots=True)
class StatusRow:
    name: str
    version: int
    state: str
    lag: int
    freshness_ms: int | None
    caught_up: bool
    partitions: Mapping[str, tuple[int, int]]  # "topic/partition" -> (position, high watermark)

    def as_json(self) -> dict[str, object]:
        return {"view": self.name, "version": self.version, "state": self.state, "lag": self.lag,
                "freshness_ms": self.freshness_ms, "caught_up": self.caught_up,
                "partitions": {k: {"position": p, "high_watermark": h} for k, (p, h) in self.partitions.items()}}


def status_row(info: VersionInfo, highs: Mapping[TopicPartition, int], now_ms: int) -> StatusRow:
    parts = {}
    lag = 0
    for tp, high in sorted(highs.items()):
        pos = info.positions.get(tp, 0)
        parts[f"{tp.topic}/{tp.partition}"] = (pos, high)
        lag += max(0, high - pos)
    fresh = None if info.last_timestamp_ms is None else max(0, now_ms - info.last_timestamp_ms)
    state = info.state.value if isinstance(info.state, VersionState) else str(info.state)
    return StatusRow(info.name, info.version, state, lag, fresh, lag == 0, parts)


STATUS_TIMEOUT_S: Final = 10.0  # how long one status look-up waits for the cluster (``views status --timeout``)


def high_watermarks(bootstrap_servers: str, topics: Iterable[str], timeout_s: float = STATUS_TIMEOUT_S,
                    client_config: Mapping[str, str] | None = None) -> dict[TopicPartition, int]:
    c = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": "loosely-views-status", "log_level": 0,
                  **(client_config or {})})
    try:
        out = {}
        for topic in topics:
            md = c.list_topics(topic, timeout=timeout_s).topics.get(topic)
            if md is None or md.error is not None:
                continue
            for p in md.partitions:
                out[TopicPartition(topic, p)] = c.get_watermark_offsets(KTopicPartition(topic, p), timeout=timeout_s)[1]
        return out
    finally:
        c.close()


def group_positions(bootstrap_servers: str, group_id: str, highs: Iterable[TopicPartition],
                    timeout_s: float = STATUS_TIMEOUT_S, client_config: Mapping[str, str] | None = None
                    ) -> dict[TopicPartition, int]:
    c = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": group_id, "log_level": 0,
                  **(client_config or {})})
    try:
        got = c.committed([KTopicPartition(tp.topic, tp.partition) for tp in highs], timeout=timeout_s)
        return {TopicPartition(k.topic, k.partition): k.offset for k in got if k.offset >= 0}
    finally:
        c.close()


def committed_group(bootstrap_servers: str, groups: Sequence[str], topics: Iterable[str],
                    timeout_s: float = STATUS_TIMEOUT_S, client_config: Mapping[str, str] | None = None
                    ) -> str | None:
    """The first of ``groups`` that has committed an offset on some partition of ``topics``, if any."""
    tps = list(high_watermarks(bootstrap_servers, topics, timeout_s, client_config))
    for g in groups:
        if group_positions(bootstrap_servers, g, tps, timeout_s, client_config):
            return g
    return None


def collect(infos: Iterable[VersionInfo], bootstrap_servers: str, now_ms: int,
            group_of: Mapping[tuple[str, int], Sequence[str]] | None = None, timeout_s: float = STATUS_TIMEOUT_S,
            *, client_config: Mapping[str, str] | None = None) -> list[StatusRow]:
    """A row per version; ``group_of`` names the consumer groups that may hold the positions of versions whose
    sink keeps none: the first that has committed any is measured (as a runner chooses its group).
    ``client_config``: librdkafka settings for a secured cluster (see loosely.clients.client_config)."""
    infos = list(infos)
    highs_all = high_watermarks(bootstrap_servers, {t for i in infos for t in i.topics}, timeout_s, client_config)
    rows = []
    for info in infos:
        highs = {tp: h for tp, h in highs_all.items() if tp.topic in info.topics}
        if not info.positions and group_of and (info.name, info.version) in group_of:
            pos: dict[TopicPartition, int] = {}
            for g in group_of[(info.name, info.version)]:
                pos = group_positions(bootstrap_servers, g, highs, timeout_s, client_config)
                if pos:
                    break
            info = VersionInfo(info.name, info.version, info.topics, info.state, info.created_ms, pos,  # noqa: PLW2901
                               info.last_timestamp_ms)
        rows.append(status_row(info, highs, now_ms))
    return rows


def _age(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    if ms < 3_600_000:
        return f"{ms / 60_000:.1f}m"
    return f"{ms / 3_600_000:.1f}h"


def render_table(rows: Iterable[StatusRow]) -> str:
    table = [("VIEW", "VERSION", "STATE", "LAG", "FRESHNESS", "CAUGHT-UP")]
    for r in rows:
        done = "yes" if r.caught_up else "no"
        table.append((r.name, str(r.version), r.state, str(r.lag), _age(r.freshness_ms), done))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table)
