"""What each broker sustains on compressed batches, with the client's compression taken out of the race.

``bench/broker.py`` produces the talk's input with ``kcat -z CODEC``. On two cores, kcat compressing with gzip
spends about as much CPU as Kafka's broker spends in its whole run, so that ratio measures kcat's compression
competing with each broker for the cores as much as it measures the brokers. Here the batches are built once,
before any clock starts, exactly as kcat would send them (the talk's records, 10,000 to a batch: librdkafka's
``batch.num.messages``), and replayed as Produce v9 requests (acks=1, up to ``--in-flight`` requests pipelined on one
connection, as librdkafka pipelines them). The client's work per batch is a ``sendall`` of prepared bytes, so the
wall time is the broker's: receive, decompress and walk every record (both brokers validate compressed batches),
append, answer.

Both brokers are up for the whole run; each repeat produces ``--records`` to a fresh topic on one broker and then
on the other, each going first in half of the repeats. One consume per broker and codec checks that every record
arrived. Prints msg/s and broker CPU seconds per run and, at the end, the ratios (loosely / Kafka, medians), and
each broker's bytes/s (the batches' bytes over the median wall) against the physical floors (``bench/_floors.py``,
measured before the brokers start): loopback TCP, which every batch crosses, and writing to the disk the brokers'
logs are on. Usage::

    .venv/bin/python bench/produce_replay.py [--repeat 5] [--records 1000000] [--codecs gzip,lz4,zstd,snappy,none]
"""

from __future__ import annotations

import argparse
import datetime
import socket
import statistics
import struct
import subprocess
import tempfile
import time
import uuid
from collections import deque
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic
from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.schema.types import TopicName

from _floors import disk_write_bytes_per_s, loopback_bytes_per_s, rate_ratio  # bench/_floors.py
from _needs import KCAT_AND_KAFKA, require_commands  # bench/_needs.py
from broker import Broker, cpu_seconds, ratio, start_kafka, start_loosely, stop_brokers  # bench/broker.py
from loosely.protocol.compression import Codec
from loosely.protocol.messages import decode_response, encode_request
from loosely.protocol.records import NewRecord, build_batch

RECORDS_PER_BATCH = 10_000
PRODUCE_VERSION = 9


def talk_batches(n: int, codec: Codec) -> list[bytes]:
    """The talk's records (key i, value {"id":"i", value: "bar"}) in batches as kcat -z CODEC sends them."""
    now = int(time.time() * 1000)
    out = []
    for first in range(1, n + 1, RECORDS_PER_BATCH):
        last = min(first + RECORDS_PER_BATCH, n + 1)
        records = [NewRecord(b"%d" % i, b'{"id":"%d", value: "bar"}' % i, now) for i in range(first, last)]
        out.append(build_batch(records, codec=codec))
    return out


def produce_frames(topic: str, batches: list[bytes]) -> list[bytes]:
    frames = []
    for corr, batch in enumerate(batches, 1):
        req = ProduceRequest(
            transactional_id=None,
            acks=1,
            timeout=datetime.timedelta(seconds=30),
            topic_data=(
                TopicProduceData(name=TopicName(topic), partition_data=(PartitionProduceData(index=0, records=batch),)),
            ),
        )
        frames.append(encode_request(0, PRODUCE_VERSION, corr, req))
    return frames


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        buf += chunk
    return bytes(buf)


