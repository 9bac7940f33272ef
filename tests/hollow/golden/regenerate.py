"""Regenerate the golden fixtures of the Hollow core from Java Hollow (needs a JDK and interop/fetch-jars).

    .venv/bin/python tests/hollow/golden/regenerate.py

Every fixture here was written by ``interop/hollow/HollowInterop.java`` with the published
``com.netflix.hollow:hollow`` jar, never by this project's own writer:

* ``rich/``, ``evolve/``, ``reshard/``: delta chains written with Java's object mapper (``model NAME``): blobs,
  the mapper's schemas, ``dump.txt.gz`` (Java's exact dump after each op of ``chain.json``) and
  ``deep-<Type>.txt.gz`` (Java's expanded records per op).
* ``spec-*/``: chains written by Java's write state engine from ``spec.txt`` (``spec`` command), with Java's
  dumps; the Python writer must reproduce those blobs byte for byte.

Blobs are stored gzip-compressed (``*.gz``): a snapshot is mostly the 2 KiB-per-type populated bitsets.

Random state tags change on every regeneration, so regenerate all files of a fixture together.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from hollow.golden_specs import regenerate_specs  # noqa: E402
from hollow.javarun import Java, compile_java  # noqa: E402

CHAINS = {
    "reshard": {
        "files": [
            "snapshot-1",
            "snapshot-6",
            *(f"delta-{c}-{c + 1}" for c in range(1, 6)),
            *(f"reversedelta-{c + 1}-{c}" for c in range(1, 6)),
        ],
        "ops": [
            "snapshot:snapshot-1",
            *(f"delta:delta-{c}-{c + 1}" for c in range(1, 6)),
            *(f"delta:reversedelta-{c + 1}-{c}" for c in range(5, 0, -1)),
            "snapshot:snapshot-6",
        ],
        "deep_types": ["Row"],
    },
    "rich": {
        "files": [
            "snapshot-1",
            "snapshot-4",
            "delta-1-2",
            "delta-2-3",
            "delta-3-4",
            "reversedelta-2-1",
            "reversedelta-3-2",
            "reversedelta-4-3",
            "schemas-1.txt",
        ],
        "ops": [
            "snapshot:snapshot-1",
            "delta:delta-1-2",
            "delta:delta-2-3",
            "delta:delta-3-4",
            "delta:reversedelta-4-3",
            "delta:reversedelta-3-2",
            "delta:reversedelta-2-1",
            "snapshot:snapshot-4",
        ],
        "deep_types": ["Movie", "Review"],
    },
    "evolve": {
        "files": [
            "snapshot-1",
            "snapshot-2",
            "snapshot-3",
            "snapshot-4",
            "delta-1-2",
            "delta-2-3",
            "delta-3-4",
            "reversedelta-2-1",
            "reversedelta-3-2",
            "reversedelta-4-3",
            "schemas-1.txt",
            "schemas-4.txt",
        ],
        "ops": [
            "snapshot:snapshot-1",
            "delta:delta-1-2",
            "delta:delta-2-3",
            "delta:delta-3-4",
            "delta:reversedelta-4-3",
            "snapshot:snapshot-4",
            "delta:reversedelta-4-3",
            "delta:reversedelta-3-2",
            "delta:reversedelta-2-1",
            "snapshot:snapshot-2",
            "delta:delta-2-3",
        ],
        "deep_types": ["Film"],
    },
}


def write_gz(path: Path, text: str) -> None:
    # mtime=0 keeps regenerated files byte-identical when their content is
    path.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))


def java_ops(d: Path, ops: list[str]) -> list[str]:
    return [f"{op.split(':')[0]}:{d / op.split(':')[1]}" for op in ops]


def record_chain(java: Java, name: str, source: Path, spec: dict[str, list[str]]) -> None:
    out = HERE / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    for f in spec["files"]:
        if f.endswith(".txt"):
            shutil.copy(source / f, out / f)
        else:
            (out / f"{f}.gz").write_bytes(gzip.compress((source / f).read_bytes(), mtime=0))
    ops = spec["ops"]
    write_gz(out / "dump.txt.gz", java.interop("dump", *java_ops(source, ops)).replace(str(source) + "/", ""))
    for t in spec.get("deep_types", []):
        text = java.interop("deep", t, *java_ops(source, ops)).replace(str(source) + "/", "")
        write_gz(out / f"deep-{t}.txt.gz", text)
    (out / "chain.json").write_text(json.dumps({"ops": ops, "deep_types": spec.get("deep_types", [])}) + "\n")


def main() -> None:
    java = compile_java()
    for name, spec in CHAINS.items():
        with tempfile.TemporaryDirectory() as tmp:
            java.interop("model", name, tmp)
            record_chain(java, name, Path(tmp), spec)
    regenerate_specs(java, HERE)


if __name__ == "__main__":
    main()
