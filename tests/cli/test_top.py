"""``loosely top`` in a real terminal against a real ``loosely broker --metrics-listen`` child process.

The terminal is tmux when it is installed, else a pseudo-terminal from :mod:`pty` (the last frame is what follows
the last clear-screen); either way the command runs under ``sh`` so that its exit code and the terminal settings
after it (``stty -a``) land in files the test reads.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.server
import json
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from loosely.testing import free_port

LOOSELY = str(Path(sys.executable).parent / "loosely")
WAIT_S = 30.0
COLUMNS, ROWS = 140, 60


def wait_for(what: str, ok: Callable[[], object], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not ok():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class BrokerProcess:
    """``loosely broker`` as a child process, killed and started again on the same ports and data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.bootstrap = f"127.0.0.1:{free_port()}"
        self.metrics = f"127.0.0.1:{free_port()}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.data_dir.parent / "broker.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [LOOSELY, "broker", "--data-dir", str(self.data_dir), "--listen", self.bootstrap,
                 "--metrics-listen", self.metrics], stdout=log, stderr=log)
        wait_for("the metrics endpoint", self._answers)

    def _answers(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, "the broker exited"
        try:
            urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=1).close()
        except OSError:
            return False
        return True

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    b = BrokerProcess(tmp_path_factory.mktemp("top") / "data")
    try:
        b.start()
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("orders", 2, 1)])["orders"].result(10)
        yield b
    finally:
        if b.proc is not None and b.proc.poll() is None:
            b.proc.terminate()
            try:
                b.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                b.proc.kill()
                b.proc.wait()


def produce(bootstrap: str, partition: int, n: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(n):
        p.produce("orders", key=b"k%d" % i, value=b"v%d" % i, partition=partition)
    assert p.flush(10) == 0


def commit(bootstrap: str, group: str, offsets: dict[int, int]) -> None:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition("orders", p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        c.close()


class Terminal:
    """A terminal running ``sh -c '<command>; echo $? >rc; stty -a >stty'`` (the shell survives a Ctrl-C meant for
    the command: ``trap : INT`` catches it, and a caught signal is reset to the default in the command)."""

    def __init__(self, command: list[str], workdir: Path) -> None:
        self.rc_file, self.stty_file = workdir / "rc", workdir / "stty"
        self.script = (f"trap : INT; {shlex.join(command)}; echo $? > {shlex.quote(str(self.rc_file))}; "
                       f"stty -a > {shlex.quote(str(self.stty_file))}")

    def exit_code(self) -> int | None:
        text = self.rc_file.read_text() if self.rc_file.exists() else ""
        return int(text) if text.endswith("\n") else None

    def screen(self) -> str:
        raise NotImplementedError

    def keys(self, keys: str) -> None:
        raise NotImplementedError

    def interrupt(self) -> None:
        self.keys("\x03")  # the terminal's intr character: SIGINT to its foreground processes

    def settings_after(self) -> list[str]:
        wait_for("stty to run", lambda: self.stty_file.exists() and self.stty_file.read_text().endswith("\n"))
        return self.stty_file.read_text().split()

    def close(self) -> None:
        raise NotImplementedError


class Tmux(Terminal):
    def __init__(self, command: list[str], workdir: Path) -> None:
        super().__init__(command, workdir)
        self.server = f"loosely-top-{os.getpid()}"  # a tmux server of its own: no other session is touched
        subprocess.run(["tmux", "-L", self.server, "-f", "/dev/null", "new-session", "-d", "-s", "top",
                        "-x", str(COLUMNS), "-y", str(ROWS), f"{self.script}; sleep 60"], check=True)

    def screen(self) -> str:
        return subprocess.run(["tmux", "-L", self.server, "capture-pane", "-p", "-t", "top"],
                              capture_output=True, text=True, check=True).stdout

    def keys(self, keys: str) -> None:
        subprocess.run(["tmux", "-L", self.server, "send-keys", "-t", "top", "-l", keys], check=True)

    def interrupt(self) -> None:
        subprocess.run(["tmux", "-L", self.server, "send-keys", "-t", "top", "C-c"], check=True)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.server, "kill-server"], check=False, capture_output=True)