def replay(bootstrap: str, frames: list[bytes], in_flight: int) -> float:
    """Seconds from the first byte sent to the last answer read; raises if any batch is refused."""
    host, port = bootstrap.split(",", maxsplit=1)[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        waiting: deque[int] = deque()
        t = time.perf_counter()
        for corr, frame in enumerate(frames, 1):
            if len(waiting) >= in_flight:
                _answer(sock, waiting.popleft())
            sock.sendall(frame)
            waiting.append(corr)
        while waiting:
            _answer(sock, waiting.popleft())
        return time.perf_counter() - t


def _answer(sock: socket.socket, corr: int) -> None:
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    got, resp = decode_response(0, PRODUCE_VERSION, _recv_exact(sock, size))
    assert got == corr, (got, corr)
    p = resp.responses[0].partition_responses[0]  # type: ignore[attr-defined]
    if p.error_code != 0:
        raise RuntimeError(f"batch {corr} refused: error {p.error_code} {p.error_message}")


def count_records(bootstrap: str, topic: str) -> int:
    out = subprocess.run(
        ["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "x"],
        capture_output=True,
        check=True,
    )
    return len(out.stdout)


def create(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the result is in
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--codecs", default="gzip,lz4,zstd,snappy,none")
    ap.add_argument(
        "--in-flight", type=int, default=5, help="Produce requests pipelined (librdkafka: 5 with idempotence)"
    )
    args = ap.parse_args()
    require_commands("kcat", "java", why=KCAT_AND_KAFKA)
    codecs = [Codec[c.upper()] for c in args.codecs.split(",") if c]
    work = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    loopback, disk = loopback_bytes_per_s(), disk_write_bytes_per_s(work)  # before the brokers start
    proc, lb = start_loosely(work)
    kafka = None
    try:
        kafka, kb = start_kafka(work)
        brokers = [lb, kb]
        print(
            f"{args.records:,} talk records in batches of {RECORDS_PER_BATCH:,}, Produce v{PRODUCE_VERSION} acks=1, "
            f"{args.in_flight} in flight, median of {args.repeat}",
            flush=True,
        )
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        sizes: dict[str, int] = {}
        for codec in codecs:
            batches = talk_batches(args.records, codec)
            sizes[codec.name] = sum(map(len, batches))
            size_mib = sizes[codec.name] / (1 << 20)
            for i in range(args.repeat):
                order: list[Broker] = brokers if i % 2 == 0 else brokers[::-1]
                for b in order:
                    topic = f"replay-{codec.name.lower()}-{uuid.uuid4().hex[:8]}"
                    create(b.bootstrap, topic)
                    frames = produce_frames(topic, batches)
                    c0 = cpu_seconds(b.pid)
                    wall = replay(b.bootstrap, frames, args.in_flight)
                    results.setdefault((b.name, codec.name), []).append((wall, cpu_seconds(b.pid) - c0))
                    if i == 0:
                        got = count_records(b.bootstrap, topic)
                        assert got == args.records, f"{b.name} {codec.name}: {got} records, not {args.records}"
            for b in brokers:
                runs = results[b.name, codec.name]
                wall = statistics.median(r[0] for r in runs)
                cpu = statistics.median(r[1] for r in runs)
                print(
                    f"  {b.name:8s} {codec.name.lower():>6s} ({size_mib:6.1f} MiB) {args.records / wall:>12,.0f} msg/s"
                    f"   broker cpu {cpu:.2f} s   walls {' '.join(f'{r[0]:.2f}' for r in runs)}",
                    flush=True,
                )
    finally:
        stop_brokers(proc, kafka, work)
    print()
    print(f"{'codec':>6s} {'produce ratio':>14s} {'cpu loosely':>12s} {'cpu kafka':>10s}")
    for codec in codecs:
        lr, kr = results["loosely", codec.name], results["kafka", codec.name]
        r = ratio([w for w, _ in lr], [w for w, _ in kr])
        print(
            f"{codec.name.lower():>6s} {r:>14.2f} {statistics.median(c for _, c in lr):>12.2f} "
            f"{statistics.median(c for _, c in kr):>10.2f}"
        )
    print("ratios are loosely throughput / Kafka throughput (>1 means loosely is faster)")
    print(f"\nagainst the physical floors (bench/_floors.py), the batches' bytes over the median wall:\n  {loopback}\n"
          f"  {disk}")
    for codec in codecs:
        for name in ("loosely", "kafka"):
            rate = sizes[codec.name] / statistics.median(w for w, _ in results[name, codec.name])
            print("  " + rate_ratio(f"{name} {codec.name.lower()}", rate, loopback))
            print("  " + rate_ratio(f"{name} {codec.name.lower()}", rate, disk))


if __name__ == "__main__":
    main()
