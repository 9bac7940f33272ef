"""``loosely mirror`` against a plain kcat pipe and against Apache Kafka's MirrorMaker 2, same brokers, same run.

    kcat -C -b A -t the-topic -o beginning -e -K '\\t' | kcat -P -b B -t copy -K '\\t'      (the baseline)
    loosely mirror --source A --source-alias a --target B --target-alias b --topics the-topic
    java org.apache.kafka.connect.mirror.MirrorMaker mm2.properties                     (MirrorMaker 2, dedicated mode)

Two brokers hold the source and the targets: two ``loosely broker`` processes, and with ``--kafka`` also two
single-node Apache Kafka 4.1.1 clusters (``loosely.testing.ApacheKafka``) for the same variants Kafka -> Kafka. The
source topic gets the talk's N lines (key, value). Each round runs every variant once, interleaved, and times it
from its start (process start-up, internal topics, transactions and offset syncs included) until the target
partition holds all N records *committed*: a read_committed ListOffsets answer reaches N and the last record before
it is the source's last one (a transaction's markers take offsets too, so the end offset alone would stop the clock
one batch early).

What each copy keeps and promises:

* kcat pipe: keys and values as text, no headers, new timestamps, no transactions: a crash half-way leaves a part
  copied and nothing to resume from.
* ``loosely mirror``: headers and timestamps, offset syncs, progress on the target; exactly-once (each batch and its
  progress commit in one transaction on the target, a restart resumes after the last committed one). It copies the
  source's record batches whole here (plain connections, transactions); ``--copy-records`` also times it one record
  at a time through librdkafka (``--copy records``).
* MirrorMaker 2, ``eos``: ``b.exactly.once.source.support = enabled`` (KIP-618): the Connect worker writes each poll's
  records and their source offsets in one transaction (``transaction.boundary = poll``, at most the consumer's
  ``max.poll.records`` = 500 records each): exactly-once, the same promise as ``loosely mirror``.
* MirrorMaker 2, ``alo``: its defaults: at-least-once (offsets committed every ``offset.flush.interval.ms``, a crash
  re-copies what came after the last flush).

Both MirrorMaker 2 variants keep headers and timestamps and write offset syncs, checkpoints and heartbeats. Their
Connect jars come from Maven Central through ``interop/fetch-jars`` (interop/pom.xml: ``connect-mirror``), run with
the heap and G1 settings of Kafka's ``connect-mirror-maker.sh``. Prints median seconds and records per second, the
ratios to the kcat pipe, and the bytes/s against the physical floors (``bench/_floors.py``: loopback TCP, a
write+fsync). Usage::

    .venv/bin/python bench/mirror.py [--messages 1000000] [--repeat 3] [--mm2 eos,alo] [--kafka] [--compare-src DIR]
        [--copy-records]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, TopicPartition

from _floors import Floor, disk_write_bytes_per_s, loopback_bytes_per_s, message_floors, rate_ratio  # bench/_floors.py
from _needs import KCAT, KCAT_AND_KAFKA, require_commands  # bench/_needs.py

ROOT = Path(__file__).resolve().parent.parent
LOOSELY = [sys.executable, "-m", "loosely.cli.main"]
TOPIC = "the-topic"
ARRIVAL_TIMEOUT_S = 600.0  # one variant's round at most; a copy slower than that is reported as not finished
# kafka-run-class.sh's JVM settings, with connect-mirror-maker.sh's heap
MM2_JVM = ["-Xms256m", "-Xmx2g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
           "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true"]
MM2_GUARANTEE = {
    "eos": "exactly-once (exactly.once.source.support=enabled, one transaction per poll of <= 500 records)",
    "alo": "at-least-once (MirrorMaker 2's defaults: source offsets flushed every 60 s)",
}


def start_broker(data_dir: str) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen([*LOOSELY, "broker", "--data-dir", data_dir, "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    m = re.search(r"listening on (\S+)", proc.stdout.readline().decode())
    assert m
    return proc, m.group(1)


def arrived(bootstrap: str, topic: str, n: int, last_key: bytes) -> tuple[int, bool]:
    """``topic``'s partition 0: its read_committed end offset, and whether it holds ``n`` committed records ending
    with the one keyed ``last_key``."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "log_level": 0, "enable.auto.commit": False,
                  "isolation.level": "read_committed", "enable.partition.eof": True})
    try:
        tp = TopicPartition(topic, 0)
        low, stable = c.get_watermark_offsets(tp, timeout=10)  # read_committed: the last stable offset
        if stable < n:
            return stable, False
        # the last committed record sits just before the end, behind at most a marker or two
        c.assign([TopicPartition(topic, 0, max(low, stable - 8))])
        last = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    break
                return stable, False
            last = m.key()
        return stable, last == last_key
    except Exception:  # the topic is not there yet
        return 0, False
    finally:
        c.close()


