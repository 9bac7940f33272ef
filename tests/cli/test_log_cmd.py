"""``loosely log verify``: exit 0 on a clean data dir, 1 naming the segment and position of damage, 2 for bad
arguments; and it never changes the data dir."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loosely.cli.main import main
from loosely.protocol.records import iter_batches
from loosely.storage.manager import LogManager
from storage._helpers import batch, clock


def snapshot(d: Path) -> dict[str, str]:
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()
    }


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    defaults = {"log.segment.bytes": "2000", "log.index.interval.bytes": "100"}
    mgr = LogManager(str(tmp_path / "data"), clock=clock(), broker_defaults=defaults)
    mgr.open()
    for name in ("orders", "audit"):
        t = mgr.create_topic(name, 2)
        for i in range(50):
            t.logs[i % 2].append(batch(b"v%d" % i, key=b"k"))
    mgr.close()
    return tmp_path / "data"


def test_a_clean_data_dir_passes(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(data_dir)
    assert main(["log", "verify", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "orders-0/00000000000000000000.log: " in out and "offsets 0-" in out
    segments = out.count(".log: ")
    assert out.rstrip().endswith(f"4 partitions, {segments} segments, 100 batches, 100 records: clean")
    assert main(["-v", "log", "verify", "--data-dir", str(data_dir), "--topic", "audit"]) == 0
    assert "audit-1/" in capsys.readouterr().out
    assert snapshot(data_dir) == before


def test_damage_fails_and_names_segment_and_position(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seg = sorted((data_dir / "orders-1").glob("*.log"))[0]
    pos = [p for p, _ in iter_batches(seg.read_bytes())][3]
    with open(seg, "r+b") as f:
        f.seek(pos + 45)
        f.write(b"\xde\xad\xbe\xef")
    before = snapshot(data_dir)
    assert main(["log", "verify", "--data-dir", str(data_dir), "--topic", "orders"]) == 1
    out = capsys.readouterr().out
    assert f"orders-1/{seg.name}: " in out
    assert f"{seg.name} position {pos}: record batch at offset 3 has CRC" in out
    assert "audit" not in out
    assert main(["log", "verify", "--data-dir", str(data_dir), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["damaged"] is True
    bad = [
        (p["partition"], s["file"], q["position"])
        for p in doc["partitions"]
        for s in p["segments"]
        for q in s["problems"]
    ]
    assert bad == [("orders-1", seg.name, pos)]
    # Batches after the damaged one are still walked: the report shows they are intact.
    seg_doc = next(s for p in doc["partitions"] if p["partition"] == "orders-1" for s in p["segments"])
    assert seg_doc["batches"] == len(list(iter_batches(seg.read_bytes()))) - 1
    assert snapshot(data_dir) == before


def test_a_lying_index_is_damage(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    idx = sorted((data_dir / "audit-0").glob("*.index"))[0]
    assert idx.stat().st_size >= 8
    with open(idx, "r+b") as f:
        f.seek(4)
        f.write(b"\x00\x00\x00\x07")
    assert main(["log", "verify", "--data-dir", str(data_dir)]) == 1
    assert f"{idx.name} position 0: entry" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["log", "verify"],
        ["log", "verify", "--data-dir", "/no/such/dir"],
        ["log", "verify", "--data-dir", ".", "--bogus"],
        ["log", "scrub"],
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main(argv))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("loosely log") and "Traceback" not in err


def test_missing_topic_is_exit_2(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["log", "verify", "--data-dir", str(data_dir), "--topic", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert os.path.isdir(data_dir)


@pytest.mark.parametrize(
    "argv", [["log", "verify", "--json"], ["log", "verify"], ["--help"], ["hollow", "dump", "--help"], ["--version"]]
)
def test_a_reader_gone_before_the_first_line_ends_the_command_quietly(data_dir: Path, argv: list[str]) -> None:
    """``loosely ... | head`` where head has already left: exit 0 and nothing on stderr, no BrokenPipeError."""
    if argv[:2] == ["log", "verify"]:
        argv = [*argv, "--data-dir", str(data_dir)]
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to stdout fails with EPIPE
    try:
        r = subprocess.run(
            [sys.executable, "-m", "loosely.cli.main", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (r.returncode, r.stderr) == (0, "")
