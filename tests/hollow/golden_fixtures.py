"""Access to the Java-written golden fixtures under ``tests/hollow/golden`` (see ``regenerate.py`` there)."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

from hollow.javarun import split_ops
from loosely.hollow.core import ReadStateEngine

GOLDEN = Path(__file__).resolve().parent / "golden"


@dataclass(frozen=True)
class Chain:
    name: str
    directory: Path
    ops: list[str]
    deep_types: list[str]

    def blob(self, file: str) -> bytes:
        return gzip.decompress((self.directory / f"{file}.gz").read_bytes())

    def blobs(self) -> dict[str, bytes]:
        """Every blob of the fixture by its file name (optional parts included)."""
        return {
            p.name[:-3]: gzip.decompress(p.read_bytes())
            for p in self.directory.glob("*.gz")
            if not p.name.endswith(".txt.gz")
        }

    def parts_of(self, file: str) -> dict[str, bytes]:
        """Optional blob parts belonging to ``file`` (``snapshot_<part>-3`` for ``snapshot-3``)."""
        head, tail = file.split("-", 1)
        found = {}
        for name, data in self.blobs().items():
            if name.startswith(head + "_") and name.endswith("-" + tail) and name.count("-") == file.count("-"):
                found[name[len(head) + 1 : -len(tail) - 1]] = data
        return found

    def java_dumps(self) -> list[tuple[str, str]]:
        return split_ops(gzip.decompress((self.directory / "dump.txt.gz").read_bytes()).decode("utf-8"))

    def java_deep(self, type_name: str) -> list[tuple[str, str]]:
        return split_ops(gzip.decompress((self.directory / f"deep-{type_name}.txt.gz").read_bytes()).decode("utf-8"))

    def replay(self, engine: ReadStateEngine | None, op: str, *, mapped_dir: Path | None = None) -> ReadStateEngine:
        """Apply one ``snapshot:FILE`` / ``delta:FILE`` op and return the (possibly new) engine.

        With ``mapped_dir``, snapshots are written there and memory-mapped instead of read from bytes.
        """
        kind, file = op.split(":", 1)
        parts = self.parts_of(file)
        if kind == "snapshot":
            if mapped_dir is not None:
                (mapped_dir / file).write_bytes(self.blob(file))
                for name, data in parts.items():
                    (mapped_dir / f"{file}.{name}").write_bytes(data)
                part_files = {name: mapped_dir / f"{file}.{name}" for name in parts}
                return ReadStateEngine.from_file(mapped_dir / file, part_files)
            return ReadStateEngine.from_snapshot(self.blob(file), parts)
        assert engine is not None
        engine.apply_delta(self.blob(file), parts)
        return engine


def chain(name: str) -> Chain:
    d = GOLDEN / name
    meta = json.loads((d / "chain.json").read_text())
    return Chain(name, d, meta["ops"], meta["deep_types"])


CHAINS = ["rich", "evolve", "reshard", *sorted(p.name for p in GOLDEN.glob("spec-*"))]
