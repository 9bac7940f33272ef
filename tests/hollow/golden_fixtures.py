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
        return (self.directory / file).read_bytes()

    def java_dumps(self) -> list[tuple[str, str]]:
        return split_ops(gzip.decompress((self.directory / "dump.txt.gz").read_bytes()).decode("utf-8"))

    def java_deep(self, type_name: str) -> list[tuple[str, str]]:
        return split_ops(gzip.decompress((self.directory / f"deep-{type_name}.txt.gz").read_bytes()).decode("utf-8"))

    def replay(self, engine: ReadStateEngine | None, op: str, *, mapped: bool = False) -> ReadStateEngine:
        """Apply one ``snapshot:FILE`` / ``delta:FILE`` op and return the (possibly new) engine."""
        kind, file = op.split(":", 1)
        if kind == "snapshot":
            if mapped:
                return ReadStateEngine.from_file(self.directory / file)
            return ReadStateEngine.from_snapshot(self.blob(file))
        assert engine is not None
        engine.apply_delta(self.blob(file))
        return engine


def chain(name: str) -> Chain:
    d = GOLDEN / name
    meta = json.loads((d / "chain.json").read_text())
    return Chain(name, d, meta["ops"], meta["deep_types"])


CHAINS = ["rich", "evolve"]
