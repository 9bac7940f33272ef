"""The talk's example over SASL_SSL, against loosely's broker and Apache Kafka side by side in the same run.

Both brokers get the same certificates (``loosely.testing.certs``: a local CA and an EC P-256 broker key) and the
same SASL_SSL listener with a PLAIN user, and Debian's kcat talks TLS 1.3 and SASL to each. PLAIN, not SCRAM:
Debian's kcat is built on librdkafka 2.0.2, whose SCRAM exchange Kafka 4 and loosely refuse (librdkafka#4895,
fixed in 2.6.1); the SASL handshake is once per connection either way, so the mechanism does not change throughput.
Each repeat produces the talk's input to a fresh topic and reads it back with kcat, loosely first in even repeats
and Kafka first in odd ones. Prints msg/s per broker and the ratios (loosely / Kafka), with the same figures over
each broker's PLAINTEXT listener in the same run, so the cost of TLS and SASL shows beside the ratio. Usage::

    .venv/bin/python bench/broker_secured.py [--repeat 3] [--records 1000000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _floors import Floor, disk_write_bytes_per_s, loopback_bytes_per_s, message_floors, rate_ratio
from _needs import KCAT_AND_KAFKA, require_commands  # bench/_needs.py
from broker import QUEUE_FULL_PAUSE, first_produce, talk_input  # bench/broker.py
from loosely.testing import ApacheKafka, free_port
from loosely.testing.certs import make_dev_certs

USER, PASSWORD = "bench", "bench-secret"
JAAS = f'org.apache.kafka.common.security.plain.PlainLoginModule required user_{USER}="{PASSWORD}";'


def broker_settings(certs_dir: Path) -> dict[str, str]:
    """The security part of a server.properties that both brokers read the same way."""
    return {
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_ssl.plain.sasl.jaas.config": JAAS,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(certs_dir / "broker.pem"),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(certs_dir / "ca.crt"),
    }


def client_args(certs_dir: Path) -> list[str]:
    return ["-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=PLAIN", "-X", f"sasl.username={USER}",
            "-X", f"sasl.password={PASSWORD}", "-X", f"ssl.ca.location={certs_dir / 'ca.crt'}"]  # fmt: skip


def start_loosely(work: Path, settings: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, str]:
    plain, secured = free_port(), free_port()
    props = {
        "listeners": f"PLAINTEXT://127.0.0.1:{plain},SASL_SSL://127.0.0.1:{secured}",
        **settings,
    }
    config = work / "loosely.properties"
    config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    proc = subprocess.Popen(
        [sys.executable, "-m", "loosely.cli.main", "broker", "--data-dir", str(work / "loosely"),
         "--config-file", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    first_produce(f"127.0.0.1:{plain}", time.perf_counter())
    return proc, f"127.0.0.1:{plain}", f"127.0.0.1:{secured}"


def run(bootstrap: str, data: Path, n: int, extra: list[str]) -> tuple[float, float]:
    """Seconds for kcat to produce the input, and to read it back."""
    topic = f"the-topic-{uuid.uuid4().hex[:8]}"
    t = time.perf_counter()
    with data.open("rb") as f:
        subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-K", ",", *extra], stdin=f, check=True)
    produce_s = time.perf_counter() - t
    t = time.perf_counter()
    no_pause = f"queued.min.messages={2 * n}"  # bench/broker.py: librdkafka's queue-full pause, not the broker
    out = subprocess.run(
        ["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-X", no_pause, *extra],
        capture_output=True, check=True,
    )  # fmt: skip
    consume_s = time.perf_counter() - t
    got = out.stdout.count(b"\n")
    assert got == n, f"{bootstrap}: read {got} of {n} records"
    assert QUEUE_FULL_PAUSE not in out.stderr
    return produce_s, consume_s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--records", type=int, default=1_000_000)
    args = ap.parse_args()
    require_commands("kcat", "java", why=KCAT_AND_KAFKA)
    work = Path(tempfile.mkdtemp(prefix="bench-secured-"))
    certs = make_dev_certs(work / "certs")
    settings = broker_settings(certs.directory)
    data = work / "input.txt"
    talk_input(args.records, data)
    floors = loopback_bytes_per_s(), disk_write_bytes_per_s(work)  # bench/_floors.py, before the brokers start
    nbytes = data.stat().st_size
    proc, l_plain, l_secured = start_loosely(work, settings)
    kafka = ApacheKafka(nodes=1, base_dir=work / "kafka", heap_mb=1024, listeners={"SASL_SSL": "SASL_SSL"},
                        config=settings)  # fmt: skip
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        kafka.start()
        targets = {
            ("loosely", "plaintext"): (l_plain, []),
            ("loosely", "sasl_ssl"): (l_secured, client_args(certs.directory)),
            ("kafka", "plaintext"): (kafka.bootstrap_servers, []),
            ("kafka", "sasl_ssl"): (kafka.bootstrap("SASL_SSL"), client_args(certs.directory)),
        }
        for i in range(args.repeat):
            order = ["loosely", "kafka"] if i % 2 == 0 else ["kafka", "loosely"]
            for name in order:
                for kind in ("sasl_ssl", "plaintext"):
                    bootstrap, extra = targets[name, kind]
                    times.setdefault((name, kind), []).append(run(bootstrap, data, args.records, extra))
        for (name, kind), ts in sorted(times.items()):
            p = statistics.median(t[0] for t in ts)
            c = statistics.median(t[1] for t in ts)
            print(f"  {name:8s} {kind:9s} produce {args.records / p:>10,.0f} msg/s   consume {args.records / c:>10,.0f}"
                  f" msg/s", flush=True)  # fmt: skip
    finally:
        proc.terminate()
        proc.wait()
        kafka.stop()
        shutil.rmtree(work, ignore_errors=True)
    print()
    for kind in ("sasl_ssl", "plaintext"):
        lp, kp = (statistics.median(t[0] for t in times[b, kind]) for b in ("loosely", "kafka"))
        lc, kc = (statistics.median(t[1] for t in times[b, kind]) for b in ("loosely", "kafka"))
        print(f"{kind:9s} produce ratio {kp / lp:5.2f}   consume ratio {kc / lc:5.2f}")
    print("ratios are loosely throughput / Kafka throughput (>1 means loosely is faster); median of "
          f"{args.repeat}, {args.records:,} records, Debian's kcat")  # fmt: skip
    report_floors(times, args.records, nbytes, *floors)


def report_floors(times: dict[tuple[str, str], list[tuple[float, float]]], records: int, nbytes: int,
                  loopback: Floor, disk: Floor) -> None:
    """The input's bytes over each median time against loopback TCP (and produce against the disk)."""
    print(f"\n{loopback}\n{disk}\n  {message_floors(records, nbytes, loopback, disk)}")
    for (name, kind), ts in sorted(times.items()):
        produce = nbytes / statistics.median(t[0] for t in ts)
        consume = nbytes / statistics.median(t[1] for t in ts)
        print(f"    {rate_ratio(f'{name:7s} {kind:9s} produce', produce, loopback)}")
        print(f"    {rate_ratio(f'{name:7s} {kind:9s} produce', produce, disk)}")
        print(f"    {rate_ratio(f'{name:7s} {kind:9s} consume', consume, loopback)}")


if __name__ == "__main__":
    main()
