"""kcat's modes on librdkafka (confluent-kafka): everything the native path (loosely.clients.fastpath) does not take.

Imported by :mod:`._main` only when the native path (:mod:`._native`) declines, so that plain produce/consume
never pay confluent-kafka's import.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import IO, Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from loosely.cli._kafka_errors import kafka_error_text
from loosely.cli.kcat._options import (
    INPUT_CHUNK_BYTES,
    OFFSET_INVALID,
    PARTITION_UA,
    Conf,
    Fatal,
    FormatFailure,
    info,
    librdkafka_config,
)
from loosely.clients.kcat_format import NULL_STR, KafkaMessage, compile_format, dump_json, parse_format, render_json

__all__ = ["RUNNERS"]


def _err2str(e: KafkaException) -> str:
    """librdkafka's rd_kafka_err2str of the error's code: what kcat prints when a call fails (confluent-kafka's
    own text adds the call, e.g. "Failed to get metadata: ")."""
    err = e.args[0] if e.args else None
    if isinstance(err, KafkaError):
        text: str = KafkaError(err.code()).str()
        return text
    return str(e)


def _error_callback(conf: Conf) -> Callable[[KafkaError], None]:
    """kcat's error_cb, for the producer and the group consumer (the other modes report their own failure, as
    kcat's do): every client error is one ``% ERROR:`` line (not under -q), and "all broker connections
    are down" ends the command with exit code 1 unless -E was given (``% ERROR: ...: terminating``).

    confluent-kafka calls this from poll/flush/consume in the calling thread and re-raises what it raises there.
    """

    def on_error(err: KafkaError) -> None:
        text = f"{KafkaError(err.code()).str()}: {err.str()}"
        if err.code() == KafkaError._ALL_BROKERS_DOWN and conf.exit_on_error:
            # kcat exits from inside the callback; so do we: confluent-kafka drops an exception raised here
            # when the callback runs inside a blocking call such as list_topics.
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.flush()
            sys.stderr.write(f"% ERROR: {text}: terminating\n")
            sys.stderr.flush()
            os._exit(1)
        info(conf, 1, f"% ERROR: {text}\n")

    return on_error


def _make(factory: Callable[[dict[str, Any]], Any], cfg: dict[str, Any], what: str) -> Any:
    try:
        return factory(cfg)
    except KafkaException as e:
        text = kafka_error_text(e)
        if text.startswith(("No such configuration property", "Invalid value", "Configuration property")):
            raise Fatal(text) from None
        raise Fatal(f"Failed to create {what}: {text}") from None
    except (TypeError, ValueError) as e:
        raise Fatal(str(e)) from None


# --- producer -------------------------------------------------------------------------------------------------


def _delimited(chunks: Callable[[], bytes], delim: bytes) -> Any:
    """Yield lists of complete records from a stream of input chunks (the last one may lack its delimiter)."""
    rest = b""
    while True:
        data = chunks()
        if not data:
            if rest:
                yield [rest]
            return
        buf = rest + data if rest else data
        parts = buf.split(delim)
        rest = parts.pop()
        if parts:
            yield parts


def _stdin_chunks(fd: int) -> Callable[[], bytes]:
    def read() -> bytes:
        return os.read(fd, INPUT_CHUNK_BYTES)

    return read


def run_producer(conf: Conf, out: IO[bytes]) -> int:
    cfg = librdkafka_config(conf)
    failures = [0]

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            failures[0] += 1
            info(conf, 1, f"% Delivery failed for message: {err.str()}\n")

    cfg["on_delivery"] = on_delivery
    cfg["error_cb"] = _error_callback(conf)
    # only failures need a callback (kcat counts them for its exit code); a callback per record costs ~1 µs
    cfg.setdefault("delivery.report.only.error", True)
    txn = bool(cfg.get("transactional.id"))
    producer: Producer = _make(Producer, cfg, "producer")
    timeout = conf.metadata_timeout_s
    if txn:
        info(conf, 1, "% Using transactional producer\n")
        try:
            producer.init_transactions(timeout)
        except KafkaException as e:
            raise Fatal(f"init_transactions(): {kafka_error_text(e)}") from None
        producer.begin_transaction()
    topic = conf.topic
    assert topic is not None
    partition = conf.partition
    headers = conf.headers or None
    sent = 0
    limit = conf.msg_cnt
    produce = producer.produce

    def send(value: bytes | None, key: bytes | None) -> None:
        while True:
            try:
                if partition == PARTITION_UA:
                    produce(topic, value, key, headers=headers)
                else:
                    produce(topic, value, key, partition, headers=headers)
                return
            except BufferError:
                producer.poll(0.005)
            except KafkaException as e:
                size = len(value) if value is not None else 0
                raise Fatal(f"Failed to produce message ({size} bytes): {kafka_error_text(e)}") from None

    exit_code = 0
    if conf.operands and not conf.line_mode:
        good = 0
        for path in conf.operands:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                info(conf, 1, f"% Failed to open {path}: {e.strerror}\n")
                continue
            good += 1
            if data:
                send(data, conf.fixed_key)
                sent += 1
        if good == 0:
            exit_code = 1
    else:
        if conf.operands:
            try:
                fd = os.open(conf.operands[0], os.O_RDONLY)
            except OSError as e:
                raise Fatal(f"Cannot open {conf.operands[0]}: {e.strerror}") from None
        else:
            fd = 0
        kd = conf.key_delim
        fixed_key = conf.fixed_key
        null = conf.null
        tee = conf.tee
        delim = conf.delim
        for batch in _delimited(_stdin_chunks(fd), delim):
            for rec in batch:
                if not rec or not conf.run:
                    continue
                key = fixed_key
                value: bytes | None = rec
                if kd is not None:
                    k, sep, v = rec.partition(kd)
                    if sep:
                        key, value = k, v
                        if null:
                            value = v or None
                            key = k or None
                        if key is None:
                            key = fixed_key
                send(value, key)
                if tee:
                    out.write(rec)
                sent += 1
                if sent == limit:
                    conf.run = False
                    break
            producer.poll(0)
            if not conf.run:
                break
    if txn:
        try:
            if conf.run or sent == limit:
                info(conf, 1, "% Committing transaction\n")
                producer.commit_transaction(timeout)
                info(conf, 1, "% Transaction successfully committed\n")
            else:
                info(conf, 0, "% Aborting transaction due to termination signal\n")
                producer.abort_transaction(timeout)
        except KafkaException as e:
            raise Fatal(f"commit_transaction(): {kafka_error_text(e)}") from None
    while conf.run and producer.flush(0.1) > 0:  # SIGINT/SIGTERM stop the wait, as they stop kcat's
        pass
    if failures[0]:
        exit_code = 1
    return exit_code


# --- consumers ------------------------------------------------------------------------------------------------


class _Output:
    """Buffers rendered messages and writes them in large blocks (or at once with ``-u``)."""

    def __init__(self, out: IO[bytes], unbuffered: bool) -> None:
        self.out = out
        self.parts: list[bytes] = []
        self.size = 0
        self.unbuffered = unbuffered

    def add(self, data: bytes) -> None:
        self.parts.append(data)
        if self.unbuffered:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            self.out.write(b"".join(self.parts))
            self.parts.clear()
            self.out.flush()


TP = tuple[str | None, int | None]


def _renderer(conf: Conf, leaders: dict[TP, int]) -> Callable[[KafkaMessage], bytes]:
    assert conf.fmt is not None
    tokens = parse_format(conf.fmt)
    if conf.serdes or (conf.pack and not conf.json):  # kcat's -J envelope ignores pack formats
        from loosely.cli.kcat._serdes import serdes_renderer  # noqa: PLC0415 - the registry's imports only for -s

        tail = tokens[0].text if conf.json and tokens and tokens[0].kind == "str" else b""
        return serdes_renderer(conf, tokens, _broker_of(leaders) if conf.json else None, tail)
    if conf.json:
        tail = tokens[0].text if tokens and tokens[0].kind == "str" else b""

        def as_json(m: KafkaMessage) -> bytes:
            broker = leaders.get((m.topic(), m.partition()), -1)
            return render_json(m, broker) + tail

        return as_json
    return compile_format(tokens, NULL_STR if conf.null else None)


def _broker_of(leaders: dict[TP, int]) -> Callable[[KafkaMessage], int]:
    return lambda m: leaders.get((m.topic(), m.partition()), -1)


def _consumer_config(conf: Conf, group: str | None) -> dict[str, Any]:
    cfg = librdkafka_config(conf)
    if "partitioner" not in conf.rk:
        del cfg["partitioner"]  # a producer property; librdkafka warns about it in a consumer
    cfg.setdefault("group.id", group or "loosely-kcat")
    cfg["enable.partition.eof"] = True
    cfg.setdefault("enable.auto.commit", group is not None)
    # Offsets are stored by the loop, once per batch, for the messages it handed out: librdkafka 2.12's automatic
    # store counts a partition-EOF event as a message and stores one past the end (its next run would skip one).
    cfg.setdefault("enable.auto.offset.store", False)
    # librdkafka >= 2.4 backs off 1 s whenever its prefetch queue is full; kcat's 2.0.2 never does
    cfg.setdefault("fetch.queue.backoff.ms", 0)
    cfg.setdefault("queued.max.messages.kbytes", 262144)
    cfg.setdefault("queued.min.messages", 1000000)
    return cfg


def run_consumer(conf: Conf, out: IO[bytes]) -> int:
    topic = conf.topic
    assert topic is not None
    consumer: Consumer = _make(Consumer, _consumer_config(conf, None), "consumer")
    try:
        try:
            md = consumer.list_topics(topic, timeout=conf.metadata_timeout_s)
        except KafkaException as e:
            raise Fatal(f"Failed to query metadata for topic {topic}: {_err2str(e)}") from None
        tmd = md.topics.get(topic)
        if tmd is None:
            raise Fatal(f"No such topic in cluster: {topic}")
        if tmd.error is not None:
            raise Fatal(f"Topic {topic} error: {tmd.error.str()}")
        if not tmd.partitions:
            raise Fatal(f"Topic {topic} has no partitions")
        partition_ids = list(tmd.partitions)
        wanted = partition_ids if conf.partition == PARTITION_UA else [conf.partition]
        if conf.partition != PARTITION_UA and conf.partition not in tmd.partitions:
            raise Fatal(
                f"Topic {topic} (with partitions 0..{len(partition_ids) - 1}): "
                f"partition {conf.partition} does not exist"
            )
        leaders: dict[TP, int] = {(topic, p): tmd.partitions[p].leader for p in partition_ids}
        start = OFFSET_BEGINNING if conf.offset == OFFSET_INVALID else conf.offset
        assignment = [TopicPartition(topic, p, start) for p in wanted]
        if conf.start_ts:
            query = [TopicPartition(topic, p, conf.start_ts) for p in wanted]
            try:
                found = consumer.offsets_for_times(query, timeout=conf.metadata_timeout_s)
            except KafkaException as e:
                raise Fatal(f"offsets_for_times failed: {_err2str(e)}") from None
            assignment = [TopicPartition(topic, tp.partition, tp.offset) for tp in found]
        consumer.assign(assignment)
        stop_threshold = len(wanted) if (conf.exit_eof or conf.stop_ts) else -1
        return _consume_loop(conf, consumer, out, leaders, stop_threshold, group_mode=False)
    finally:
        consumer.close()


def _consume_loop(
    conf: Conf,
    consumer: Consumer,
    out: IO[bytes],
    leaders: dict[TP, int],
    stop_threshold: int,
    *,
    group_mode: bool,
    assignment: set[TP] | None = None,
) -> int:
    render = _renderer(conf, leaders)
    output = _Output(out, conf.unbuffered)
    stopped: set[TP] = set()
    at_eof: set[TP] = set()
    received = 0
    limit = conf.msg_cnt
    stop_ts = conf.stop_ts
    batch_size = 1 if conf.unbuffered else 10000
    add = output.parts.append
    store = group_mode and str(conf.rk.get("enable.auto.offset.store", "false")).lower() == "false"
    positions: dict[TP, int] = {}
    try:
        while conf.run:
            msgs = consumer.consume(batch_size, 0.1)
            if store and positions:
                _store(consumer, positions)
            for m in msgs:
                err = m.error()
                tp = (m.topic(), m.partition())
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if _at_eof(conf, m, tp, stopped, at_eof, stop_threshold, group_mode, assignment):
                            break
                        continue
                    output.flush()
                    if m.topic():
                        raise Fatal(f"Topic {m.topic()} [{m.partition()}] error: {err.str()}")
                    raise Fatal(f"Consumer error: {err.str()}")
                if store:
                    positions[tp] = (m.offset() or 0) + 1
                if tp in stopped:
                    continue
                if group_mode and tp in at_eof:
                    at_eof.discard(tp)
                if stop_ts and m.timestamp()[1] >= stop_ts:
                    stopped.add(tp)
                    if len(stopped) >= stop_threshold:
                        conf.run = False
                    exiting = ": exiting" if not conf.run else ""
                    info(
                        conf,
                        1,
                        f"% Reached stop timestamp for topic {tp[0]} [{tp[1]}] at offset {m.offset()}{exiting}\n",
                    )
                    if not conf.run:
                        break
                    continue
                try:
                    add(render(m))
                except FormatFailure as e:  # a -s field kcat could not decode, and no -E: kcat exits here
                    add(e.partial)
                    output.flush()
                    if store:  # a group's next run starts at this message, not after it
                        positions[tp] = m.offset() or 0
                    raise Fatal(f"{e.line}: terminating") from None
                received += 1
                if received == limit:
                    conf.run = False
                    break
            if output.parts and (conf.unbuffered or len(output.parts) >= 1000 or not msgs):
                output.flush()
    finally:
        output.flush()
        if store and positions:
            _store(consumer, positions)
    return 0


def _store(consumer: Consumer, positions: dict[TP, int]) -> None:
    """Mark the handed-out messages for the next (auto) commit, as librdkafka's automatic store would."""
    tps = [TopicPartition(t, p, o) for (t, p), o in positions.items() if t is not None and p is not None]
    positions.clear()
    with contextlib.suppress(KafkaException):  # a partition revoked meanwhile has nothing to store
        consumer.store_offsets(offsets=tps)