class Pty(Terminal):
    def __init__(self, command: list[str], workdir: Path) -> None:
        super().__init__(command, workdir)
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        # util-linux setsid --ctty: a session (and process group, its pid) of its own whose controlling terminal is
        # the pty, so that Ctrl-C interrupts as in a real terminal
        self.proc = subprocess.Popen(["setsid", "--ctty", "sh", "-c", self.script], stdin=slave, stdout=slave,
                                     stderr=slave)
        os.close(slave)
        self.output = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the other side closed
                return
            if not chunk:
                return
            self.output += chunk

    def screen(self) -> str:
        last = self.output.rpartition(b"\x1b[H\x1b[2J")[2].decode(errors="replace")
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", last).replace("\r", "")

    def keys(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        os.close(self.master)


def open_terminal(command: list[str], workdir: Path) -> Terminal:
    return Tmux(command, workdir) if shutil.which("tmux") else Pty(command, workdir)


def lag_row(screen: str, partition: int, current: int, end: int, lag: int) -> bool:
    return re.search(rf"^billing\s+orders\s+{partition}\s+{current}\s+{end}\s+{lag}\s*$", screen, re.M) is not None


def lag_order(screen: str) -> list[str]:
    return re.findall(r"^billing\s+orders\s+(\d+)\s", screen, re.M)


def test_live_lag_keys_waiting_for_a_restarted_broker_and_q(broker: BrokerProcess, tmp_path: Path) -> None:
    produce(broker.bootstrap, 0, 20)
    produce(broker.bootstrap, 1, 20)
    commit(broker.bootstrap, "billing", {0: 20, 1: 5})
    term = open_terminal([LOOSELY, "top", "--metrics", broker.metrics, "--interval", "0.2"], tmp_path)
    try:
        wait_for("lag of a consumer behind", lambda: lag_row(term.screen(), 1, 5, 20, 15))
        assert lag_row(term.screen(), 0, 20, 20, 0)
        assert lag_order(term.screen()) == ["1", "0"]  # the most lagging first
        term.keys("s")
        wait_for("the lag table sorted by name", lambda: lag_order(term.screen()) == ["0", "1"])
        term.keys("p")
        wait_for("the pause to show", lambda: "[PAUSED]" in term.screen())
        term.keys("ps")
        wait_for("the pause to end", lambda: "[PAUSED]" not in (s := term.screen()) and lag_order(s) == ["1", "0"])

        produce(broker.bootstrap, 1, 10)  # falls further behind
        wait_for("the lag to grow", lambda: lag_row(term.screen(), 1, 5, 30, 25))
        commit(broker.bootstrap, "billing", {1: 30})  # catches up
        wait_for("the lag to drop to 0", lambda: lag_row(term.screen(), 1, 30, 30, 0))

        broker.kill()
        waiting = f"waiting for http://{broker.metrics}/metrics (since "
        wait_for("top to wait for the broker", lambda: waiting in term.screen())
        assert term.exit_code() is None  # still running
        broker.start()
        wait_for("top to reconnect", lambda: waiting not in (s := term.screen()) and "reconnected to" in s
                 and lag_row(s, 1, 30, 30, 0))

        started = time.monotonic()
        term.keys("q")
        wait_for("top to quit", lambda: term.exit_code() is not None, timeout_s=5.0)  # 5 s: a loaded machine
        assert time.monotonic() - started < 5.0
        assert term.exit_code() == 0
        settings = term.settings_after()
        assert "icanon" in settings and "echo" in settings, "the terminal was not restored"
    finally:
        term.close()


def test_ctrl_c_quits_a_top_waiting_for_a_down_endpoint(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/metrics"
    term = open_terminal([LOOSELY, "top", "--metrics", url, "--interval", "0.2"], tmp_path)
    try:
        wait_for("top to wait", lambda: f"waiting for {url} (since " in term.screen())
        term.interrupt()
        wait_for("top to quit", lambda: term.exit_code() is not None, timeout_s=5.0)  # 5 s: a loaded machine
        assert term.exit_code() == 0
        settings = term.settings_after()
        assert "icanon" in settings and "echo" in settings, "the terminal was not restored"
    finally:
        term.close()


@contextlib.contextmanager
def endpoint_that_is(kind: str) -> Iterator[int]:
    """A loopback port that refuses, accepts and stays silent, or answers HTTP that is not Prometheus metrics."""
    if kind == "not-metrics":
        server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.server_address[1]
        finally:
            server.shutdown()
            server.server_close()
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        if kind == "silent":
            s.listen()  # connections are queued and never answered
        yield s.getsockname()[1]


@pytest.mark.parametrize(("kind", "why"), [("refusing", "Connection refused"), ("silent", "timed out"),
                                           ("not-metrics", "the answer is not Prometheus metrics")])
def test_once_against_a_down_endpoint_is_one_line_and_exit_1(kind: str, why: str) -> None:
    with endpoint_that_is(kind) as port:
        started = time.monotonic()
        r = subprocess.run([LOOSELY, "top", "--metrics", f"http://127.0.0.1:{port}/", "--once", "--timeout", "1"],
                           capture_output=True, text=True, timeout=30, check=False)
    elapsed = time.monotonic() - started
    assert r.returncode == 1 and r.stdout == ""
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith(f"loosely top: cannot scrape http://127.0.0.1:{port}/: ") and why in r.stderr
    assert elapsed < 10


def test_once_shows_views_and_hollow(broker: BrokerProcess, tmp_path: Path) -> None:
    produce(broker.bootstrap, 0, 3)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "views.py").write_text("from loosely.views import latest_by_key\n"
                                               "view = latest_by_key('latest_orders', ['orders'])\n")
    sink = f"sqlite:///{tmp_path / 'views.db'}"
    subprocess.run([LOOSELY, "views", "run", "app.views:view", "--sink", sink, "-b", broker.bootstrap,
                    "--until-caught-up"], cwd=tmp_path, check=True, capture_output=True, timeout=60)
    store = tmp_path / "hollow"
    (tmp_path / "schema.txt").write_text("Movie @PrimaryKey(id) { int id; }\n")
    (tmp_path / "movies.jsonl").write_text('{"id": 1}\n')
    published = subprocess.run([LOOSELY, "hollow", "publish", str(store), "--schema", str(tmp_path / "schema.txt"),
                                "--type", "Movie", "--input", str(tmp_path / "movies.jsonl")],
                               check=True, capture_output=True, text=True, timeout=60)
    version = json.loads(published.stdout)["version"]

    r = subprocess.run([LOOSELY, "top", "--metrics", broker.metrics, "--once", "--interval", "0.1",
                        "--views", sink, "-b", broker.bootstrap, "--hollow", str(store)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^latest_orders\s+1\s+serving\s+0\s+\S+\s+yes$", r.stdout, re.M), r.stdout
    age = re.search(rf"^hollow {re.escape(str(store))}: announced {version}, age ([0-9.]+)s$", r.stdout, re.M)
    assert age is not None and float(age[1]) < 60, r.stdout


def test_in_a_pipe_it_prints_frames_and_waits_for_a_down_endpoint() -> None:
    port = free_port()
    r = subprocess.run(f"{shlex.quote(LOOSELY)} top --metrics 127.0.0.1:{port} --interval 0.1 | head -n 3; "
                       "echo rc=${PIPESTATUS[0]}", shell=True, executable="bash", capture_output=True, text=True,
                       timeout=30, check=False)
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"waiting for http://127.0.0.1:{port}/metrics (since "), r.stdout
    assert lines[2] == lines[0] and lines[-1] == "rc=0", r.stdout  # a frame per interval, still waiting
    assert "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize(("metrics", "why"), [("ftp://x/metrics", "expected HOST:PORT or an http(s):// URL"),
                                              ("host:notaport", "Port could not be cast to integer value")])
def test_a_bad_metrics_address_is_one_line_and_exit_2(metrics: str, why: str) -> None:
    r = subprocess.run([LOOSELY, "top", "--metrics", metrics], capture_output=True, text=True, timeout=30,
                       check=False)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith(f"loosely top: --metrics {metrics!r}: ") and why in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
