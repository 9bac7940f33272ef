"""Java Hollow's HollowProducer / HollowConsumer and loosely's Producer / Consumer share filesystem blob stores.

Every direction is covered with the published Java jar (interop/hollow/HollowApiInterop.java):

* a Java consumer walks a Python producer's versions, applying its deltas, and sees exactly the state a Python
  consumer sees (the dump format is the one the core's interop suite checks byte for byte);
* a Python consumer walks a Java producer's versions the same way;
* the chain changes hands: Python produces, a Java producer restores and continues, a Python producer restores
  from Java's version and continues again -- and consumers of either language follow the whole chain with
  deltas only (one snapshot at the start, no double snapshot).
"""

from __future__ import annotations

import re
from pathlib import Path

from hollow.api.models import Catalog, Movie
from hollow.javarun import Java
from loosely.hollow.api import Consumer, FilesystemBlobStore, Producer, Version
from loosely.hollow.core import dump_state


def _java(java: Java, *args: object) -> str:
    return java.run("HollowApiInterop", *map(str, args))


def _java_walk(java: Java, store: Path, versions: list[Version]) -> list[tuple[int, int, int, str]]:
    """(version, snapshots, deltas, dump) after each refresh of a Java consumer."""
    out = _java(java, "consume", store, *versions)
    parts = re.split(r"^=== (\S+) snapshots=(\d+) deltas=(\d+)\n", out, flags=re.M)[1:]
    return [(int(parts[i]), int(parts[i + 1]), int(parts[i + 2]), parts[i + 3]) for i in range(0, len(parts), 4)]


def _python_walk(store: FilesystemBlobStore, versions: list[Version]) -> list[tuple[int, int, int, str]]:
    c = Consumer(retriever=store, require_digest=False)
    out = []
    for v in versions:
        c.refresh_to(v)
        s = c.statistics()
        assert c.engine is not None
        out.append((int(c.version or 0), s.snapshots_loaded, s.deltas_applied, dump_state(c.engine)))
    return out


def _produce_python(store: FilesystemBlobStore, cycles: int, *, restore: bool, seed: int) -> list[Version]:
    p = Producer(publisher=store, announcer=store, retriever=store, data_model=[Movie], snapshot_every_cycles=2,
                 require_digest=False)
    cat = Catalog(seed=seed)
    if restore:
        p.restore(store.latest_version())
        # carry on with the restored records: the catalog starts from them
        from loosely.hollow.core import TypedReader

        assert p.read_state is not None
        cat.movies = {m.id: m for m in TypedReader(p.read_state, Movie)}
    versions = []
    for _ in range(cycles):
        cat.advance()
        v = p.run_cycle(cat.populate)
        assert v is not None
        versions.append(v)
    return versions


def _produce_java(java: Java, store: Path, first: int, cycles: int, seed: int) -> list[Version]:
    out = _java(java, "produce", store, first, cycles, seed)
    return [Version(int(v)) for v in re.findall(r"^announced (\d+)$", out, flags=re.M)]


def test_java_consumer_follows_a_python_producer(java: Java, tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    versions = _produce_python(store, 5, restore=False, seed=3)
    java_steps = _java_walk(java, tmp_path, versions)
    python_steps = _python_walk(store, versions)
    assert [s[:3] for s in java_steps] == [(v, 1, i) for i, v in enumerate(versions)]  # deltas, not snapshots
    for (v, _, _, jdump), (_, _, _, pdump) in zip(java_steps, python_steps, strict=True):
        assert jdump == pdump, v


def test_python_consumer_follows_a_java_producer(java: Java, tmp_path: Path) -> None:
    versions = _produce_java(java, tmp_path, 1_000, 4, seed=5)
    assert versions == [1_000, 1_001, 1_002, 1_003]
    store = FilesystemBlobStore(tmp_path)
    python_steps = _python_walk(store, versions)
    java_steps = _java_walk(java, tmp_path, versions)
    assert [s[:3] for s in python_steps] == [(v, 1, i) for i, v in enumerate(versions)]
    assert [s[3] for s in python_steps] == [s[3] for s in java_steps]
    assert Consumer(retriever=store, watcher=store, require_digest=False).refresh() == versions[-1]


def test_the_chain_changes_hands_and_consumers_never_double_snapshot(java: Java, tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    first = _produce_python(store, 3, restore=False, seed=7)
    by_java = _produce_java(java, tmp_path, first[-1] + 1, 2, seed=8)  # restores from Python's last version
    again = _produce_python(store, 2, restore=True, seed=9)  # restores from Java's last version
    versions = first + by_java + again
    assert versions == sorted(versions) and store.latest_version() == versions[-1]
    java_steps = _java_walk(java, tmp_path, versions)
    python_steps = _python_walk(store, versions)
    expected = [(v, 1, i) for i, v in enumerate(versions)]
    assert [s[:3] for s in java_steps] == expected
    assert [s[:3] for s in python_steps] == expected
    assert [s[3] for s in java_steps] == [s[3] for s in python_steps]