def _at_eof(  # noqa: PLR0917 - kcat's partition_at_eof() with its globals made explicit
    conf: Conf,
    m: Message,
    tp: TP,
    stopped: set[TP],
    at_eof: set[TP],
    stop_threshold: int,
    group_mode: bool,
    assignment: set[TP] | None,
) -> bool:
    """Note a partition's EOF; True when the consumer should stop."""
    if not group_mode:
        if conf.exit_eof and tp not in stopped:
            stopped.add(tp)
            if len(stopped) >= stop_threshold:
                conf.run = False
    elif conf.exit_eof and assignment is not None and tp in assignment and tp not in at_eof:
        at_eof.add(tp)
        if len(at_eof) == len(assignment):
            conf.run = False
    exiting = ": exiting" if not conf.run else ""
    info(conf, 1, f"% Reached end of topic {tp[0]} [{tp[1]}] at offset {m.offset()}{exiting}\n")
    return not conf.run


def run_group_consumer(conf: Conf, out: IO[bytes]) -> int:
    if conf.start_ts or conf.stop_ts:
        raise Fatal("-o ..@ timestamps can't be used with -G mode\n")
    group = conf.group
    cfg = _consumer_config(conf, group)
    cfg["error_cb"] = _error_callback(conf)
    consumer: Consumer = _make(Consumer, cfg, "consumer")
    assignment: set[TP] = set()
    leaders: dict[TP, int] = {}

    def on_assign(c: Consumer, partitions: list[TopicPartition]) -> None:
        text = ", ".join(f"{p.topic} [{p.partition}]" for p in partitions)
        info(conf, 1, f"% Group {group} rebalanced (memberid {c.memberid()}): assigned: {text}\n")
        if conf.offset != OFFSET_INVALID:
            for p in partitions:
                p.offset = conf.offset
        assignment.clear()
        assignment.update((p.topic, p.partition) for p in partitions)
        c.assign(partitions)

    def on_revoke(c: Consumer, partitions: list[TopicPartition]) -> None:
        text = ", ".join(f"{p.topic} [{p.partition}]" for p in partitions)
        info(conf, 1, f"% Group {group} rebalanced (memberid {c.memberid()}): revoked: {text}\n")
        assignment.clear()
        c.unassign()

    try:
        consumer.subscribe(conf.operands, on_assign=on_assign, on_revoke=on_revoke)
    except KafkaException as e:
        raise Fatal(f"Failed to subscribe to {len(conf.operands)} topics: {kafka_error_text(e)}\n") from None
    info(conf, 1, "% Waiting for group rebalance\n")
    if conf.json:  # leaders give -J's "broker" field; nothing else needs this wait
        try:
            md = consumer.list_topics(timeout=conf.metadata_timeout_s)
            for name, tmd in md.topics.items():
                for p, pmd in tmd.partitions.items():
                    leaders[(name, p)] = pmd.leader
        except KafkaException:
            pass
    try:
        return _consume_loop(conf, consumer, out, leaders, -1, group_mode=True, assignment=assignment)
    finally:
        # kcat's offsets reach the group when it closes; some librdkafka versions (2.12) skip that final auto
        # commit when the rebalance callback unassigns, so commit what was consumed explicitly first
        if str(conf.rk.get("enable.auto.commit", "true")).lower() == "true":
            with contextlib.suppress(KafkaException):
                consumer.commit(asynchronous=False)
        consumer.close()