def all_arrived(bootstrap: str, topic: str, n: int, last_key: bytes) -> bool:
    return arrived(bootstrap, topic, n, last_key)[1]


def wait_arrived(bootstrap: str, topic: str, n: int, last_key: bytes, *, proc: subprocess.Popen[bytes],
                 started: float) -> Copy:
    """Wait until every record arrived; the times since ``started`` of the first record's arrival and the last's."""
    deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
    first = None
    while True:
        look = time.perf_counter()
        stable, done = arrived(bootstrap, topic, n, last_key)
        now = time.perf_counter()
        if first is None and stable > 0:
            first = now - started
        if done:
            return Copy(now - started, first if first is not None else now - started, now - look)
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} ended with {proc.returncode} before copying everything")
        if time.monotonic() > deadline:
            raise TimeoutError(f"not all {n} records arrived in {ARRIVAL_TIMEOUT_S:g} s")
        time.sleep(0.05)


@dataclass(frozen=True)
class Copy:
    """One copy's seconds from its start until all records arrived, and until the first one did (start-up)."""

    seconds: float
    first_s: float
    # how long the look that found every record took (counted in ``seconds``; the kcat pipe's clock stops when
    # its producer exits, without a look): reading up to the end waits out one empty fetch, fetch.wait.max.ms
    last_look_s: float = 0.0


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def kcat_pipe(source: str, target: str, n: int, last_key: bytes) -> Copy:
    copy = f"copy-{uuid.uuid4().hex[:8]}"
    t = time.perf_counter()
    c = subprocess.Popen(["kcat", "-C", "-b", source, "-t", TOPIC, "-o", "beginning", "-e", "-q", "-K", "\t"],
                         stdout=subprocess.PIPE)
    p = subprocess.run(["kcat", "-P", "-b", target, "-t", copy, "-K", "\t"], stdin=c.stdout, check=True)
    assert c.wait() == 0 and p.returncode == 0
    took = time.perf_counter() - t
    assert all_arrived(target, copy, n, last_key)
    return Copy(took, 0.0)  # its first record's arrival is not watched: the pipe starts in milliseconds


def loosely_mirror(source: str, target: str, n: int, last_key: bytes, src: str | None = None, *,
                   extra: tuple[str, ...] = ()) -> Copy:
    """``loosely mirror`` of this tree, or of the source tree ``src`` (``--compare-src``), with ``extra``
    arguments."""
    alias = f"a{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    t = time.perf_counter()
    proc = subprocess.Popen([*LOOSELY, "mirror", "--source", source, "--source-alias", alias, "--target", target,
                             "--target-alias", "b", "--topics", TOPIC, *extra], stderr=subprocess.DEVNULL, env=env)
    try:
        return wait_arrived(target, f"{alias}.{TOPIC}", n, last_key, proc=proc, started=t)
    finally:
        stop(proc)


