"""Per-stage timestamps of a RAW Hollow write across its three processes, for ``bench/raw_hollow.py --stages DIR``.

Where a write's milliseconds go is not visible from its two ends (the writer's start, the follower's first sight),
so with ``--stages`` each process stamps the steps between them with ``time.monotonic_ns()`` (CLOCK_MONOTONIC: one
clock for every process of the machine) and writes them to ``DIR`` when it exits:

* the writer process (:func:`writer`): each request's submit (the put's own Python done), the start of the commit
  that took it, the commit's C exchange (``produce_then_end_txn``: Produce sent ... EndTxn answered) entered and
  left, the commit's end, the request's future answered, and (stamped by the bench's load thread) the caller awake;
* the broker (:func:`broker`, run as ``python bench/_stages.py broker ...``): each request's frame complete on its
  connection, its handler started and its answer written, with its API key and client id;
* the follower (:func:`follower`): each change's arrival in the client's tail (librdkafka handed it over) and its
  application to the overlay, and (stamped by the bench) the follower's first sight.

:func:`report` joins them per write (the broker's Produce and EndTxn of a commit: the writer's requests received
within its exchange; the follower's fetch: the first answered to the client's tail after the EndTxn) and prints each
stage's p50 and p99. Everything is patched in from here: the library carries no timing code.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

ENV = "LOOSELY_BENCH_STAGES"
_rows: list[Any] = []
_now = time.monotonic_ns


def _dump_at_exit(role: str, directory: str) -> None:
    out = Path(directory) / f"{role}-{os.getpid()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atexit.register(lambda: out.write_text(json.dumps(_rows)))


# -- the writer process ----------------------------------------------------------------------------------------------

_commit = threading.local()


def writer(directory: str) -> None:
    """Patch the Writer and its transactions to stamp each request's way through the commit."""
    from loosely.hollow.raw import _txn, _writer

    submit, commit, txn_commit, exchange = (_writer.Writer._submit, _writer.Writer._commit,
                                            _txn.WireTransactions.commit, _txn.produce_then_end_txn)

    def stamped_submit(self: Any, ops: Any, shape: Any) -> Any:
        t = _now()
        future = submit(self, ops, shape)
        future.stages = {"submitted": t}
        return future

    def stamped_commit(self: Any, producer: Any, batch: Any) -> None:
        t = _now()
        _commit.stages = {"commit_start": t}
        for r in batch:  # its result is set inside commit: record the stamps on the future first
            st = getattr(r.future, "stages", None)
            if st is not None:
                st.setdefault("commit_start", t)
                st["batch"] = len(batch)
                st["commit"] = _commit.stages
        commit(self, producer, batch)

    def stamped_txn_commit(self: Any, records: Any, timeout_s: float) -> Any:
        out = txn_commit(self, records, timeout_s)
        st = getattr(_commit, "stages", None)
        if st is not None:
            st["commit_end"] = _now()
            st["records"] = len(records)
            st["bytes"] = sum(len(r.value or b"") for r in records)
        return out

    def stamped_exchange(*args: Any, **kwargs: Any) -> Any:
        st = getattr(_commit, "stages", None)
        if st is not None:
            st["exchange_in"] = _now()
        out = exchange(*args, **kwargs)
        if st is not None:
            st["exchange_out"] = _now()
        return out

    _writer.Writer._submit = stamped_submit  # type: ignore[method-assign]
    _writer.Writer._commit = stamped_commit  # type: ignore[method-assign]
    _txn.WireTransactions.commit = stamped_txn_commit  # type: ignore[method-assign]
    _txn.produce_then_end_txn = stamped_exchange
    _dump_at_exit("writer", directory)


def writer_done(key: str, started_ns: int, future: Any) -> None:
    """The bench's load thread got its answer: keep the request's stamps."""
    st = dict(getattr(future, "stages", {}))
    commit = st.pop("commit", {})
    _rows.append({"key": key, "started": started_ns, "acked": _now(), **st,
                  **{k: v for k, v in commit.items() if k != "commit_start"}})


# -- the broker ------------------------------------------------------------------------------------------------------

_CLIENT_ID = struct.Struct(">h")


def broker() -> None:
    """Patch the broker's connections and dispatch to stamp each request (before the CLI starts it)."""
    from loosely.broker import server

    received: dict[int, int] = {}
    init, dispatch = server._Connection.__init__, server.Broker.dispatch

    class StampingQueue(asyncio.Queue):  # type: ignore[type-arg]
        def put_nowait(self, item: Any) -> None:
            received[id(item)] = _now()
            super().put_nowait(item)

    def stamped_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.queue = StampingQueue()

    async def stamped_dispatch(self: Any, frame: bytes, *args: Any, **kwargs: Any) -> Any:
        start = _now()
        api_key = int.from_bytes(frame[:2], "big")
        (n,) = _CLIENT_ID.unpack_from(frame, 8)
        client = bytes(frame[10:10 + max(n, 0)]).decode(errors="replace")
        out = await dispatch(self, frame, *args, **kwargs)
        _rows.append((api_key, client, received.pop(id(frame), start), start, _now()))
        return out

    server._Connection.__init__ = stamped_init  # type: ignore[method-assign]
    server.Broker.dispatch = stamped_dispatch  # type: ignore[method-assign]
    _dump_at_exit("broker", os.environ[ENV])


# -- the follower ----------------------------------------------------------------------------------------------------


