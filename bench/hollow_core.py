"""Hollow core benchmark: the same 1M-record dataset and run against the usual alternatives, side by side.

    .venv/bin/python bench/hollow_core.py [--records 1000000] [--lookups 200000]

Dataset: ``Item(id, a, b, c, d: int, ts: long, name: short str, scores: list of 3 ints)``, primary key ``id``;
then a delta: 1 % of records modified, 0.5 % removed, 0.5 % added.  The Hollow blobs are written by Java Hollow
(``interop/hollow/HollowBench.java``); every other backend is built from the same generator (``item()``).

Backends, each measured in a fresh process:

* ``dict``      a Python dict of slotted dataclasses, built in memory
* ``pickle``    the same dict, loaded from a pickle file
* ``arrow``     an Arrow IPC file via a memory map (lookups: ``searchsorted`` on the sorted id column)
* ``sqlite``    a SQLite file with the id as primary key
* ``hollow``    loosely's Hollow core, snapshot memory-mapped (``ReadStateEngine.from_file``)
* ``java``      Java Hollow 7.14.23 (``HollowBench measure``, warm JVM)

Measured: load time (memory-mapped backends: best of three loads in the process, the first one reported
too; Java: a load after a warm-up load), resident memory after loading and after the reads (Java: heap used
after GC), primary key lookup + one field, full record read (every field, the list's values included: the
dict's ``(x.id, ..., list(x.scores))``, Hollow's ``PrimaryKeyIndex.record_reader(expand=("scores",))(k)``;
Hollow's read in parts through ``find``, ``view.record`` and the list's elements is printed too), delta
apply: the first in the process and, as the figure compared, the third (after the delta and the reverse delta), on
both sides alike; Java's third apply reuses heap the first two touched, and so may loosely's (on a virtual
machine, memory first touched since boot costs the hypervisor a fault per page: a first apply varies from 20 to
90 ms with where its pages come from).  Datasets go to ``bench/out``.
Then the physical floors (``bench/_floors.py``): lookups in random accesses over a region the size of each
backend's resident data, the delta apply against a memcpy of the delta and of the shards it replaced.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from _floors import memcpy_bytes_per_s, random_access_ns, time_ratio  # bench/_floors.py
from _needs import require_commands, require_modules  # bench/_needs.py

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
sys.path.insert(0, str(REPO / "tests"))


@dataclass(slots=True)
class Item:
    id: int
    a: int
    b: int
    c: int
    d: int
    ts: int
    name: str
    scores: list[int]


def item(i: int, version: int = 1) -> Item:
    """Keep in step with HollowBench.item()."""
    return Item(
        i,
        (i * 31) % 1000003 + (version - 1),
        i % 97,
        _int32((i * 7) ^ 0x5A5A),
        -i,
        1_600_000_000_000 + i * 1000,
        f"item-{i}",
        [i % 50, (i >> 3) % 50, (i * 11) % 50],
    )


def _int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def delta_changes(n: int) -> tuple[list[int], list[int], list[int]]:
    """(modified, removed, added) ids of the benchmark delta."""
    modified = [i for i in range(0, n, 100)]
    removed = [i for i in range(1, n, 200)]
    added = list(range(n, n + n // 200))
    return modified, removed, added


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def keys_for(n: int, count: int) -> list[int]:
    return np.random.default_rng(12345).integers(0, n, count).tolist()


# --- dataset preparation ---------------------------------------------------------------------------------


def prepare(n: int, lookups: int) -> Path:
    data = OUT / f"data-{n}"
    data.mkdir(parents=True, exist_ok=True)
    if not (data / "delta-1-2").exists():
        from hollow.javarun import compile_java

        java = compile_java(OUT / "classes")
        java.run("HollowBench", "write", str(n), str(data))
    keys = keys_for(n, lookups)
    (data / "keys.bin").write_bytes(np.asarray(keys, dtype="<i4").tobytes())
    if not (data / "items.pickle").exists():
        with open(data / "items.pickle", "wb") as f:
            pickle.dump({i: item(i) for i in range(n)}, f, protocol=pickle.HIGHEST_PROTOCOL)
    if not (data / "items.arrow").exists():
        import pyarrow as pa

        ids = np.arange(n, dtype=np.int64)
        cols = {
            "id": pa.array(ids.astype(np.int32)),
            "a": pa.array([item(i).a for i in range(n)], pa.int32()),
            "b": pa.array((ids % 97).astype(np.int32)),
            "c": pa.array([item(i).c for i in range(n)], pa.int32()),
            "d": pa.array((-ids).astype(np.int32)),
            "ts": pa.array(1_600_000_000_000 + ids * 1000),
            "name": pa.array([f"item-{i}" for i in range(n)]),
            "scores": pa.array([item(i).scores for i in range(n)], pa.list_(pa.int32())),
        }
        table = pa.table(cols)
        with pa.OSFile(str(data / "items.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    if not (data / "items.sqlite").exists():
        db = sqlite3.connect(data / "items.sqlite")
        db.execute("create table items (id integer primary key, a, b, c, d, ts, name, scores)")
        db.executemany(
            "insert into items values (?,?,?,?,?,?,?,?)",
            ((x.id, x.a, x.b, x.c, x.d, x.ts, x.name, json.dumps(x.scores)) for x in map(item, range(n))),
        )
        db.commit()
        db.close()
    return data


# --- measurements (one backend per process) --------------------------------------------------------------


def _timed(fn: object) -> float:
    assert callable(fn)
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _best(fn: object, repeat: int = 3) -> float:
    return min(_timed(fn) for _ in range(repeat))


def measure(backend: str, data: Path, n: int) -> dict[str, float]:
    keys = np.frombuffer((data / "keys.bin").read_bytes(), dtype="<i4").tolist()
    modified, removed, added = delta_changes(n)
    if backend == "arrow":
        import pyarrow as pa
    if backend == "hollow":
        from loosely.hollow.core import PrimaryKeyIndex, ReadStateEngine
    if backend in ("arrow", "sqlite"):
        keys = keys[: len(keys) // 10]  # point lookups are their weak spot: a tenth of the keys is plenty
    gc.collect()
    base = rss()  # after imports: only the data counts
    result: dict[str, float] = {}
    if backend in ("dict", "pickle"):
        t0 = time.perf_counter()
        if backend == "dict":
            items = {i: item(i) for i in range(n)}
        else:
            with open(data / "items.pickle", "rb") as f:
                items = pickle.load(f)
        result["load_s"] = time.perf_counter() - t0
        gc.collect()
        result["rss_load"] = rss() - base

        def lookup() -> None:
            for k in keys:
                items[k].name  # noqa: B018 -- the access is the benchmark

        def full() -> None:
            for k in keys:
                x = items[k]
                (x.id, x.a, x.b, x.c, x.d, x.ts, x.name, list(x.scores))

        def delta() -> None:
            for i in modified:
                items[i] = item(i, 2)
            for i in removed:
                del items[i]
            for i in added:
                items[i] = item(i)

        result["lookup_s"] = _best(lookup)
        result["full_s"] = _best(full)
        result["rss_reads"] = rss() - base
        result["delta_s"] = _timed(delta)
    elif backend == "arrow":

        def open_arrow() -> None:
            nonlocal table
            table = pa.ipc.open_file(pa.memory_map(str(data / "items.arrow"))).read_all()

        table = None
        loads = [_timed(open_arrow) for _ in range(3)]
        result["load_first_s"], result["load_s"] = loads[0], min(loads)
        assert table is not None
        ids = table.column("id").to_numpy()
        result["rss_load"] = rss() - base
        names = table.column("name").combine_chunks()
        cols = [table.column(c).combine_chunks() for c in ("id", "a", "b", "c", "d", "ts", "name", "scores")]

        int32 = np.int32  # search with the column's own dtype: a Python int makes numpy cast the column

        def lookup() -> None:
            for k in keys:
                names[int(ids.searchsorted(int32(k)))].as_py()

        def full() -> None:
            for k in keys:
                row = int(ids.searchsorted(int32(k)))
                tuple(c[row].as_py() for c in cols)

        result["lookup_s"] = _best(lookup, 1)
        result["full_s"] = _best(full, 1)
        result["rss_reads"] = rss() - base
    elif backend == "sqlite":
        t0 = time.perf_counter()
        db = sqlite3.connect(f"file:{data / 'items.sqlite'}?mode=ro", uri=True, check_same_thread=False)
        result["load_s"] = time.perf_counter() - t0
        result["rss_load"] = rss() - base

        def lookup() -> None:
            cur = db.cursor()
            for k in keys:
                cur.execute("select name from items where id=?", (k,)).fetchone()

        def full() -> None:
            cur = db.cursor()
            for k in keys:
                row = cur.execute("select * from items where id=?", (k,)).fetchone()
                json.loads(row[7])

        result["lookup_s"] = _best(lookup, 1)
        result["full_s"] = _best(full, 1)
        result["rss_reads"] = rss() - base
        mem = sqlite3.connect(":memory:")
        db.backup(mem)

        def delta() -> None:
            with mem:
                mem.executemany("update items set a=? where id=?", ((item(i, 2).a, i) for i in modified))
                mem.executemany("delete from items where id=?", ((i,) for i in removed))
                mem.executemany(
                    "insert into items values (?,?,?,?,?,?,?,?)",
                    ((x.id, x.a, x.b, x.c, x.d, x.ts, x.name, json.dumps(x.scores)) for x in map(item, added)),
                )

        result["delta_s"] = _timed(delta)
    elif backend == "hollow":
        engines = []
        loads = [_timed(lambda: engines.append(ReadStateEngine.from_file(data / "snapshot-1"))) for _ in range(3)]
        result["load_first_s"], result["load_s"] = loads[0], min(loads)
        engine = engines[-1]
        del engines[:-1]
        t0 = time.perf_counter()
        index = PrimaryKeyIndex(engine, "Item")
        result["index_s"] = time.perf_counter() - t0
        result["rss_load"] = rss() - base
        items_state = engine.type("Item")
        lists = engine.type("ListOfInteger").view
        ints = engine.type("Integer").view
        view = items_state.view
        name = index.field_reader("name")
        read = index.record_reader(expand=("scores",))  # the tuple the dict's full read builds, list included
        find = index.find

        def lookup() -> None:
            for k in keys:
                name(k)

        def full() -> None:
            for k in keys:
                read(k)

        # the same compiled reader without the predicted-ordinal loads (_native.c, "compiled readers"): their worth
        unpredicted = index._native.reader(view, items_state.schema.field_names().index("name"), False)  # type: ignore[union-attr]

        def lookup_unpredicted() -> None:
            for k in keys:
                unpredicted(k)

        def full_in_parts() -> None:  # the same read through find, view.record and the list's elements
            record = view.record
            for k in keys:
                r = record(find(k))
                [ints.get(e, 0) for e in lists.elements(r[7])]  # type: ignore[arg-type]

        parts = view.record(find(keys[0]))
        assert read(keys[0]) == (*parts[:7], [ints.get(e, 0) for e in lists.elements(parts[7])])  # type: ignore[arg-type]
        result["lookup_s"] = _best(lookup)
        result["full_s"] = _best(full)
        result["full_parts_s"] = _best(full_in_parts)
        result["lookup_unpredicted_s"] = _best(lookup_unpredicted)
        engine.checksum()  # touch every page: resident memory of the whole dataset
        result["rss_reads"] = rss() - base
        delta = (data / "delta-1-2").read_bytes()
        before = {(t.name, i): s.fixed for t in engine.types() for i, s in enumerate(t.shards)}
        result["delta_cold_s"] = _timed(lambda: engine.apply_delta(delta))
        assert index.find(added[0]) >= 0 and index.find(removed[0]) == -1
        # The floor of an apply: reading the delta and writing the shards it replaced (a shard the delta leaves
        # alone keeps its buffers). Nothing can do that faster than a memcpy of those bytes.
        result["delta_bytes"] = len(delta)
        result["delta_written_bytes"] = sum(
            s.nbytes for t in engine.types() for i, s in enumerate(t.shards) if before.get((t.name, i)) is not s.fixed
        )
        # warm, as Java's warm figure is taken: back with the reverse delta, then the same delta again
        engine.apply_delta((data / "reversedelta-2-1").read_bytes())
        assert index.find(removed[0]) >= 0 and index.find(added[0]) == -1
        result["delta_s"] = _timed(lambda: engine.apply_delta(delta))
        assert index.find(added[0]) >= 0 and index.find(removed[0]) == -1
    else:
        raise ValueError(backend)
    result["lookups"] = len(keys)
    return result


def measure_java(data: Path) -> dict[str, float]:
    from hollow.javarun import compile_java

    java = compile_java(OUT / "classes")
    out = java.run("HollowBench", "measure", str(data), str(data / "keys.bin"))
    raw = json.loads(out.strip().splitlines()[-1])
    return {
        "load_s": raw["load_s"],
        "index_s": raw["index_build_s"],
        "rss_load": raw["heap_with_index_bytes"],
        "rss_reads": raw["heap_with_index_bytes"],
        "lookup_s": raw["lookup_field_s"],
        "full_s": raw["full_read_s"],
        "delta_s": raw["delta_apply_warm_s"],
        "delta_cold_s": raw["delta_apply_cold_s"],
        "lookups": raw["lookups"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=200_000)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--backends", default="dict,pickle,arrow,sqlite,hollow,java")
    args = parser.parse_args()
    data = OUT / f"data-{args.records}"
    if args.measure:
        print(json.dumps(measure(args.measure, data, args.records)))
        return
    backends = args.backends.split(",")
    fresh = not (data / "delta-1-2").exists()  # prepare() has Java Hollow write the blobs, and builds every file
    if fresh or "java" in backends:
        require_commands("java", "javac", why="Java Hollow writes the blobs and is measured beside us: a JDK 17+ "
                                              "(scripts/bootstrap)")
    if "arrow" in backends or not (data / "items.arrow").exists():
        require_modules("pyarrow", why="the Arrow backend (the dev extra)")
    data = prepare(args.records, args.lookups)
    results: dict[str, dict[str, float]] = {}
    for backend in backends:
        if backend == "java":
            results[backend] = measure_java(data)
        else:
            cmd = [sys.executable, __file__, "--records", str(args.records), "--measure", backend]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            results[backend] = json.loads(out.strip().splitlines()[-1])
        print(f"measured {backend}", file=sys.stderr)
    report(results, args.records, args.lookups)
    report_floors(results, data)


ACCESS_NS_RESOLVED = 5.0  # the Python chase's step varies by more than this: below it, no access was measured


def report_floors(results: dict[str, dict[str, float]], data: Path) -> None:
    """Each figure against what the machine itself does (bench/_floors.py), measured now, after the backends."""
    h, d = results.get("hollow"), results.get("dict")
    snapshot_bytes = (data / "snapshot-1").stat().st_size
    print("\nagainst the physical floors (bench/_floors.py):")
    for name, r in (("hollow", h), ("dict", d)):
        if not r:
            continue
        # a random access over a region the size of the backend's own data: what one probe of its lookup costs
        access = random_access_ns(max(int(r["rss_reads"]), 1 << 20))
        print(f"  {access}")
        per_lookup = r["lookup_s"] / r["lookups"] * 1e9
        per_record = r["full_s"] / r["lookups"] * 1e9
        if access.value < ACCESS_NS_RESOLVED:
            print(f"  {name}: its data fits the caches; one access is below what the chase resolves, no ratio")
            continue
        print(f"  {name} key+field {per_lookup:,.0f} ns = {per_lookup / access.value:.1f} random accesses; "
              f"full record {per_record:,.0f} ns = {per_record / access.value:.1f}")
    if h:
        memcpy = memcpy_bytes_per_s()
        print(f"  {memcpy}")
        moved = h["delta_bytes"] + h["delta_written_bytes"]
        print("  " + time_ratio(f"hollow delta apply (reads the {h['delta_bytes'] / 1e6:.2f} MB delta, writes "
                                f"{h['delta_written_bytes'] / 1e6:.1f} MB of shards; floor: a memcpy of both)",
                                h["delta_s"], memcpy.seconds_for(moved)))
        print("  " + time_ratio("hollow delta apply, the first in the process (fresh memory), against the same floor",
                                h["delta_cold_s"], memcpy.seconds_for(moved)))
        j = results.get("java")
        if j:
            print("  " + time_ratio("java delta apply, warm, against the same floor", j["delta_s"],
                                    memcpy.seconds_for(moved)))
        print(f"  hollow resident after reads {h['rss_reads'] / 1e6:.1f} MB against the snapshot's own "
              f"{snapshot_bytes / 1e6:.1f} MB: {h['rss_reads'] / snapshot_bytes:.2f}x the bytes of the data")


def report_reads(h: dict[str, float] | None, d: dict[str, float] | None, j: dict[str, float] | None) -> None:
    """The read targets of issue 18: key + field at most 0.5x the dict, full record at most 0.7x it and Java."""
    if not h:
        return

    def per(r: dict[str, float], what: str) -> float:
        return r[what] / r["lookups"]

    if d:
        print(f"reads / dict:    key+field {per(h, 'lookup_s') / per(d, 'lookup_s'):.2f} (target <= 0.5), "
              f"full record {per(h, 'full_s') / per(d, 'full_s'):.2f} (target <= 0.7)")
    if j:
        print(f"reads / java:    key+field {per(h, 'lookup_s') / per(j, 'lookup_s'):.2f}, "
              f"full record {per(h, 'full_s') / per(j, 'full_s'):.2f} (target <= 1.0)")


def report(results: dict[str, dict[str, float]], n: int, lookups: int) -> None:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v * 1000:9.1f}"

    def mb(v: float | None) -> str:
        return "-" if v is None else f"{v / 1e6:8.1f}"

    def ns(v: float | None, count: float) -> str:
        return "-" if v is None else f"{v / count * 1e9:8.0f}"

    print(f"\n{n:,} records, {lookups:,} random primary-key lookups\n")
    print(
        f"{'backend':8s} {'load ms':>9s} {'RSS load MB':>11s} {'RSS all MB':>10s} "
        f"{'key+field ns':>12s} {'record ns':>9s} {'delta ms':>9s}"
    )
    for name, r in results.items():
        print(
            f"{name:8s} {ms(r.get('load_s'))} {mb(r.get('rss_load')):>11s} {mb(r.get('rss_reads')):>10s} "
            f"{ns(r.get('lookup_s'), r['lookups']):>12s} {ns(r.get('full_s'), r['lookups']):>9s} "
            f"{ms(r.get('delta_s'))}"
        )
    h, d, j = results.get("hollow"), results.get("dict"), results.get("java")
    if h and d:
        ratio = (h["lookup_s"] / h["lookups"]) / (d["lookup_s"] / d["lookups"])
        print(
            f"\nhollow / dict:   memory {h['rss_reads'] / d['rss_reads']:.3f} (target <= 0.1), "
            f"key+field {ratio:.2f} (target <= 1.0)"
        )
    if h and j:
        print(
            f"hollow / java:   memory {h['rss_reads'] / j['rss_reads']:.2f} (target <= 1.2), "
            f"delta apply {h['delta_s'] / j['delta_s']:.2f} (target <= 1.0; each side's third apply, after the delta "
            f"and the reverse delta; the first against the first {h['delta_cold_s'] / j['delta_cold_s']:.2f})"
        )
    report_reads(h, d, j)
    if h and "full_parts_s" in h:
        print(f"hollow full record in parts (find + view.record + the list's elements, before record_reader): "
              f"{h['full_parts_s'] / h['lookups'] * 1e9:,.0f} ns")
    if h and "lookup_unpredicted_s" in h:
        print(f"hollow key+field without the predicted-ordinal loads (field_reader's reader, predict=False): "
              f"{h['lookup_unpredicted_s'] / h['lookups'] * 1e9:,.0f} ns")
    if h:
        java_index = f" (Java {j['index_s'] * 1000:.0f} ms)" if j else ""
        print(
            f"hollow load from mmap: {h['load_s'] * 1000:.1f} ms, first in the process "
            f"{h['load_first_s'] * 1000:.1f} ms (target < 50 ms); primary key index build "
            f"{h['index_s'] * 1000:.0f} ms{java_index}"
        )


if __name__ == "__main__":
    main()