def mm2_jars() -> Path:
    """The directory interop/fetch-jars fills (``$LOOSELY_JARS_DIR`` when it holds the MirrorMaker jars)."""
    env = os.environ.get("LOOSELY_JARS_DIR")
    if env and any(Path(env).glob("connect-mirror-[0-9]*.jar")):
        return Path(env)
    out = subprocess.run([str(ROOT / "interop" / "fetch-jars")], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def mirror_maker(source: str, target: str, n: int, last_key: bytes, *, jars: Path, work: Path, mode: str) -> Copy:
    # fresh aliases each round: fresh internal topics (Connect's configs, offsets and status), so no round resumes
    # from an earlier one's committed source offsets
    tag = uuid.uuid4().hex[:6]
    src, dst = f"s{tag}", f"t{tag}"
    props = {
        "clusters": f"{src}, {dst}",
        f"{src}.bootstrap.servers": source,
        f"{dst}.bootstrap.servers": target,
        f"{src}->{dst}.enabled": "true",
        f"{src}->{dst}.topics": TOPIC,
        f"{dst}->{src}.enabled": "false",
        "tasks.max": "1",
        # one broker per cluster: every topic MirrorMaker creates gets one replica
        "replication.factor": "1",
        **{f"{k}.replication.factor": "1" for k in ("checkpoints.topic", "heartbeats.topic", "offset-syncs.topic",
                                                     "offset.storage", "status.storage", "config.storage")},
    }
    if mode == "eos":
        props[f"{dst}.exactly.once.source.support"] = "enabled"
    config = work / f"mm2-{tag}.properties"
    config.write_text("".join(f"{k} = {v}\n" for k, v in props.items()))
    log_path = work / f"mm2-{tag}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - the child keeps it
    t = time.perf_counter()
    proc = subprocess.Popen(["java", *MM2_JVM, "-cp", os.path.join(str(jars), "*"),
                             "org.apache.kafka.connect.mirror.MirrorMaker", str(config)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        return wait_arrived(target, f"{src}.{TOPIC}", n, last_key, proc=proc, started=t)
    except (RuntimeError, TimeoutError) as e:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        raise type(e)(f"{e}; its output ends: {' | '.join(tail) or '(nothing)'}") from e
    finally:
        stop(proc)


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """File descriptor 2 to /dev/null for a while (librdkafka writes there from its own threads)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def load_source(bootstrap: str, data: bytes) -> None:
    subprocess.run([*LOOSELY, "produce", "-b", bootstrap, "-t", TOPIC, "-K", ","], input=data, check=True)


def run_pair(label: str, variants: dict[str, Callable[[], Copy]], *, repeat: int, n: int, nbytes: int,
             floors: tuple[Floor, Floor]) -> None:
    times: dict[str, list[float]] = {name: [] for name in variants}
    firsts: dict[str, list[float]] = {name: [] for name in variants}
    looks: dict[str, list[float]] = {name: [] for name in variants}
    failed: dict[str, str] = {}
    for _ in range(repeat):
        for name, run in variants.items():
            if name in failed:
                continue
            try:
                copy = run()
                times[name].append(copy.seconds)
                firsts[name].append(copy.first_s)
                looks[name].append(copy.last_look_s)
            except (RuntimeError, TimeoutError) as e:
                failed[name] = str(e)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} {platform.node()} {platform.machine()}, "
          f"{n} records, median of {repeat}, {label}, load average {os.getloadavg()[0]:.2f}")
    pipe = statistics.median(times["kcat pipe"])
    for name, ts in times.items():
        if name in failed:
            print(f"{name:26s} did not finish: {failed[name]}")
            continue
        m = statistics.median(ts)
        rounds = " ".join(f"{x:.2f}" for x in ts)
        first = statistics.median(firsts[name])
        after = f"first record at {first:6.2f} s" if first else ""
        if first and m > first:  # the copying itself, start-up left out
            after += f", then {n / (m - first):8.0f} rec/s"
        look = statistics.median(looks[name])
        print(f"{name:26s} {m:8.2f} s {n / m:8.0f} rec/s {pipe / m:5.2f}x the kcat pipe  {after:40s} "
              f"(rounds: {rounds})" + (f" (the last look, included: {look:.2f} s)" if look else ""))
    for name in times:
        if name.startswith("MirrorMaker 2"):
            print(f"  {name}: {MM2_GUARANTEE[name.split()[-1]]}")
    print("  loosely mirror: exactly-once (record batches copied whole: a transaction per fetch answer, at most "
          "4 MiB a partition, and its progress)")
    if "loosely mirror --copy records" in times:
        print("  loosely mirror --copy records: exactly-once (a transaction per batch of <= 20,000 records, one "
              "record at a time through librdkafka)")
    loopback, disk = floors
    print(f"  the talk's lines: {message_floors(n, nbytes, loopback, disk)}")
    for name, ts in times.items():
        if ts and name not in failed:
            rate = nbytes / statistics.median(ts)
            print(f"    {rate_ratio(name, rate, loopback)}\n    {rate_ratio(name, rate, disk)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--mm2", default="eos,alo",
                    help="MirrorMaker 2 variants, comma-separated: eos, alo (default both), or none")
    ap.add_argument("--kafka", action="store_true", help="also run every variant between two Apache Kafka brokers")
    ap.add_argument("--compare-src", metavar="DIR",
                    help="also time `loosely mirror` of another source tree (e.g. one from before a change, "
                         "`git archive REV src | tar -x -C DIR/..`), interleaved with this one")
    ap.add_argument("--copy-records", action="store_true",
                    help="also time `loosely mirror --copy records` (one record at a time through librdkafka)")
    args = ap.parse_args()
    modes = [m for m in args.mm2.split(",") if m in MM2_GUARANTEE] if args.mm2 != "none" else []
    require_commands("kcat", *(["java"] if modes or args.kafka else []), why=KCAT_AND_KAFKA if modes else KCAT)
    jars = mm2_jars() if modes or args.kafka else None
    tmp = Path(tempfile.mkdtemp(prefix="mirror-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    kafkas = []
    try:
        # the floors (bench/_floors.py) before the brokers start: a copy crosses loopback twice (out of the source,
        # into the target) and lands in the target's log, in this directory
        floors = (loopback_bytes_per_s(), disk_write_bytes_per_s(tmp))
        n = args.messages
        data = b"".join(b'%d,{"id":"%d", value: "bar"}\n' % (i, i) for i in range(1, n + 1))
        last_key = b"%d" % n
        pairs: list[tuple[str, str, str]] = []
        src_proc, source = start_broker(str(tmp / "a"))
        dst_proc, target = start_broker(str(tmp / "b"))
        procs = [src_proc, dst_proc]
        pairs.append(("loosely -> loosely", source, target))
        if args.kafka:
            from loosely.testing import ApacheKafka  # only for --kafka

            for side in ("ka", "kb"):
                k = ApacheKafka(nodes=1, base_dir=tmp / side, heap_mb=1024, jars_dir=jars)
                kafkas.append(k)
                with quiet_stderr():  # librdkafka's "connection refused" lines while the broker starts
                    k.start()
            pairs.append(("Kafka -> Kafka", kafkas[0].bootstrap_servers, kafkas[1].bootstrap_servers))
        for label, s, t in pairs:
            load_source(s, data)
            variants: dict[str, Callable[[], Copy]] = {
                "kcat pipe": partial(kcat_pipe, s, t, n, last_key),
                "loosely mirror": partial(loosely_mirror, s, t, n, last_key),
            }
            if args.copy_records:
                variants["loosely mirror --copy records"] = partial(loosely_mirror, s, t, n, last_key,
                                                                    extra=("--copy", "records"))
            if args.compare_src:
                variants["loosely mirror (compared)"] = partial(loosely_mirror, s, t, n, last_key, args.compare_src)
            for mode in modes:
                assert jars is not None
                variants[f"MirrorMaker 2 {mode}"] = partial(mirror_maker, s, t, n, last_key, jars=jars, work=tmp,
                                                            mode=mode)
            run_pair(label, variants, repeat=args.repeat, n=n, nbytes=len(data), floors=floors)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
        for k in kafkas:
            k.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
