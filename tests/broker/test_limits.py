"""The limits on what clients can make the broker hold: connections, request bytes, slow requests, the backlog.

Where the behaviour is Kafka's (max.connections, max.connections.per.ip, queued.max.request.bytes,
socket.request.max.bytes, socket.listen.backlog.size) the same assertions run against loosely and a dedicated
Apache Kafka started with the same settings. After each abuse a normal client produces and reads back its records.
Everything is on loopback; per-IP limits use 127.0.0.2 and 127.0.0.3 as client addresses (Linux routes all of
127/8 to lo), so the normal clients on 127.0.0.1 are not the ones being limited.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from loosely.broker.config import BrokerConfig, split_kafka_settings
from loosely.broker.server import BrokerThread
from loosely.testing import ApacheKafka, FakeClock
from loosely.testing.apache_kafka import free_port

FRAME_MAX = 10 * 1024 * 1024
SETTINGS = {
    "socket.request.max.bytes": str(FRAME_MAX),
    "queued.max.request.bytes": str(2 * FRAME_MAX),
    "max.connections": "40",
    "max.connections.per.ip": "20",
    "max.connections.per.ip.overrides": "127.0.0.2:2",
    "socket.listen.backlog.size": "7",
}
WAIT_S = 15.0  # a bound on anything the broker should do promptly
HELD_S = 1.5  # how long a held-back request must stay unanswered to count as held


@pytest.fixture(scope="module", params=["loosely", "kafka"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The bootstrap address of a broker with SETTINGS: loosely in this process, or a dedicated Apache Kafka."""
    if request.param == "kafka":
        jars = request.getfixturevalue("jars_dir")
        kafka = ApacheKafka(nodes=1, base_dir=tmp_path_factory.mktemp("kafka-limits"), jars_dir=jars, config=SETTINGS)
        kafka.start()
        try:
            yield kafka.bootstrap_servers
        finally:
            kafka.stop()
        return
    fields, _, unknown = split_kafka_settings(SETTINGS)
    assert not unknown
    config = BrokerConfig(data_dir=str(tmp_path_factory.mktemp("loosely-limits")), port=0, **fields)  # type: ignore[arg-type]
    with BrokerThread(config) as b:
        yield b.bootstrap_servers


# --- raw connections -------------------------------------------------------------------------------------------


def connect(bootstrap: str, source: str = "127.0.0.1") -> socket.socket:
    host, port = bootstrap.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=WAIT_S, source_address=(source, 0))


def api_versions(sock: socket.socket, correlation_id: int = 7) -> None:
    """ApiVersions v0: header v1 (api key 18, version 0, correlation id, null client id), empty body."""
    sock.sendall(struct.pack(">ihhih", 10, 18, 0, correlation_id, -1))


def answer(sock: socket.socket, timeout_s: float) -> str:
    """The broker's reaction: "answered", "closed" (it hung up) or "held" (nothing within ``timeout_s``)."""
    sock.settimeout(timeout_s)
    try:
        head = sock.recv(4)
    except TimeoutError:
        return "held"
    except ConnectionResetError:
        return "closed"
    if not head:
        return "closed"
    (size,) = struct.unpack(">i", head.ljust(4, b"\0"))
    body = b""
    sock.settimeout(WAIT_S)
    while len(body) < size:
        chunk = sock.recv(size - len(body))
        assert chunk, "the broker closed the connection mid-response"
        body += chunk
    return "answered"


def ask(sock: socket.socket, timeout_s: float = WAIT_S) -> str:
    api_versions(sock)
    return answer(sock, timeout_s)


def established(bootstrap: str) -> int:
    """Connections the broker's side holds on its port: accepted, waiting in the backlog, or closed by the client
    but not yet by the broker (close-wait: the broker still counts those)."""
    port = bootstrap.rsplit(":", 1)[1]
    states = ["state", "established", "state", "close-wait"]
    out = subprocess.run(
        ["ss", "-Htn", *states, f"( sport = :{port} )"], check=True, capture_output=True, text=True
    ).stdout
    return len(out.splitlines())


