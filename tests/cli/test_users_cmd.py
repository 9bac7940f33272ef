"""``loosely users`` on a data directory and through the Admin API, and ``loosely broker --add-scram`` surviving
``kill -9``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from loosely.broker.config import BrokerConfig
from loosely.broker.server import BrokerThread
from loosely.cli.main import main


def _users(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["users", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_users_on_a_data_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path)
    assert _users(capsys, "add", "carol", "--password", "c-secret", "--data-dir", d)[0] == 0
    add512 = ("add", "carol", "--mechanism", "SCRAM-SHA-512", "--password", "c", "--iterations", "4096")
    assert _users(capsys, *add512, "--data-dir", d)[0] == 0
    rc, out, _ = _users(capsys, "list", "--data-dir", d)
    assert rc == 0 and out == "carol\tSCRAM-SHA-256 (iterations=8192), SCRAM-SHA-512 (iterations=4096)\n"
    assert b"c-secret" not in (tmp_path / "scram-credentials.json").read_bytes()
    rc, _, err = _users(capsys, "add", "x", "--password", "p", "--iterations", "100", "--data-dir", d)
    assert rc == 1 and "iterations must be 4096 to 16384" in err
    assert _users(capsys, "remove", "carol", "--data-dir", d)[0] == 0
    assert _users(capsys, "list", "--data-dir", d)[1] == ""
    rc, _, err = _users(capsys, "remove", "carol", "--data-dir", d)
    assert rc == 1 and "no such credential" in err
    with BrokerThread(BrokerConfig(data_dir=d, port=0)):
        rc, _, err = _users(capsys, "list", "--data-dir", d)
        assert rc == 1 and "use -b" in err, err


def test_users_added_before_the_first_start_create_the_data_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "data"
    rc, _, err = _users(capsys, "list", "--data-dir", str(d))
    assert rc == 1 and "is not a data directory" in err and not d.exists()
    assert _users(capsys, "add", "alice", "--password", "pw", "--data-dir", str(d))[0] == 0
    with BrokerThread(BrokerConfig(data_dir=str(d), port=0)) as b:  # the broker starts on it and keeps the user
        assert list(b.broker.ctx.services["credentials"].users()) == ["alice"]


def test_users_through_the_admin_api(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with BrokerThread(BrokerConfig(data_dir=str(tmp_path), port=0)) as b:
        bs = b.bootstrap_servers
        assert _users(capsys, "add", "dave", "--password", "d-secret", "-b", bs)[0] == 0
        rc, out, _ = _users(capsys, "list", "-b", bs)
        assert rc == 0 and out == "dave\tSCRAM-SHA-256 (iterations=8192)\n"
        assert _users(capsys, "remove", "dave", "-b", bs)[0] == 0
        assert _users(capsys, "list", "-b", bs)[1] == ""
        rc, _, err = _users(capsys, "remove", "dave", "-b", bs)
        assert rc == 1 and "does not exist" in err
    assert _users(capsys, "list")[0] == 2


def test_broker_add_scram_survives_kill_9(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = "SCRAM-SHA-512=[name=admin,password=admin-secret,iterations=8192]"
    cmd = [sys.executable, "-m", "loosely.cli.main", "broker", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0",
           "--add-scram", spec]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert proc.stdout is not None
        while b"listening" not in (line := proc.stdout.readline()):
            assert line, "the broker exited before listening"
        port = re.search(rb":(\d+) ", line)
        assert port is not None
        rc, out, _ = _users(capsys, "list", "-b", f"127.0.0.1:{port.group(1).decode()}")
        assert rc == 0 and out == "admin\tSCRAM-SHA-512 (iterations=8192)\n"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert _users(capsys, "list", "--data-dir", str(tmp_path))[1] == "admin\tSCRAM-SHA-512 (iterations=8192)\n"
    bad = subprocess.run([*cmd[:-1], "SCRAM-SHA-1=[name=a,password=b]"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "--add-scram" in bad.stderr and "password=b" not in bad.stderr
