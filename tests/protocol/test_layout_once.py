"""Kafka's wire primitives are declared once, in loosely.protocol: its error codes match kio's, the batch header
layout is declared in one module, no other room re-declares a primitive (struct formats, varints), and the record,
framing and primitive modules load without kio (the CLI's fast start)."""

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


# Kafka's primitives re-declared: a one-field struct format, an inline format string, varint or zigzag arithmetic.
# hollow/ is exempt: the Hollow blob format has varints of its own (big-endian groups, not Kafka's).
_PRIMITIVE_COPIES = re.compile(
    r"""Struct\(\s*["']>[bhiqI]["']\)"""  # struct.Struct(">i") and friends: protocol.primitives has them
    r"""|(?:pack|unpack)(?:_from|_into)?\(\s*["']"""  # struct.pack_into(">I", ...): an undeclared layout
    r"""|&\s*0x7[fF]\)?\s*\|\s*0x80|<<\s*1\)\s*\^"""  # writing a varint, zigzag
    r"""|\(b\s*&\s*0x7[fF]\)\s*<<"""  # reading a varint
)


def test_kafka_primitives_are_not_redeclared_outside_protocol() -> None:
    found = sorted(
        f"{p.relative_to(SRC)}:{n}: {line.strip()}"
        for p in SRC.rglob("*.py")
        if p.relative_to(SRC).parts[0] not in ("protocol", "hollow")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if _PRIMITIVE_COPIES.search(line)
    )
    assert found == []


def test_the_guard_finds_what_it_guards_against() -> None:
    copies = ['_I32 = struct.Struct(">i")', 'struct.pack_into(">I", header, 17, crc)',
              "out.append((z & 0x7F) | 0x80)", "z = ((v << 1) ^ (v >> 63))", "value |= (b & 0x7F) << shift"]
    assert all(_PRIMITIVE_COPIES.search(c) for c in copies)
    assert not _PRIMITIVE_COPIES.search('OFFSET_ENTRY: Final = struct.Struct(">ii")')


def _loaded_by(modules: str, roots: tuple[str, ...]) -> list[str]:
    """The modules under ``roots`` that importing ``modules`` loads, in a fresh interpreter."""
    code = f"import sys, {modules}\nprint(sorted(m for m in sys.modules if m.split('.')[0] in {roots!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return [m.strip(" '") for m in out.strip().strip("[]").split(",") if m.strip()]


def test_records_framing_and_compression_load_without_kio() -> None:
    modules = ("loosely.protocol.records, loosely.protocol.framing, loosely.protocol.compression, "
               "loosely.protocol.primitives, loosely.clients.fastpath, loosely.clients.mm2, "
               "loosely.clients._batch_copy")
    assert _loaded_by(modules, ("kio", "hypothesis")) == []
    assert _loaded_by("loosely.protocol.records", ("crc32c",)) == []  # loaded on the first CRC (half the import)


def test_the_kcat_commands_start_without_asyncio_kio_or_confluent_kafka() -> None:
    # `loosely produce` runs in shell loops as kcat does: its start-up imports only what the fast path needs
    assert _loaded_by("loosely.cli.main, loosely.cli.kcat", ("asyncio", "kio", "hypothesis", "confluent_kafka")) == []


def test_topic_partition_is_declared_once() -> None:
    declared = re.compile(r"^(?:class TopicPartition\b|TopicPartition\s*(?::[^=]*)?=)", re.MULTILINE)
    found = [p.relative_to(SRC) for p in SRC.rglob("*.py") if declared.search(p.read_text())]
    assert found == [Path("protocol/names.py")]
