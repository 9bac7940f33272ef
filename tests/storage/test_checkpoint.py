"""Offset checkpoints: a round trip, a file that does not parse reads as absent, and offsets the format cannot carry
are refused before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from loosely.storage.checkpoint import read_checkpoint, write_checkpoint
from loosely.storage.fs import OsFileSystem


def test_round_trip(tmp_path: Path) -> None:
    path = str(tmp_path / "recovery-point-offset-checkpoint")
    offsets = {("a", 0): 12, ("a", 1): 0, ("b.c-d_e", 7): 1 << 40}
    write_checkpoint(OsFileSystem(), path, offsets)
    assert read_checkpoint(OsFileSystem(), path) == offsets
    assert Path(path).read_text().splitlines()[:3] == ["0", "3", "a 0 12"]


def test_a_file_that_does_not_parse_reads_as_absent(tmp_path: Path) -> None:
    path = tmp_path / "cp"
    path.write_text("0\n2\na 0 1\n")  # says two entries, holds one
    assert read_checkpoint(OsFileSystem(), str(path)) == {}


@pytest.mark.parametrize("topic", ["with\nline", "with\rreturn"])
def test_offsets_the_format_cannot_carry_are_refused_before_the_write(tmp_path: Path, topic: str) -> None:
    path = tmp_path / "cp"
    write_checkpoint(OsFileSystem(), str(path), {("a", 0): 1})
    with pytest.raises(AssertionError):
        write_checkpoint(OsFileSystem(), str(path), {(topic, 0): 1})
    assert read_checkpoint(OsFileSystem(), str(path)) == {("a", 0): 1}
