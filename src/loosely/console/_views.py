"""The views page's data: each sink's view versions with their state, lag and freshness, and the blue/green switch.

A sink is named by its URL (``sqlite:///views.db``, ``postgresql://...``), as ``loosely views status`` takes it;
the numbers are :func:`loosely.views.view_status`'s, so the page and the command agree. Sinks are opened per
request and closed after (a SQLite file or a Postgres connection: cheap next to the Kafka calls the status needs),
and a sink that cannot be opened is one line on the page, beside the others that can.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loosely.console._cluster import ConsoleError
from loosely.views import Catalog, SinkError, ViewError, default_groups, open_sink, view_status

__all__ = ["SinkStatus", "ViewsBrowser"]


@dataclass(frozen=True, slots=True)
class SinkStatus:
    url: str
    rows: tuple[Any, ...]  # loosely.views.StatusRow, one per version
    error: str | None


def _catalog(url: str) -> Any:
    try:
        sink = open_sink(url)
    except (ViewError, SinkError, OSError, ValueError) as e:
        raise ConsoleError(f"views sink {url}: {e}") from None
    if not isinstance(sink, Catalog):
        sink.close()
        raise ConsoleError(f"views sink {url} keeps no versions to show or switch")
    return sink


class ViewsBrowser:
    def __init__(self, sinks: Sequence[str], bootstrap: str, client_config: Mapping[str, str],
                 timeout_s: float) -> None:
        self.sinks = list(sinks)
        self.bootstrap = bootstrap
        self.client_config = dict(client_config)
        self.timeout_s = timeout_s

    def status(self) -> list[SinkStatus]:
        out = []
        for url in self.sinks:
            try:
                sink = _catalog(url)
            except ConsoleError as e:
                out.append(SinkStatus(url, (), str(e)))
                continue
            try:
                infos = [i for n in sink.names() for i in sink.versions(n)]
                groups = {(i.name, i.version): default_groups(i.name, i.version, sink) for i in infos}
                rows = view_status(infos, self.bootstrap, int(time.time() * 1000), groups, self.timeout_s,
                                   client_config=self.client_config)
                out.append(SinkStatus(url, tuple(rows), None))
            except Exception as e:
                out.append(SinkStatus(url, (), f"views sink {url}: {e}"))
            finally:
                sink.close()
        return out

    def switch(self, url: str, name: str, version: int) -> None:
        if url not in self.sinks:
            raise ConsoleError(f"{url} is not one of this console's views sinks")
        sink = _catalog(url)
        try:
            sink.switch(name, version)
        except (ViewError, SinkError, KeyError, ValueError) as e:
            raise ConsoleError(f"switch {name} to version {version}: {e}") from None
        finally:
            sink.close()
