"""Golden write-engine specs: chosen seeds of :func:`hollow.spec.random_spec` run by Java's write engine.

Together they cover OBJECT fields of every type, LIST, SET and MAP with and without hash keys (also through a
reference), size-driven and pinned shards, optional blob parts and more than 12 header tags.
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
from pathlib import Path

from hollow.javarun import Java
from hollow.spec import chain_ops, random_spec

SPEC_SEEDS = [0, 7, 8, 18, 53]


def regenerate_specs(java: Java, golden: Path) -> None:
    for seed in SPEC_SEEDS:
        out = golden / f"spec-{seed}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        spec = random_spec(seed)
        (out / "spec.txt").write_text(spec)
        with tempfile.TemporaryDirectory() as tmp:
            java.interop("spec", out / "spec.txt", tmp)
            blobs = {p.name: p.read_bytes() for p in Path(tmp).iterdir()}
            for name, data in blobs.items():
                (out / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
            ops = [op for op in chain_ops(blobs)]
            java_ops = []
            for op in ops:
                kind, name = op.split(":")
                parts = [
                    n for n in blobs if n.startswith(name.split("-")[0] + "_") and n.endswith(name[name.index("-") :])
                ]
                extra = "".join(f",part={p.split('_', 1)[1].split('-')[0]}:{tmp}/{p}" for p in parts)
                java_ops.append(f"{kind}:{tmp}/{name}{extra}")
            dump = java.interop("dump", *java_ops).replace(tmp + "/", "")
        (out / "dump.txt.gz").write_bytes(gzip.compress(dump.encode("utf-8"), mtime=0))
        (out / "chain.json").write_text(json.dumps({"ops": ops, "deep_types": []}) + "\n")
