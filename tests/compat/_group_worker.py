"""A consumer-group member for the rebalance-under-load test, run as its own process so it can be SIGKILLed.

Usage: ``python _group_worker.py <bootstrap> <topic> <group>``. For every record it processes it prints
``P <partition> <offset>``; after each batch it commits the next offsets synchronously (at-least-once) and prints
``C <partition> <offset>`` for each. Output is flushed line by line so a killed worker's work is still visible.
"""

from __future__ import annotations

import signal
import sys

from confluent_kafka import Consumer, KafkaException, TopicPartition


def main() -> None:
    bootstrap, topic, group = sys.argv[1:4]
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "max.poll.interval.ms": 30_000,
        }
    )
    c.subscribe([topic])
    while not stop:
        msgs = [m for m in c.consume(100, timeout=0.2) if m.error() is None]
        if not msgs:
            continue
        nxt: dict[int, int] = {}
        for m in msgs:
            print(f"P {m.partition()} {m.offset()}", flush=True)
            nxt[m.partition()] = max(nxt.get(m.partition(), 0), m.offset() + 1)
        try:
            c.commit(offsets=[TopicPartition(topic, p, o) for p, o in nxt.items()], asynchronous=False)
        except KafkaException as e:
            # A rebalance took the partitions away meanwhile: the new owner starts from the last commit.
            print(f"E {e.args[0].code()}", flush=True)
            continue
        for p, o in nxt.items():
            print(f"C {p} {o}", flush=True)
    c.close()


if __name__ == "__main__":
    main()
