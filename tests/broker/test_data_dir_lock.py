"""Two brokers on one data directory: the second exits at once with one line naming the dir and the holder's PID;
the first keeps serving and loses nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from broker._brokers import ChildBroker, broker_on
from broker._records import create, read
from loosely.storage.dirlock import DataDirLockedError
from loosely.testing import free_port

SECOND_START_S_MAX = 20  # a refused start is one interpreter start-up plus a failed flock, nothing more


def produce(bs: str, topic: str, values: list[bytes]) -> None:
    p = Producer({"bootstrap.servers": bs, "acks": "all"})
    failed: list[object] = []
    for v in values:
        p.produce(topic, v, on_delivery=lambda err, _m: failed.append(err) if err else None)
    assert p.flush(30) == 0 and not failed


def second_broker(data_dir: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "loosely.cli.main", "broker", "--data-dir", str(data_dir)]
    cmd += ["--listen", f"127.0.0.1:{free_port()}"]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=SECOND_START_S_MAX)


def assert_refused(out: subprocess.CompletedProcess[str], data_dir: Path, holder: int) -> None:
    assert out.returncode != 0
    lines = (out.stdout + out.stderr).splitlines()
    assert len(lines) == 1, lines
    assert str(data_dir) in lines[0] and f"process {holder}" in lines[0] and "Traceback" not in lines[0]


def test_a_second_child_broker_exits_and_the_first_loses_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = ChildBroker(data, free_port()).start()
    try:
        assert first.proc is not None
        create(first.bootstrap_servers, "t")
        produce(first.bootstrap_servers, "t", [b"before-%d" % i for i in range(50)])
        started = time.monotonic()
        assert_refused(second_broker(data), data, first.proc.pid)
        assert time.monotonic() - started < SECOND_START_S_MAX
        assert (data / ".lock").read_text().strip() == str(first.proc.pid)
        produce(first.bootstrap_servers, "t", [b"after-%d" % i for i in range(50)])
        got = read(first.bootstrap_servers, "t", 100)
        assert got == [b"before-%d" % i for i in range(50)] + [b"after-%d" % i for i in range(50)]
    finally:
        first.kill()
    # kill -9 leaves no stale lock: the kernel dropped it with the process.
    again = ChildBroker(data, free_port()).start()
    try:
        assert len(read(again.bootstrap_servers, "t", 100)) == 100
    finally:
        again.kill()


def test_the_embedded_broker_holds_its_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with broker_on(data, 0) as b:
        create(b.bootstrap_servers, "t")
        produce(b.bootstrap_servers, "t", [b"v-%d" % i for i in range(20)])
        assert_refused(second_broker(data), data, os.getpid())
        with pytest.raises(DataDirLockedError) as e, broker_on(data, 0):
            pass
        assert e.value.holder_pid == os.getpid() and "already open" in str(e.value)
        produce(b.bootstrap_servers, "t", [b"w-%d" % i for i in range(20)])
        assert read(b.bootstrap_servers, "t", 40) == [b"v-%d" % i for i in range(20)] + [b"w-%d" % i for i in range(20)]
    with broker_on(data, 0) as b:  # released on stop
        assert len(read(b.bootstrap_servers, "t", 40)) == 40