def wait_for(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@contextlib.contextmanager
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    try:
        yield opened
    finally:
        for s in opened:
            s.close()


def round_trip(bootstrap: str, n: int = 5) -> None:
    """A normal client produces n records (acks=all) and reads back exactly those."""
    topic = f"t-{uuid.uuid4().hex[:10]}"
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all"})
    values = [b"v%d" % i for i in range(n)]
    for v in values:
        p.produce(topic, v)
    assert p.flush(WAIT_S) == 0
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        got: list[bytes] = []
        deadline = time.monotonic() + WAIT_S
        while len(got) < n and time.monotonic() < deadline:
            got += [m.value() for m in c.consume(n - len(got), timeout=1) if m.error() is None]
        assert got == values
    finally:
        c.close()


# --- max.connections -----------------------------------------------------------------------------------------


def settled(target: str) -> int:
    """The broker's connection count once the clients of earlier checks have finished closing."""
    last = -1
    for _ in range(int(WAIT_S / 0.5)):
        now = established(target)
        if now == last:
            return now
        last = now
        time.sleep(0.5)  # compare two readings some time apart: a close takes a moment to reach the broker
    raise AssertionError("the connection count never settled")


def test_max_connections_holds_new_clients_in_the_backlog(target: str) -> None:
    round_trip(target)
    already = settled(target)
    limit = int(SETTINGS["max.connections"])
    with sockets() as opened:
        # Under and at the limit: every connection is served. Spread over addresses so no per-IP limit is reached.
        for i in range(limit - already):
            s = connect(target, f"127.0.0.{10 + i % 10}")
            opened.append(s)
            assert ask(s) == "answered", f"connection {already + i + 1} of {limit}"
        # Over: the connection is made (the kernel holds it) but nothing is read from it until one closes.
        # `already` counts the broker's sockets, and Kafka can have let go of one of them a moment before its
        # socket leaves the kernel's table, so one more connection may still be under Kafka's own count.
        over = connect(target, "127.0.0.30")
        opened.append(over)
        if ask(over, HELD_S) == "answered":
            over = connect(target, "127.0.0.31")
            opened.append(over)
            assert ask(over, HELD_S) == "held", f"a connection over {limit} + 1 counted was answered"
        assert ask(opened[0]) == "answered", "clients already connected are not affected"
        opened.pop(0).close()
        assert answer(over, WAIT_S) == "answered"
    round_trip(target)


# --- max.connections.per.ip(.overrides) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "limit"),
    [("127.0.0.2", int(SETTINGS["max.connections.per.ip.overrides"].split(":")[1])),
     ("127.0.0.3", int(SETTINGS["max.connections.per.ip"]))],
    ids=["override", "default"],
)
def test_max_connections_per_ip_closes_the_extra_connection(target: str, source: str, limit: int) -> None:
    with sockets() as opened:
        for i in range(limit):  # under and at
            opened.append(connect(target, source))
            assert ask(opened[-1]) == "answered", f"connection {i + 1} of {limit} from {source}"
        extra = connect(target, source)  # over: closed at once
        opened.append(extra)
        assert ask(extra) == "closed"
        round_trip(target)  # other addresses are not affected while this one is at its limit
        assert ask(opened[0]) == "answered", "that address's open connections are not affected"
        opened.pop(0).close()

        def accepted_again() -> bool:  # the broker counts the close a moment after the client's side is gone
            s = connect(target, source)
            if ask(s) == "answered":
                opened.append(s)
                return True
            s.close()
            return False

        wait_for(accepted_again, f"a connection from {source} after one of its {limit} closed")
    round_trip(target)


# --- socket.request.max.bytes and queued.max.request.bytes -------------------------------------------------


@pytest.mark.parametrize(("declared", "closed"), [(FRAME_MAX - 1, False), (FRAME_MAX, False), (FRAME_MAX + 1, True)])
def test_socket_request_max_bytes(target: str, declared: int, closed: bool) -> None:
    with sockets() as opened:
        s = connect(target)
        opened.append(s)
        s.sendall(struct.pack(">i", declared) + b"\0" * 1000)
        assert answer(s, HELD_S) == ("closed" if closed else "held")
    round_trip(target)


def test_queued_max_request_bytes_pauses_reading_and_resumes(target: str) -> None:
    """Two partial frames of socket.request.max.bytes spend the whole budget: new requests wait, nobody is closed."""
    with sockets() as opened:
        big = []
        for _ in range(2):
            s = connect(target)
            opened.append(s)
            s.sendall(struct.pack(">i", FRAME_MAX) + b"\0" * (1 << 20))
            big.append(s)
            if len(big) == 1:  # under: one frame charged, half the budget left; requests still flow
                assert ask(connect_kept(target, opened)) == "answered"

        probes: list[socket.socket] = []

        def held() -> bool:  # at: the budget is spent once both prefixes are read; wait for that, then probe
            probe = connect(target)
            if ask(probe, HELD_S) == "held":
                opened.append(probe)
                probes.append(probe)
                return True
            probe.close()
            return False

        wait_for(held, "a request to be held back by queued.max.request.bytes")
        probe = probes[0]
        late = connect_kept(target, opened)  # over: a third large frame waits too, and is not closed
        late.sendall(struct.pack(">i", 1000) + b"\0" * 10)
        assert answer(late, 0.2) == "held"
        big[0].close()  # its charge is refunded: reading resumes everywhere
        assert answer(probe, WAIT_S) == "answered"
        assert ask(connect_kept(target, opened)) == "answered"
        assert answer(big[1], 0.2) == "held", "the other partial frame's connection is still open"
    round_trip(target)