def follower(directory: str) -> None:
    """Patch the change tail to stamp each record's hand-over by librdkafka and its application."""
    from loosely.hollow.raw import _log

    init = _log.ChangeTail.__init__

    def stamped_init(self: Any, dataset: Any, apply: Any, *args: Any, **kwargs: Any) -> None:
        def stamped_apply(partition: int, offset: int, key: bytes, value: bytes | None) -> None:
            t = _now()
            apply(partition, offset, key, value)
            _rows.append({"tail_key": key.decode(errors="replace"), "handed": t, "applied": _now()})

        init(self, dataset, stamped_apply, *args, **kwargs)

    _log.ChangeTail.__init__ = stamped_init  # type: ignore[method-assign]
    _dump_at_exit("follower", directory)


def follower_saw(key: str, started_ns: int) -> None:
    _rows.append({"seen_key": key, "started": started_ns, "seen": _now()})


# -- the report ------------------------------------------------------------------------------------------------------

PRODUCE, FETCH, END_TXN = 0, 1, 26


def _pct(values: list[float]) -> str:
    if not values:
        return "no samples"
    s = sorted(values)
    return (f"p50 {s[len(s) // 2]:7.3f}  p99 {s[min(len(s) - 1, int(0.99 * len(s)))]:7.3f}  "
            f"max {s[-1]:7.3f} ms  (n={len(s)})")


def report(directory: str, broker_directory: str) -> None:
    """Join the three processes' stamps per write (the writer's and the follower's in ``directory``, the broker's
    in ``broker_directory``) and print each stage's p50 and p99."""
    rows: dict[str, list[Any]] = {"writer": [], "broker": [], "follower": []}
    for f in [*Path(directory).glob("*.json"), *Path(broker_directory).glob("broker-*.json")]:
        rows[f.name.split("-")[0]].extend(json.loads(f.read_text()))
    writes = [r for r in rows["writer"] if "exchange_in" in r and "commit_end" in r]
    requests = sorted(rows["broker"], key=lambda r: r[2])
    produces = [r for r in requests if r[0] == PRODUCE and r[1].startswith("raw-writer-")]
    ends = [r for r in requests if r[0] == END_TXN and r[1].startswith("raw-writer-")]
    fetches = [r for r in requests if r[0] == FETCH and r[1] == "raw-client"]
    # the tail sees the key as the log has it: ["Rec", ["<id>"]]
    handed = {json.loads(r["tail_key"])[1][0]: r for r in rows["follower"] if "tail_key" in r}
    seen = {r["seen_key"]: r for r in rows["follower"] if "seen_key" in r}
    ms = 1e-6
    stages: dict[str, list[float]] = {}

    def add(name: str, a: int | None, b: int | None) -> None:
        if a is not None and b is not None:
            stages.setdefault(name, []).append((b - a) * ms)

    for w in writes:
        produce = next((r for r in produces if w["exchange_in"] <= r[2] <= w["exchange_out"]), None)
        end = next((r for r in ends if w["exchange_in"] <= r[2] <= w["exchange_out"]), None)
        add("put's own Python (started -> submitted)", w["started"], w["submitted"])
        add("queued (submitted -> its commit starts)", w["submitted"], w["commit_start"])
        add("commit: batch and encoding (-> exchange entered)", w["commit_start"], w["exchange_in"])
        add("exchange (C, no GIL): entered -> left", w["exchange_in"], w["exchange_out"])
        if produce is not None and end is not None:
            add("  entered -> broker has the Produce frame", w["exchange_in"], produce[2])
            add("  broker: Produce frame -> handler starts", produce[2], produce[3])
            add("  broker: Produce handler (append, answer)", produce[3], produce[4])
            add("  Produce answered -> broker has the EndTxn frame", produce[4], end[2])
            add("  broker: EndTxn frame -> handler starts", end[2], end[3])
            add("  broker: EndTxn handler (markers, answer)", end[3], end[4])
            add("  EndTxn answered -> exchange left (wake-up, GIL)", end[4], w["exchange_out"])
            fetch = next((r for r in fetches if r[4] >= end[4]), None)
            key = w["key"]
            if fetch is not None and key in handed:
                add("follower: EndTxn answered -> its tail's Fetch answered", end[4], fetch[4])
                add("follower: Fetch answered -> librdkafka hands it over", fetch[4], handed[key]["handed"])
        add("commit: answers decoded (exchange left -> commit end)", w["exchange_out"], w["commit_end"])
        add("commit end -> caller awake (futures, GIL)", w["commit_end"], w["acked"])
        if w["key"] in handed:
            h = handed[w["key"]]
            add("follower: hand-over -> overlay applied", h["handed"], h["applied"])
            if w["key"] in seen:
                add("follower: overlay applied -> seen by the polling reader", h["applied"], seen[w["key"]]["seen"])
                add("total: started -> seen by the follower", w["started"], seen[w["key"]]["seen"])
        add("total: started -> acknowledged", w["started"], w["acked"])
    print(f"\nstages of {len(writes)} writes (writer thread 0), {len(produces)} Produce and {len(ends)} EndTxn "
          f"requests, {len(fetches)} tail fetches:")
    for name, values in stages.items():
        print(f"  {name:58} {_pct(values)}")
    batches = [w.get("batch", 0) for w in writes]
    size = [w.get("bytes", 0) for w in writes]
    if batches:
        print(f"  requests per commit p50 {sorted(batches)[len(batches) // 2]}, bytes per commit p50 "
              f"{sorted(size)[len(size) // 2]:,}")


if __name__ == "__main__":  # python bench/_stages.py broker ARGS...: the loosely CLI with the broker stamped
    import runpy

    if sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3])
        raise SystemExit
    broker()
    sys.argv = ["loosely", *sys.argv[1:]]
    runpy.run_module("loosely.cli.main", run_name="__main__")