# --- metadata and offsets for times ---------------------------------------------------------------------------


def run_metadata(conf: Conf, out: IO[bytes]) -> int:
    producer: Producer = _make(Producer, librdkafka_config(conf), "producer")
    try:
        md = producer.list_topics(conf.topic, timeout=conf.metadata_timeout_s)
    except KafkaException as e:
        err = e.args[0] if e.args else None
        hint = ""
        if isinstance(err, KafkaError) and err.code() == KafkaError._TRANSPORT:
            hint = " (Are the brokers reachable? Also try increasing the metadata timeout with -m <timeout>?)"
        raise Fatal(f"Failed to acquire metadata: {_err2str(e)}{hint}") from None
    controller = md.controller_id
    if conf.json:
        brokers = [{"id": b.id, "name": f"{b.host}:{b.port}"} for b in md.brokers.values()]
        topics = []
        for t in md.topics.values():
            entry: dict[str, object] = {"topic": t.topic}
            if t.error is not None:
                entry["error"] = t.error.str()
            parts = []
            for p in t.partitions.values():
                pe: dict[str, object] = {"partition": p.id}
                if p.error is not None:
                    pe["error"] = p.error.str()
                pe["leader"] = p.leader
                pe["replicas"] = [{"id": r} for r in p.replicas]
                pe["isrs"] = [{"id": r} for r in p.isrs]
                parts.append(pe)
            entry["partitions"] = parts
            topics.append(entry)
        doc = {
            "originating_broker": {"id": md.orig_broker_id, "name": md.orig_broker_name},
            "query": {"topic": conf.topic or "*"},
            "controllerid": controller,
            "brokers": brokers,
            "topics": topics,
        }
        out.write(dump_json(doc))
        return 0
    lines = [
        f"Metadata for {conf.topic or 'all topics'} (from broker {md.orig_broker_id}: {md.orig_broker_name}):",
        f" {len(md.brokers)} brokers:",
    ]
    for b in md.brokers.values():
        lines.append(f"  broker {b.id} at {b.host}:{b.port}{' (controller)' if controller == b.id else ''}")
    lines.append(f" {len(md.topics)} topics:")
    for t in md.topics.values():
        head = f'  topic "{t.topic}" with {len(t.partitions)} partitions:'
        if t.error is not None:
            head += f" {t.error.str()}"
            if t.error.code() == KafkaError.LEADER_NOT_AVAILABLE:
                head += " (try again)"
        lines.append(head)
        for p in t.partitions.values():
            line = (
                f"    partition {p.id}, leader {p.leader}, replicas: {','.join(map(str, p.replicas))}, "
                f"isrs: {','.join(map(str, p.isrs))}"
            )
            if p.error is not None:
                line += f", {p.error.str()}"
            lines.append(line)
    out.write(("\n".join(lines) + "\n").encode())
    return 0