def connect_kept(target: str, opened: list[socket.socket]) -> socket.socket:
    s = connect(target)
    opened.append(s)
    return s


# --- socket.listen.backlog.size ----------------------------------------------------------------------------


def test_listen_backlog_size_reaches_listen(target: str) -> None:
    port = target.rsplit(":", 1)[1]
    out = subprocess.run(["ss", "-Hltn", f"( sport = :{port} )"], check=True, capture_output=True, text=True).stdout
    assert [line.split()[2] for line in out.splitlines()] == [SETTINGS["socket.listen.backlog.size"]]


def test_describe_configs_reports_the_limits(target: str) -> None:
    from confluent_kafka.admin import AdminClient, ConfigResource

    res = ConfigResource(ConfigResource.Type.BROKER, "1")
    admin = AdminClient({"bootstrap.servers": target})  # kept: a destroyed client fails its futures
    got = admin.describe_configs([res])[res].result(WAIT_S)
    assert {name: got[name].value for name in SETTINGS} == SETTINGS


# --- loosely only: the request receive timeout and memory --------------------------------------------------------


def test_config_limits_are_checked() -> None:
    for bad in ("max.connections=-1", "socket.listen.backlog.size=0", "loosely.request.receive.timeout.ms=0",
                f"queued.max.request.bytes={FRAME_MAX}", "max.connections.per.ip.overrides=somehost:5",
                "group.consumer.session.timeout.ms=1000", "group.consumer.max.heartbeat.interval.ms=4000"):
        name, value = bad.split("=")
        settings = {"socket.request.max.bytes": str(FRAME_MAX + 1), name: value}
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            fields, _, _ = split_kafka_settings(settings)
            BrokerConfig(data_dir="unused", **fields).check_limits()  # type: ignore[arg-type]
    fields, _, _ = split_kafka_settings({"queued.max.request.bytes": "-1", "max.connections.per.ip": "0",
                                         "max.connections.per.ip.overrides": "127.0.0.1:5,[::1]:0"})
    BrokerConfig(data_dir="unused", **fields).check_limits()  # type: ignore[arg-type]
    assert BrokerConfig(data_dir="unused").queued_request_bytes_limit == 2 * 104_857_600


@pytest.mark.parametrize(("delay_ms", "ok"), [(-1, False), (0, True), (1000, True), (1001, False)])
def test_fetch_backlog_delay_limits(delay_ms: int, ok: bool) -> None:
    fields, _, _ = split_kafka_settings({"loosely.fetch.backlog.delay.ms": str(delay_ms)})
    config = BrokerConfig(data_dir="unused", **fields)  # type: ignore[arg-type]
    if ok:
        config.check_limits()
        assert config.fetch_backlog_delay_ms == delay_ms
    else:
        with pytest.raises(ValueError, match=r"loosely\.fetch\.backlog\.delay\.ms"):
            config.check_limits()


@pytest.fixture
def fake_clock_broker(tmp_path: Path) -> Iterator[tuple[BrokerThread, FakeClock]]:
    clock = FakeClock()
    # Housekeeping, which applies the timeout, runs every retention_check_interval_ms of real time (at most 1 s).
    config = BrokerConfig(data_dir=str(tmp_path), port=0, request_receive_ms_max=1000, retention_check_interval_ms=20)
    with BrokerThread(config, clock=clock) as b:
        yield b, clock


@pytest.mark.parametrize(("elapsed_ms", "closed"), [(999, False), (1000, False), (1001, True)])
def test_request_receive_timeout(
    fake_clock_broker: tuple[BrokerThread, FakeClock], elapsed_ms: int, closed: bool
) -> None:
    b, clock = fake_clock_broker
    request = struct.pack(">ihhih", 10, 18, 0, 7, -1)
    with sockets() as opened:
        s = connect(b.bootstrap_servers)
        opened.append(s)
        s.sendall(request[:5])
        wait_for(
            lambda: b.call(lambda: any(c.partial_since_ms is not None for c in b.broker.connections)),
            "the first bytes",
        )
        clock.advance(elapsed_ms)
        time.sleep(0.2)  # ten housekeeping passes see the advanced clock (an absence can only be waited out)
        if closed:
            assert answer(s, WAIT_S) == "closed"
        else:
            s.sendall(request[5:])
            assert answer(s, WAIT_S) == "answered"


