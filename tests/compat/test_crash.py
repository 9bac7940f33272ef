"""kill -9 the broker process during a produce storm, many times: no acknowledged message is lost, offsets stay
unique and dense, and every restart is clean."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from loosely.testing import free_port

KILLS = int(os.environ.get("LOOSELY_CRASH_KILLS", "10"))


def start_broker(data: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loosely.cli.main",
            "broker",
            "--data-dir",
            str(data),
            "--listen",
            f"127.0.0.1:{port}",
            "--num-partitions",
            "3",
            "--config",
            "log.segment.bytes=200000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert b"listening" in line, line
    return proc


def test_kill_dash_nine_during_produce_storm_loses_no_acknowledged_message(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    acked: dict[tuple[int, int], bytes] = {}
    lock = threading.Lock()
    stop = threading.Event()
    rng = random.Random(7)

    def produce() -> None:
        p = Producer(
            {
                "bootstrap.servers": f"127.0.0.1:{port}",
                "acks": "all",
                "linger.ms": 2,
                "message.timeout.ms": 120_000,
                "reconnect.backoff.max.ms": 200,
                "retry.backoff.ms": 50,
                "enable.idempotence": False,
            }
        )
        i = 0

        def on_delivery(err: object, msg: object) -> None:
            if err is None:
                with lock:
                    acked[(msg.partition(), msg.offset())] = msg.value()  # type: ignore[attr-defined]

        while not stop.is_set():
            try:
                p.produce("storm", b"m-%08d" % i, key=b"%d" % (i % 97), on_delivery=on_delivery)
                i += 1
            except BufferError:
                p.poll(0.05)
            p.poll(0)
        p.flush(120)

    procs = [start_broker(data, port)]
    t = threading.Thread(target=produce)
    t.start()
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.3, 1.2))
            os.kill(procs[-1].pid, signal.SIGKILL)
            procs[-1].wait()
            procs.append(start_broker(data, port))
        time.sleep(0.5)
        stop.set()
        t.join(timeout=180)
        assert len(acked) > 1000, "the storm produced too little to mean anything"
        verify(port, acked)
    finally:
        stop.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def verify(port: int, acked: dict[tuple[int, int], bytes]) -> None:
    c = Consumer({"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "verify", "enable.auto.commit": False})
    seen: dict[tuple[int, int], bytes] = {}
    for part in range(3):
        c.assign([TopicPartition("storm", part, 0)])
        lo, hi = c.get_watermark_offsets(TopicPartition("storm", part), timeout=10)
        assert lo == 0
        got = 0
        while got < hi:
            msgs = c.consume(10_000, timeout=5)
            assert msgs, f"partition {part}: stuck before the high watermark {hi}"
            for m in msgs:
                assert m.error() is None
                assert (part, m.offset()) not in seen, "duplicate offset"
                seen[(part, m.offset())] = m.value()
                got += 1
        offsets = sorted(o for p, o in seen if p == part)
        assert offsets == list(range(hi)), f"partition {part} has holes"
    c.close()
    lost = {k: v for k, v in acked.items() if seen.get(k) != v}
    assert not lost, f"{len(lost)} acknowledged messages lost or changed, e.g. {list(lost.items())[:3]}"