def run_query(conf: Conf, out: IO[bytes]) -> int:
    cfg = _consumer_config(conf, None)
    consumer: Consumer = _make(Consumer, cfg, "producer")
    try:
        query = [TopicPartition(t, p, ts) for t, p, ts in conf.query]
        try:
            found = consumer.offsets_for_times(query, timeout=conf.metadata_timeout_s)
        except KafkaException as e:
            raise Fatal(f"offsets_for_times failed: {_err2str(e)}") from None
    finally:
        consumer.close()
    found = sorted(found, key=lambda tp: (tp.topic, tp.partition))
    if conf.json:
        doc: dict[str, dict[str, object]] = {}
        for tp in found:
            entry = doc.setdefault(tp.topic, {"topic": tp.topic})
            pe: dict[str, object] = {"partition": tp.partition, "offset": tp.offset}
            if tp.error is not None:
                pe["error"] = tp.error.str()
            entry[str(tp.partition)] = pe
        out.write(dump_json(doc))
        return 0
    text = []
    for tp in found:
        line = f"{tp.topic} [{tp.partition}] offset {tp.offset}"
        text.append(line + (f": {tp.error.str()}\n" if tp.error is not None else "\n"))
    out.write("".join(text).encode())
    return 0


RUNNERS: dict[str, Callable[[Conf, IO[bytes]], int]] = {
    "P": run_producer,
    "C": run_consumer,
    "G": run_group_consumer,
    "L": run_metadata,
    "Q": run_query,
}