def test_slow_clients_are_closed_and_idle_ones_kept(tmp_path: Path) -> None:
    """Fifty clients trickling a byte every 100 ms are closed once their request is 1 s old; idle clients stay."""
    config = BrokerConfig(data_dir=str(tmp_path), port=0, request_receive_ms_max=1000, retention_check_interval_ms=100)
    with BrokerThread(config) as b, sockets() as opened:
        idle = connect(b.bootstrap_servers)
        slow = [connect(b.bootstrap_servers) for _ in range(50)]
        opened += [idle, *slow]
        frame = struct.pack(">i", 100) + b"\0" * 100  # 104 bytes at 10 a second: ten seconds, never allowed
        started = time.monotonic()
        for i in range(len(frame)):
            for sock in slow:
                with contextlib.suppress(OSError):  # already closed by the broker
                    sock.send(frame[i : i + 1])
            if all(is_closed(sock) for sock in slow):
                break
            time.sleep(0.1)
        assert all(is_closed(sock) for sock in slow)
        assert time.monotonic() - started < 8  # sending the whole frame would take 10.4 s
        assert ask(idle) == "answered"
        round_trip(b.bootstrap_servers)


def is_closed(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.setblocking(True)


def vm_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def child_broker(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "loosely.cli.main", "broker", "--data-dir", str(tmp_path / "data"),
           "--listen", f"127.0.0.1:{port}", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "listening" in line, line
    return proc, f"127.0.0.1:{port}"


def stop_child(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    _, err = proc.communicate(timeout=WAIT_S)
    return err


@pytest.mark.parametrize("queued", ["default", "-1"])
def test_memory_returns_after_abusive_clients_leave(tmp_path: Path, queued: str) -> None:
    """Ten connections send 40 MiB of a declared 100 MiB frame each, then leave; RSS returns near its baseline.

    With the default queued.max.request.bytes (200 MiB) only two frames are read at all; with Kafka's unbounded -1
    all 400 MiB arrive, and must be given back when the clients leave.
    """
    args = [] if queued == "default" else ["--config", f"queued.max.request.bytes={queued}"]
    proc, bootstrap = child_broker(tmp_path, *args)
    try:
        round_trip(bootstrap)  # load what a normal client's requests need before measuring
        baseline = vm_rss_mib(proc.pid)
        with sockets() as opened:
            for _ in range(10):
                s = connect(bootstrap)
                s.sendall(struct.pack(">i", 100 * 1024 * 1024))
                s.setblocking(False)
                opened.append(s)
            send_what_is_read(opened, 40 * 1024 * 1024)
            peak = vm_rss_mib(proc.pid)
        wait_for(lambda: vm_rss_mib(proc.pid) < baseline + 20, "RSS to return near its baseline")
        after = vm_rss_mib(proc.pid)
        print(f"queued.max.request.bytes={queued}: RSS {baseline:.0f} -> {peak:.0f} -> {after:.0f} MiB")
        if queued == "default":
            assert peak - baseline < 2 * 40 + 20, "only two frames fit the budget"
        else:
            assert peak - baseline > 300, "the bytes were really held (else this test proves nothing)"
        round_trip(bootstrap)
    finally:
        stop_child(proc)


def send_what_is_read(socks: list[socket.socket], n: int) -> None:
    """Send up to ``n`` bytes on each socket, round robin, until all are sent or nothing moves for a second."""
    chunk = b"x" * (1 << 20)
    left = {s: n for s in socks}
    idle_since = time.monotonic()
    while left and time.monotonic() - idle_since < 1:
        for s in list(left):
            try:
                sent = s.send(chunk[: min(len(chunk), left[s])])
            except BlockingIOError:
                continue
            idle_since = time.monotonic()
            left[s] -= sent
            if not left[s]:
                del left[s]


def test_out_of_file_descriptors_is_one_line_and_the_broker_recovers(tmp_path: Path) -> None:
    """A flood past the open-files limit: accept() fails with EMFILE, logged once; connected clients carry on."""
    FILES = 300  # noqa: N806 - enough for __consumer_offsets' 50 partitions, and the rest goes to the flood

    def few_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (100, FILES))

    port = free_port()
    cmd = [sys.executable, "-m", "loosely.cli.main", "broker", "--data-dir", str(tmp_path / "data"),
           "--listen", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=few_files  # noqa: PLW1509
    )
    bootstrap = f"127.0.0.1:{port}"
    try:
        assert proc.stdout is not None
        assert "listening" in proc.stdout.readline()
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        lifted = re.search(rf"Max open files\s+{FILES}\s+{FILES}", limits)
        assert lifted, "the broker lifts its soft limit on open files to the hard one"
        round_trip(bootstrap)  # its topics and __consumer_offsets hold their files open before the flood
        with sockets() as opened:
            first = connect(bootstrap)
            opened.append(first)
            assert ask(first) == "answered"
            files = f"/proc/{proc.pid}/fd"
            for _ in range(FILES):  # until every file is used, then a few more wait in the backlog: accept() fails
                with contextlib.suppress(TimeoutError):  # the backlog was full for a moment: the kernel retries
                    opened.append(socket.create_connection(("127.0.0.1", port), timeout=3))
                if len(os.listdir(files)) == FILES:
                    break
            else:
                pytest.fail(f"{FILES} files were never all in use")
            opened += [socket.create_connection(("127.0.0.1", port), timeout=3) for _ in range(3)]
            assert ask(first) == "answered", "a connected client is still served"
        round_trip(bootstrap)
    finally:
        err = stop_child(proc)
    errors = [line for line in err.splitlines() if "ERROR" in line]
    assert 1 <= len(errors) <= 3 and all("Too many open files" in line for line in errors), err
    assert "Traceback" not in err


# --- listening safely --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "0.0.0.0:0"], "not a loopback address"),
        (["--listen", "[::]:0"], "not a loopback address"),
        (["--listen", "192.0.2.1:0"], "not a loopback address"),  # TEST-NET-1: refused before any bind is tried
        (["--listen", "127.0.0.1:0", "--advertise", "0.0.0.0:9092"], "cannot advertise 0.0.0.0"),
        (["--listen", "0.0.0.0:0", "--advertise", "[::]:9092"], "cannot advertise ::"),
        (["--listen", "127.0.0.1:0", "--config", "max.connections=-1"], "max.connections"),
        # open to the network without authentication: refused unless --allow-unauthenticated
        (["--listen", "0.0.0.0:0", "--advertise", "localhost:9092"], "does not authenticate clients"),
        (["--config", "listeners=EXT://0.0.0.0:0", "--config", "advertised.listeners=EXT://broker.example:9092",
          "--config", "listener.security.protocol.map=EXT:PLAINTEXT"], "--allow-unauthenticated"),
        (["--listen", "127.0.0.1:0", "--config", "listeners=PLAINTEXT://127.0.0.1:0"], "not both"),
        (["--config", "listeners=FOO://127.0.0.1:0"], "listener.security.protocol.map"),
        (["--config", "listeners=SSL://127.0.0.1:0"], "ssl.keystore.location"),
        (["--config", "listeners=SSL://127.0.0.1:0", "--config", "ssl.keystore.type=JKS"], "PEM only"),
        (["--config", "listeners=PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0", "--config",
          "ssl.keystore.location=/nonexistent.pem"], "cannot load its TLS key"),
    ],
)
def test_unsafe_listening_is_refused_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    cmd = [sys.executable, "-m", "loosely.cli.main", "broker", "--data-dir", str(tmp_path / "data"), *args]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert not (tmp_path / "data").exists(), "nothing was started"


def test_every_interface_warns_and_advertises_the_given_address(tmp_path: Path) -> None:
    from confluent_kafka.admin import AdminClient

    port = free_port()
    cmd = [sys.executable, "-m", "loosely.cli.main", "broker", "--data-dir", str(tmp_path / "data"),
           "--listen", f"0.0.0.0:{port}", "--advertise", f"localhost:{port}", "--allow-unauthenticated"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert "listening" in proc.stdout.readline()
        md = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=WAIT_S)
        assert [(b.host, b.port) for b in md.brokers.values()] == [("localhost", port)]
        round_trip(f"127.0.0.1:{port}")
    finally:
        err = stop_child(proc)
    warnings = [line for line in err.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, err
    assert f"0.0.0.0:{port}" in warnings[0] and "anyone who can reach it can read, write and delete" in warnings[0]


def test_loopback_does_not_warn(tmp_path: Path) -> None:
    proc, bootstrap = child_broker(tmp_path)
    try:
        round_trip(bootstrap)
    finally:
        err = stop_child(proc)
    assert "WARNING" not in err, err
