"""loosely's schema registry: register and lookup latency, and confluent-kafka's serializers through it against
confluent-kafka's in-process ``mock://`` registry, side by side in the same run.

Measured, each as a median and 99th percentile over ``--n`` operations on an embedded broker:

- ``register``: ``SchemaRegistryClient.register_schema`` of a new schema (a new version: a record produced with
  acks=all and read back before the answer) against the same call on ``mock://`` (a dict in the process);
- ``lookup``: ``POST /subjects/{s}`` of a registered schema, and ``GET /schemas/ids/{id}``, over one kept-alive
  HTTP connection (the client caches both, so they are timed on the wire);
- ``cold round trip``: a fresh client, ``AvroSerializer`` then ``AvroDeserializer`` of one record (register or
  look up the id, then fetch the schema by id): what a service pays once per schema at start;
- ``warm round trip``: serialize + deserialize of one record once the client has cached the schema (per record).

Then the physical floor (``bench/_floors.py``, measured before the broker starts): one TCP round trip of a small
request over 127.0.0.1, the least any registry on this machine takes to answer; every loosely p50 is printed as a
multiple of it (``warm round trip`` stays in the client's cache: no request, no floor).

Usage::

    .venv/bin/python bench/registry.py [--n 300]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import time
from collections.abc import Callable

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from _floors import tcp_round_trip_s, time_ratio  # bench/_floors.py
from loosely.testing import embedded_broker, embedded_schema_registry


def schema(i: int) -> str:
    """The i-th version of a record that only ever adds fields with defaults (BACKWARD compatible)."""
    fields = [{"name": "name", "type": "string"}] + [
        {"name": f"f{k}", "type": "int", "default": 0} for k in range(i)]
    return json.dumps({"type": "record", "name": "User", "fields": fields})


def timed(fn: Callable[[int], object], n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t) * 1000)
    return out


def summary(ms: list[float]) -> tuple[float, float]:
    ms = sorted(ms)
    return statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))]


P50_MS: dict[str, float] = {}  # each row's loosely p50, for the floors


def row(what: str, loosely: list[float], mock: list[float] | None) -> None:
    lp50, lp99 = summary(loosely)
    P50_MS[what] = lp50
    if mock is None:
        print(f"{what:<28} {lp50:9.3f} {lp99:9.3f}")
        return
    mp50, mp99 = summary(mock)
    print(f"{what:<28} {lp50:9.3f} {lp99:9.3f} {mp50:9.3f} {mp99:9.3f} {lp50 / mp50:8.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    n = args.n
    round_trip = tcp_round_trip_s()  # before the broker starts
    with embedded_broker() as broker, embedded_schema_registry(broker.bootstrap_servers) as registry:
        real = SchemaRegistryClient({"url": registry.url})
        mock = SchemaRegistryClient.new_client({"url": "mock://bench"})
        print(f"{'ms per operation':<28} {'p50':>9} {'p99':>9} {'mock p50':>9} {'mock p99':>9} {'ratio':>9}")
        row("register (new version)", timed(lambda i: real.register_schema("reg", Schema(schema(i), "AVRO")), n),
            timed(lambda i: mock.register_schema("reg", Schema(schema(i), "AVRO")), n))
        conn = http.client.HTTPConnection("127.0.0.1", registry.port)
        body = json.dumps({"schema": schema(0)})
        headers = {"Content-Type": "application/vnd.schemaregistry.v1+json"}

        def call(method: str, path: str, data: str | None = None) -> None:
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            r.read()
            assert r.status == 200, r.status

        row("lookup POST /subjects/{s}", timed(lambda i: call("POST", "/subjects/reg", body), n), None)
        row("GET /schemas/ids/{id}", timed(lambda i: call("GET", f"/schemas/ids/{1 + i % n}"), n), None)
        conn.close()
        record = {"name": "ada"}

        def cold(client_conf: dict[str, str]) -> Callable[[int], object]:
            def run(i: int) -> object:
                client = SchemaRegistryClient.new_client(client_conf)
                ctx = SerializationContext("users", MessageField.VALUE)
                data = AvroSerializer(client, schema(0))(record, ctx)
                return AvroDeserializer(client)(data, ctx)
            return run

        row("cold round trip", timed(cold({"url": registry.url}), n // 3),
            timed(cold({"url": "mock://bench-cold"}), n // 3))

        def warm(client: SchemaRegistryClient) -> Callable[[int], object]:
            ctx = SerializationContext("warm", MessageField.VALUE)
            ser, de = AvroSerializer(client, schema(0)), AvroDeserializer(client)
            de(ser(record, ctx), ctx)
            return lambda i: de(ser(record, ctx), ctx)

        row("warm round trip", timed(warm(real), n * 10), timed(warm(mock), n * 10))
        stats = registry.statistics()
        print(f"registry: {stats.versions} versions, {stats.schemas} schemas, {stats.http.requests} requests, "
              f"{stats.store.writes} writes")
    print(f"\nagainst the physical floor (bench/_floors.py):\n  {round_trip}")
    for what, p50 in P50_MS.items():
        if what != "warm round trip":
            print("  " + time_ratio(f"{what} p50", p50 / 1000, round_trip.seconds))


if __name__ == "__main__":
    main()
