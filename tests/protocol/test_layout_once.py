"""Kafka's wire primitives are declared once, in loosely.protocol: its error codes match kio's, the batch header
layout is declared in one module, and the record and framing modules load without kio (the CLI's fast start)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from kio.schema.errors import ErrorCode as KioErrorCode

from loosely.protocol.errors import ErrorCode

SRC = Path(__file__).resolve().parents[2] / "src" / "loosely"


def test_error_codes_are_kios() -> None:
    assert [(e.name, int(e)) for e in ErrorCode] == [(e.name, int(e.value)) for e in KioErrorCode]


def test_the_batch_header_layout_is_declared_once() -> None:
    header = re.compile(r"""Struct\(\s*["']>qiibIhiqqqhii["']""")
    found = [p.relative_to(SRC) for p in SRC.rglob("*.py") if header.search(p.read_text())]
    assert found == [Path("protocol/batch_layout.py")]


def test_records_framing_and_compression_load_without_kio() -> None:
    code = ("import sys, loosely.protocol.records, loosely.protocol.framing, loosely.protocol.compression, "
            "loosely.clients.fastpath\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kio', 'hypothesis')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
