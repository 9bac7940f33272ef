"""Share groups (KIP-932): how fast one Java ``KafkaShareConsumer`` reads a topic from loosely and from Apache Kafka.

    .venv/bin/python bench/share_groups.py [--records 200000] [--repeat 3] [--modes implicit,explicit]

Side by side in one run: loosely's broker (its own process, ``loosely broker``) and Apache Kafka 4.4.0 (one KRaft
node, jars from Maven Central), each with the same topic (4 partitions, ``--records`` records of 100 bytes, keyed,
written by confluent-kafka with its defaults and ``linger.ms=5``). Each round, on each broker in turn, a new share
group (``share.auto.offset.reset=earliest``) is read to its end by one JVM running
``interop/share-consumer/ShareBench.java`` with the client's defaults: ``implicit`` acknowledgement (each poll
accepts the previous poll's records) or ``explicit`` (ACCEPT each record, ``commitSync`` after each poll). The
figure is records/s from the first record received to the last one acknowledged, the time before it (joining
the group, the first fetch) printed apart; the broker's CPU seconds over the round come from ``/proc``.

Floor: every record crosses loopback TCP from the broker to the consumer once, so the records' bytes over the
loopback throughput measured in the same run is the least the read could take.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from _floors import loopback_bytes_per_s, rate_ratio  # bench/_floors.py
from loosely.testing import ApacheKafka, free_port
from loosely.testing.apache_kafka import ensure_kafka_jars

ROOT = Path(__file__).resolve().parent.parent
KAFKA = "4.4.0"
VALUE_BYTES = 100
CLK_TCK = os.sysconf("SC_CLK_TCK")
KAFKA_SETTINGS = {  # one node: the share coordinator's state topic cannot have three replicas
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "share.coordinator.state.topic.num.partitions": "1",
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Side:
    name: str
    bootstrap: str
    pid: int
    topic: str = ""
    rates: dict[str, list[float]] = field(default_factory=dict)
    first_ms: dict[str, list[float]] = field(default_factory=dict)
    cpu_s: dict[str, list[float]] = field(default_factory=dict)


def start_loosely(work: Path) -> tuple[subprocess.Popen[bytes], Side]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "loosely.cli.main", "broker", "--data-dir", str(work / "loosely"),
                             "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, Side("loosely", f"127.0.0.1:{port}", proc.pid)


def start_kafka(work: Path) -> tuple[ApacheKafka, Side]:
    kafka = ApacheKafka(nodes=1, base_dir=work / "kafka", jars_dir=ensure_kafka_jars(KAFKA), version=KAFKA,
                        heap_mb=1024, config=KAFKA_SETTINGS)
    kafka.start()
    proc = kafka.node(1).process
    assert proc is not None
    return kafka, Side("kafka", kafka.bootstrap_servers, proc.pid)


def fill(bootstrap: str, records: int, partitions: int) -> str:
    topic = f"share-bench-{uuid.uuid4().hex[:6]}"
    deadline = time.monotonic() + 60
    while True:  # loosely's broker may still be starting
        try:
            admin = AdminClient({"bootstrap.servers": bootstrap})
            admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    value = b"v" * VALUE_BYTES
    for i in range(records):
        while True:
            try:
                p.produce(topic, value, key=b"%d" % i)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(120) == 0
    return topic


def compiled(work: Path) -> Path:
    out = work / "classes"
    sources = [str(p) for p in (ROOT / "interop" / "share-consumer").glob("*.java")]
    subprocess.run(["javac", "-d", str(out), "-cp", f"{ensure_kafka_jars(KAFKA)}/*", *sources], check=True)
    return out


def read_once(side: Side, classes: Path, records: int, mode: str) -> None:
    cpu = cpu_seconds(side.pid)
    r = subprocess.run(["java", "-Xmx512m", "-cp", f"{classes}:{ensure_kafka_jars(KAFKA)}/*", "ShareBench",
                        side.bootstrap, f"bench-{uuid.uuid4().hex[:8]}", side.topic, str(records), mode],
                       capture_output=True, text=True, timeout=400, check=False)
    if r.returncode != 0:
        raise SystemExit(f"{side.name}: ShareBench exited {r.returncode}: {r.stdout[-300:]} {r.stderr[-500:]}")
    seen, millis, first = (int(x) for x in r.stdout.split())
    side.rates.setdefault(mode, []).append(seen / (millis / 1000))
    side.first_ms.setdefault(mode, []).append(first)
    side.cpu_s.setdefault(mode, []).append(cpu_seconds(side.pid) - cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--modes", default="implicit,explicit")
    args = ap.parse_args()
    modes = args.modes.split(",")
    work = Path(tempfile.mkdtemp(prefix="share-bench-"))
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    proc, loosely = start_loosely(work)
    kafka, ak = start_kafka(work)
    try:
        classes = compiled(work)
        for side in (loosely, ak):
            side.topic = fill(side.bootstrap, args.records, args.partitions)
        for _ in range(args.repeat):
            for mode in modes:
                for side in (loosely, ak):
                    read_once(side, classes, args.records, mode)
        loopback = loopback_bytes_per_s()
    finally:
        proc.terminate()
        proc.wait()
        kafka.stop()
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print(f"\n{args.records:,} records of {VALUE_BYTES} B, {args.partitions} partitions, one KafkaShareConsumer "
          f"(kafka-clients {KAFKA}), median of {args.repeat}\n")
    print(f"{'mode':9} {'broker':8} {'records/s':>10} {'runs':>28} {'to first record':>16} {'broker CPU':>11}")
    for mode in modes:
        for side in (loosely, ak):
            runs = ", ".join(f"{r:,.0f}" for r in side.rates[mode])
            print(f"{mode:9} {side.name:8} {statistics.median(side.rates[mode]):>10,.0f} {runs:>28} "
                  f"{statistics.median(side.first_ms[mode]):>13,.0f} ms {statistics.median(side.cpu_s[mode]):>9.2f} s")
        ratio = statistics.median(loosely.rates[mode]) / statistics.median(ak.rates[mode])
        print(f"{mode:9} loosely / kafka: {ratio:.2f}x the records/s")
    print("\nfloor:")
    for mode in modes:
        for side in (loosely, ak):
            rate = statistics.median(side.rates[mode]) * VALUE_BYTES
            print(f"  {rate_ratio(f'{side.name} {mode}, the values alone', rate, loopback)}")


if __name__ == "__main__":
    main()
