"""A runner that follows the version a sink serves: blue/green without stopping anything by hand.

Theory of operation. A :class:`Follower` runs one :class:`~loosely.views._runner.Runner` at a time, for the version
the sink's catalog says is serving, or for the definition's own version when that is newer (new code deployed
before its rebuild: it is built beside the serving version and waits for a switch; with nothing serving yet, it
starts serving once caught up). Code written for version N never writes into a version below N. Every
``catalog_check_ms`` the runner asks the catalog two things: whether its version still exists, and (``until``)
whether the version to run has changed. When a rebuild has switched to N+1, the runner for N
writes what it has read, returns, and the follower loads the definition again (``load``: the command line
re-imports the module, so new code deployed beside the rebuild is what runs N+1) and starts a runner for N+1 in
the same process. A version dropped under it (a rebuild with ``--drop-delay-ms 0``, ``views drop``) ends its
runner with :class:`~loosely.views._sink.VersionDropped`, which the follower treats the same way. Nothing else in
the process stops: ``loosely views run --serve`` answers from the catalog throughout, so its readers see N, then
N+1, each complete.

Pinned runners (``--version N``) are plain :class:`Runner` s: they keep N when it stops serving, and stop with
:class:`VersionDropped` when N is dropped.

The decision is a pure function, :func:`target`:

>>> target(serving=None, definition=1)
1
>>> target(serving=2, definition=1)
2
>>> target(serving=1, definition=2)
2
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from loosely.views._model import View
from loosely.views._runner import Runner, RunnerConfig, RunnerStatistics
from loosely.views._sink import Catalog, Sink, VersionDropped

__all__ = ["Follower", "target"]

log = logging.getLogger(__name__)


def target(serving: int | None, definition: int) -> int:
    """The version a follower runs: the serving one, or the definition's when nothing serves or it is newer."""
    return definition if serving is None else max(serving, definition)


class Follower:
    """Keeps the serving version of a view up to date, moving to each version a switch makes serving.

    ``load()`` returns the view's definition as deployed now; it is called for each runner (the command line
    imports the module again). One thread calls :meth:`run`; :meth:`stop`, :meth:`statistics` and :attr:`runner`
    may be used from others.
    """

    def __init__(self, load: Callable[[], View[Any, Any]], sink: Sink, bootstrap_servers: str,
                 config: RunnerConfig | None = None) -> None:
        config = config or RunnerConfig()
        if config.group_id is not None and "{version}" not in config.group_id:
            raise ValueError("a follower's consumer group must contain {version}: each version has its own")
        self._load = load
        self.sink = sink
        self._catalog = sink if isinstance(sink, Catalog) else None
        self._bootstrap = bootstrap_servers
        self.config = config
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.runner: Runner | None = None
        self.handovers = 0

    def _serving(self, name: str) -> int | None:
        """The serving version, asking again (one line per failure, until :meth:`stop`) while the catalog cannot be
        read: a follower must not guess which version to run."""
        while self._catalog is not None:
            try:
                return self._catalog.serving_version(name)
            except Exception as e:  # a catalog on a server that is away (Sphinx, InfluxDB, PostgreSQL)
                log.warning("%s: cannot read the catalog (%s); retrying", name, e)
                if self._stop.wait(self.config.catalog_check_ms / 1000):
                    return None
        return None

    def _switched(self, view: View[Any, Any], definition: int) -> bool:
        """Whether a switch made another version than ``view``'s the one to run (``False`` while the catalog
        cannot be read); ``definition`` is the version the code loaded for ``view`` names."""
        try:
            now = None if self._catalog is None else self._catalog.serving_version(view.name)
        except Exception as e:
            log.debug("%s: catalog: %s", view.id, e)
            return False
        return target(now, definition) != view.version

    def _next_runner(self, previous: View[Any, Any] | None) -> tuple[Runner, int]:
        """The runner of the version to run now, and the version its definition names."""
        definition = self._load()  # loaded again at each hand-over: the code deployed for the new version
        version = target(self._serving(definition.name), definition.version)
        view = definition if version == definition.version else definition.with_version(version)
        if previous is not None and version == previous.version:
            raise VersionDropped(f"{previous.id} was dropped, and its definition names no version newer than the "
                                 "serving one")
        if previous is not None:
            log.info("%s no longer serves; now running %s", previous.id, view.id)
        if version != definition.version:
            log.info("%s serves; running it with the definition of %s", view.id, definition.id)
        group = None if self.config.group_id is None else self.config.group_id.replace("{version}", str(version))
        return Runner(view, self.sink, self._bootstrap, replace(self.config, group_id=group)), definition.version

    def run(self, *, until_caught_up: bool = False) -> RunnerStatistics:
        """Run until :meth:`stop` (or, with ``until_caught_up``, until the version serving then has caught up).
        Raises what a runner raises, except :class:`VersionDropped` for a version that no longer serves."""
        view: View[Any, Any] | None = None
        while True:
            runner, definition = self._next_runner(view)
            with self._lock:
                self.runner = runner
            if self._stop.is_set():
                runner.stop()
            view = runner.view
            try:
                runner.run(until_caught_up=until_caught_up,
                           until=functools.partial(self._switched, view, definition))
                moved = not self._stop.is_set() and self._switched(view, definition)
            except VersionDropped as e:
                log.info("%s", e)
                moved = not self._stop.is_set()
            finally:
                runner.close()
            if not moved:
                return runner.statistics()
            self.handovers += 1

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            if self.runner is not None:
                self.runner.stop()

    def statistics(self) -> RunnerStatistics | None:
        with self._lock:
            return None if self.runner is None else self.runner.statistics()
