"""``loosely kcat`` / ``produce`` / ``consume`` / ``metadata`` / ``query``: kcat's command line, flag for flag.

The same command line prints the same bytes on stdout and exits with the same code as Debian's kcat 1.7.1
(``tests/compat/test_cli_conformance.py`` runs both). Options are parsed like kcat's GNU ``getopt`` (options and
operands may be mixed; each option acts in order, so ``-t`` means a query partition only after ``-Q``). Errors
follow kcat: fatal ones print ``% ERROR: ...`` and exit 1, usage errors print ``Error: ...`` and the usage and
exit 1.

One documented difference: with no ``-p``, keyed records go to the partition Apache Kafka's Java producer picks
(murmur2, librdkafka's ``murmur2_random``) instead of librdkafka's CRC32 ``consistent_random``; pass
``-X topic.partitioner=consistent_random`` for kcat's placement.
"""

from __future__ import annotations

import getopt
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, NoReturn

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    OFFSET_STORED,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from loosely.clients.kcat_format import (
    NULL_STR,
    FormatError,
    KafkaMessage,
    compile_format,
    dump_json,
    parse_delim,
    parse_format,
    render_json,
)
from loosely.clients.partitioner import DEFAULT_PARTITIONER

__all__ = ["main"]

OPTSTRING = "PCG:LQt:p:b:z:o:eED:K:k:H:Od:qvF:X:c:Tuf:ZlVhs:r:Jm:U"
OFFSET_TAIL_BASE = -2000  # librdkafka's RD_KAFKA_OFFSET_TAIL(n) = -2000 - n
OFFSET_INVALID = -1001
PARTITION_UA = -1
INPUT_CHUNK_BYTES = 1 << 20

USAGE = """\
Usage: loosely kcat <options> [file1 file2 .. | topic1 topic2 ..]]
loosely's kcat-compatible Kafka producer and consumer (same flags and output as kcat 1.7.1)

General options:
  -C | -P | -L | -Q  Mode: Consume, Produce, Metadata List, Query mode
  -G <group-id>      Mode: balanced consumer group; the remaining arguments are topics
  -t <topic>         Topic to consume from, produce to, or list
  -p <partition>     Partition
  -b <brokers,..>    Bootstrap broker(s) (host[:port])
  -D <delim>         Message delimiter: a-z | \\n | \\t | \\xNN (default \\n)
  -K <delim>         Key delimiter (same format as -D)
  -c <cnt>           Limit message count
  -m <seconds>       Metadata (and transaction) timeout, default 5
  -F <config-file>   Read property=value lines (KCAT_CONFIG also works; -F takes precedence)
  -X prop=val        Set a librdkafka property ("topic." prefix for topic properties); -X dump
  -d <dbg1,...>      librdkafka debug contexts
  -q / -v            Quieter / more verbose
  -E                 Do not exit on non-fatal error
  -V / -h            Version / this help

Producer options:
  -z snappy|gzip|lz4|zstd  Compression
  -k <str>           Fixed key for all messages (per-message -K keys take precedence)
  -H <header=value>  Add a header (repeatable; "-H name" gives a NULL value)
  -l                 Split one input file like stdin
  -T                 Echo sent messages to stdout
  -Z                 Send empty keys and values as NULL
  file1 file2..      Send each file as one message
  Keyed messages use Apache Kafka's murmur2 partitioner by default;
  -X topic.partitioner=consistent_random gives kcat's CRC32 placement.

Consumer options:
  -o <offset>        beginning | end | stored | <N> | -<N> (from end) | s@<ts ms> | e@<ts ms> (stop, excluded)
  -e                 Exit successfully at the end of the partitions
  -f <fmt>           Output format: %s %S %R %k %K %t %p %o %T %h %%, \\n \\r \\t \\xXX
  -J                 JSON envelope, one object per message
  -Z                 Print NULL keys and values as "NULL"
  -u                 Unbuffered output

Metadata (-L): -t <topic> optional.   Query (-Q): -t <topic>:<partition>:<timestamp ms> (repeatable).
"""


class Fatal(Exception):
    """kcat's KC_FATAL: ``% ERROR: <message>`` on stderr and exit code 1."""


class UsageError(Exception):
    """kcat's usage(1, reason): ``Error: <reason>`` and the usage text on stderr, exit code 1."""


@dataclass
class Conf:
    mode: str = ""
    group: str | None = None
    topic: str | None = None
    partition: int = PARTITION_UA
    brokers: str | None = None
    offset: int = OFFSET_INVALID
    start_ts: int = 0
    stop_ts: int = 0
    exit_eof: bool = False
    fmt: bytes | None = None
    json: bool = False
    delim: bytes = b"\n"
    key_delim: bytes | None = None
    fixed_key: bytes | None = None
    headers: list[tuple[str, str | bytes | None]] = field(default_factory=list)
    line_mode: bool = False
    msg_cnt: int = 0
    metadata_timeout_s: float = 5
    null: bool = False
    verbosity: int = 1
    tee: bool = False
    unbuffered: bool = False
    rk: dict[str, Any] = field(default_factory=dict)
    query: list[tuple[str, int, int]] = field(default_factory=list)
    operands: list[str] = field(default_factory=list)
    dump: bool = False
    run: bool = True


def _info(conf: Conf, level: int, text: str) -> None:
    if conf.verbosity >= level:
        sys.stderr.write(text)
        sys.stderr.flush()


_C_INT = re.compile(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_C_DEC = re.compile(r"\s*([+-]?[0-9]+)")


def _strtoll(text: str, base: int = 10) -> tuple[int, int]:
    """C's strtoll: (value, characters consumed); 0 consumed when there is no number."""
    if base == 10:
        m = _C_DEC.match(text)
        return (int(m.group(1)), m.end()) if m else (0, 0)
    m = _C_INT.match(text)
    if not m:
        return 0, 0
    digits = m.group(2)
    value = int(digits, 16) if digits[:2].lower() == "0x" else int(digits, 8) if digits.startswith("0") else int(digits)
    return (-value if m.group(1) == "-" else value), m.end()


def _atoi(text: str) -> int:
    return _strtoll(text)[0]


def _set_property(conf: Conf, name: str, value: str) -> None:
    if name.startswith("topic."):
        name = name[len("topic.") :]
    conf.rk[name] = value


def _read_conf_file(conf: Conf, path: str) -> None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise Fatal(f"Failed to open {path}: {e.strerror}") from None
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise Fatal(f"{path}:{n}: expected property=value\n")
        _set_property(conf, name.strip(), value.strip())


def _add_query(conf: Conf, text: str) -> None:
    what = '-t: expected "topic:partition:offset_or_timestamp"'
    first = text.find(":")
    second = text.find(":", first + 1) if first >= 0 else -1
    if first < 0 or second < 0:
        raise Fatal(what)
    partition, used = _strtoll(text[first + 1 :], 0)
    if used == 0:
        raise Fatal(what)
    ts, used = _strtoll(text[second + 1 :], 0)
    if used == 0:
        raise Fatal(what)
    conf.query.append((text[:first], partition & 0xFFFFFFFF if partition < 0 else partition, ts))


def _add_header(conf: Conf, text: str) -> None:
    if not text or text.startswith("="):
        raise Fatal('Expected -H "name=value.." or -H "name"')
    name, sep, value = text.partition("=")
    conf.headers.append((name, os.fsencode(value) if sep else None))


def parse_args(argv: Sequence[str]) -> Conf:
    conf = Conf()
    try:
        opts, operands = getopt.gnu_getopt(list(argv), OPTSTRING)
    except getopt.GetoptError:
        raise UsageError("unknown argument") from None
    conf.operands = operands
    fmt: bytes | None = None
    key_delim_raw: bytes | None = None
    delim_raw: bytes | None = None
    conf_files = 0
    for opt, arg in opts:
        o = opt[1]
        if o in "PCLQ":
            conf.mode = o
        elif o == "G":
            conf.mode = "G"
            conf.group = arg
            conf.rk["group.id"] = arg
        elif o == "t":
            if conf.mode == "Q":
                _add_query(conf, arg)
            else:
                conf.topic = arg
        elif o == "p":
            conf.partition = _atoi(arg)
        elif o == "b":
            conf.brokers = arg
        elif o == "z":
            conf.rk["compression.codec"] = arg
        elif o == "o":
            _parse_offset(conf, arg)
        elif o == "e":
            conf.exit_eof = True
        elif o == "f":
            fmt = os.fsencode(arg)
        elif o == "J":
            conf.json = True
        elif o == "D":
            delim_raw = os.fsencode(arg)
        elif o == "K":
            key_delim_raw = os.fsencode(arg)
        elif o == "k":
            conf.fixed_key = os.fsencode(arg)
        elif o == "H":
            _add_header(conf, arg)
        elif o == "l":
            conf.line_mode = True
        elif o == "c":
            conf.msg_cnt = _strtoll(arg)[0]
        elif o == "m":
            conf.metadata_timeout_s = _strtoll(arg)[0]
        elif o == "Z":
            conf.null = True
        elif o == "d":
            conf.rk["debug"] = arg
        elif o == "q":
            conf.verbosity = 0
        elif o == "v":
            conf.verbosity += 1
        elif o == "T":
            conf.tee = True
        elif o == "u":
            conf.unbuffered = True
        elif o == "F":
            if arg in ("-", "none"):
                conf_files = -1
                continue
            _read_conf_file(conf, arg)
            conf_files += 1
        elif o == "X":
            if arg in ("list", "help"):
                raise _Exit(0, "loosely kcat passes -X properties to librdkafka; see its CONFIGURATION.md\n")
            if arg == "dump":
                conf.dump = True
                continue
            name, sep, value = arg.partition("=")
            if not sep:
                sys.stderr.write(
                    f"% Expected -X property=value, not {arg}, use -X list to display available properties\n"
                )
                raise _Exit(1)
            _set_property(conf, name, value)
        elif o == "s":
            raise Fatal("-s deserializers are not supported by loosely kcat")
        elif o == "r":
            raise Fatal("This build of kcat lacks Avro/Schema-Registry support")
        elif o == "U":
            raise _Exit(0)
        elif o == "V":
            raise _Exit(0, _version())
        elif o == "h":
            raise _Exit(0, USAGE)
        # -E and -O change nothing visible in kcat 1.7.1
    if conf_files == 0:
        env = os.environ.get("KCAT_CONFIG") or os.environ.get("KAFKACAT_CONFIG")
        if env:
            _read_conf_file(conf, env)
        else:
            for path in ("~/.config/kcat.conf", "~/.config/kafkacat.conf"):
                p = os.path.expanduser(path)
                if os.path.exists(p):
                    _read_conf_file(conf, p)
                    break
    if conf.dump:
        lines = "".join(f"{k} = {v}\n" for k, v in sorted(_client_config(conf).items()))
        raise _Exit(0, f"# Global config\n{lines}\n# Topic config\n\n")
    if conf.brokers is None:
        raise UsageError("-b <broker,..> missing")
    if not conf.mode:
        conf.mode = "C" if os.isatty(0) else "P"
        name = "Consumer" if conf.mode == "C" else "Producer"
        _info(conf, 1, f"% Auto-selecting {name} mode (use -P or -C to override)\n")
    if conf.mode not in "GLQ" and not conf.topic:
        raise UsageError("-t <topic> missing")
    if conf.mode == "Q" and not conf.query:
        raise UsageError("-t <topic>:<partition>:<offset_or_timestamp> missing")
    try:
        if key_delim_raw is not None:
            conf.key_delim = parse_delim(key_delim_raw)
        conf.delim = parse_delim(delim_raw) if delim_raw is not None else b"\n"
    except FormatError as e:
        raise Fatal(str(e)) from None
    if conf.mode in "GC":
        if fmt is None:
            if conf.json:
                fmt = conf.delim
            elif conf.key_delim is not None:
                fmt = b"%k" + conf.key_delim + b"%s" + conf.delim
            else:
                fmt = b"%s" + conf.delim
            # kcat builds the default format with snprintf into a 64-byte buffer
            fmt = fmt[:63]
        conf.fmt = fmt
        try:
            parse_format(fmt)
        except FormatError as e:
            raise Fatal(str(e)) from None
    elif conf.mode == "P" and not conf.delim:
        raise Fatal("Message delimiter -D must not be empty when producing")
    if conf.operands:
        if conf.mode not in "PG":
            raise UsageError("file/topic list only allowed in producer(-P)/kafkaconsumer(-G) mode")
        if conf.line_mode and len(conf.operands) > 1:
            raise Fatal("Only one file allowed for line mode (-l)")
    return conf


def _parse_offset(conf: Conf, arg: str) -> None:
    if arg == "end":
        conf.offset = OFFSET_END
    elif arg == "beginning":
        conf.offset = OFFSET_BEGINNING
    elif arg == "stored":
        conf.offset = OFFSET_STORED
    elif arg.startswith("s@"):
        conf.start_ts = _strtoll(arg[2:])[0]
    elif arg.startswith("e@"):
        conf.stop_ts = _strtoll(arg[2:])[0]
    else:
        n = _strtoll(arg)[0]
        conf.offset = OFFSET_TAIL_BASE + n if n < 0 else n


class _Exit(Exception):
    def __init__(self, code: int, stdout: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.stdout = stdout


def _version() -> str:
    import confluent_kafka  # noqa: PLC0415 - only for the version line

    return (
        f"loosely kcat (kcat 1.7.1 compatible), confluent-kafka {confluent_kafka.version()[0]}, "
        f"librdkafka {confluent_kafka.libversion()[0]}\n"
    )


def _client_config(conf: Conf) -> dict[str, Any]:
    cfg: dict[str, Any] = {"bootstrap.servers": conf.brokers, "partitioner": DEFAULT_PARTITIONER}
    cfg.update(conf.rk)
    if conf.verbosity == 0 and "debug" not in cfg:
        cfg["log_level"] = 0
    return cfg


def _kafka_error_text(e: KafkaException) -> str:
    err = e.args[0] if e.args else None
    if isinstance(err, KafkaError):
        text: str = err.str()
        return text
    return str(e)


def _make(factory: Callable[[dict[str, Any]], Any], cfg: dict[str, Any], what: str) -> Any:
    try:
        return factory(cfg)
    except KafkaException as e:
        text = _kafka_error_text(e)
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
    cfg = _client_config(conf)
    failures = [0]

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            failures[0] += 1
            _info(conf, 1, f"% Delivery failed for message: {err.str()}\n")

    cfg["on_delivery"] = on_delivery
    txn = bool(cfg.get("transactional.id"))
    producer: Producer = _make(Producer, cfg, "producer")
    timeout = conf.metadata_timeout_s
    if txn:
        _info(conf, 1, "% Using transactional producer\n")
        try:
            producer.init_transactions(timeout)
        except KafkaException as e:
            raise Fatal(f"init_transactions(): {_kafka_error_text(e)}") from None
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
                raise Fatal(f"Failed to produce message ({size} bytes): {_kafka_error_text(e)}") from None

    exit_code = 0
    if conf.operands and not conf.line_mode:
        good = 0
        for path in conf.operands:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                _info(conf, 1, f"% Failed to open {path}: {e.strerror}\n")
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
                _info(conf, 1, "% Committing transaction\n")
                producer.commit_transaction(timeout)
                _info(conf, 1, "% Transaction successfully committed\n")
            else:
                _info(conf, 0, "% Aborting transaction due to termination signal\n")
                producer.abort_transaction(timeout)
        except KafkaException as e:
            raise Fatal(f"commit_transaction(): {_kafka_error_text(e)}") from None
    while producer.flush(0.1) > 0:
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
    if conf.json:
        tail = tokens[0].text if tokens and tokens[0].kind == "str" else b""

        def as_json(m: KafkaMessage) -> bytes:
            broker = leaders.get((m.topic(), m.partition()), -1)
            return render_json(m, broker) + tail

        return as_json
    return compile_format(tokens, NULL_STR if conf.null else None)


def _consumer_config(conf: Conf, group: str | None) -> dict[str, Any]:
    cfg = _client_config(conf)
    if "partitioner" not in conf.rk:
        del cfg["partitioner"]  # a producer property; librdkafka warns about it in a consumer
    cfg.setdefault("group.id", group or "loosely-kcat")
    cfg["enable.partition.eof"] = True
    cfg.setdefault("enable.auto.commit", group is not None)
    cfg.setdefault("enable.auto.offset.store", group is not None)
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
            raise Fatal(f"Failed to query metadata for topic {topic}: {_kafka_error_text(e)}") from None
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
                raise Fatal(f"offsets_for_times failed: {_kafka_error_text(e)}") from None
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
    try:
        while conf.run:
            msgs = consumer.consume(batch_size, 0.1)
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
                if tp in stopped:
                    continue
                if group_mode and tp in at_eof:
                    at_eof.discard(tp)
                if stop_ts and m.timestamp()[1] >= stop_ts:
                    stopped.add(tp)
                    if len(stopped) >= stop_threshold:
                        conf.run = False
                    exiting = ": exiting" if not conf.run else ""
                    _info(
                        conf,
                        1,
                        f"% Reached stop timestamp for topic {tp[0]} [{tp[1]}] at offset {m.offset()}{exiting}\n",
                    )
                    if not conf.run:
                        break
                    continue
                add(render(m))
                received += 1
                if received == limit:
                    conf.run = False
                    break
            if output.parts and (conf.unbuffered or len(output.parts) >= 1000 or not msgs):
                output.flush()
    finally:
        output.flush()
    return 0


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
    _info(conf, 1, f"% Reached end of topic {tp[0]} [{tp[1]}] at offset {m.offset()}{exiting}\n")
    return not conf.run


def run_group_consumer(conf: Conf, out: IO[bytes]) -> int:
    if conf.start_ts or conf.stop_ts:
        raise Fatal("-o ..@ timestamps can't be used with -G mode\n")
    group = conf.group
    consumer: Consumer = _make(Consumer, _consumer_config(conf, group), "consumer")
    assignment: set[TP] = set()
    leaders: dict[TP, int] = {}

    def on_assign(c: Consumer, partitions: list[TopicPartition]) -> None:
        text = ", ".join(f"{p.topic} [{p.partition}]" for p in partitions)
        _info(conf, 1, f"% Group {group} rebalanced (memberid {c.memberid()}): assigned: {text}\n")
        if conf.offset != OFFSET_INVALID:
            for p in partitions:
                p.offset = conf.offset
        assignment.clear()
        assignment.update((p.topic, p.partition) for p in partitions)
        c.assign(partitions)

    def on_revoke(c: Consumer, partitions: list[TopicPartition]) -> None:
        text = ", ".join(f"{p.topic} [{p.partition}]" for p in partitions)
        _info(conf, 1, f"% Group {group} rebalanced (memberid {c.memberid()}): revoked: {text}\n")
        assignment.clear()
        c.unassign()

    try:
        consumer.subscribe(conf.operands, on_assign=on_assign, on_revoke=on_revoke)
    except KafkaException as e:
        raise Fatal(f"Failed to subscribe to {len(conf.operands)} topics: {_kafka_error_text(e)}\n") from None
    _info(conf, 1, "% Waiting for group rebalance\n")
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
        consumer.close()


# --- metadata and offsets for times ---------------------------------------------------------------------------


def run_metadata(conf: Conf, out: IO[bytes]) -> int:
    producer: Producer = _make(Producer, _client_config(conf), "producer")
    try:
        md = producer.list_topics(conf.topic, timeout=conf.metadata_timeout_s)
    except KafkaException as e:
        err = e.args[0] if e.args else None
        hint = ""
        if isinstance(err, KafkaError) and err.code() == KafkaError._TRANSPORT:
            hint = " (Are the brokers reachable? Also try increasing the metadata timeout with -m <timeout>?)"
        text = _kafka_error_text(e)
        text = text.removeprefix("Failed to get metadata: ")
        raise Fatal(f"Failed to acquire metadata: {text}{hint}") from None
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
            raise Fatal(f"offsets_for_times failed: {_kafka_error_text(e)}") from None
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


# --- entry point ----------------------------------------------------------------------------------------------

_RUNNERS: dict[str, Callable[[Conf, IO[bytes]], int]] = {
    "P": run_producer,
    "C": run_consumer,
    "G": run_group_consumer,
    "L": run_metadata,
    "Q": run_query,
}


def _fatal(text: str) -> NoReturn:
    sys.stderr.write(f"% ERROR: {text}\n")
    sys.stderr.flush()
    raise SystemExit(1)


def main(argv: Sequence[str], *, prog: str = "loosely kcat", mode: str | None = None) -> int:
    """Run one kcat command line; ``mode`` ("P", "C", "L", "Q") is implied by ``produce``/``consume``/...."""
    args = list(argv)
    if mode is not None:
        args.insert(0, f"-{mode}")
    try:
        conf = parse_args(args)
    except _Exit as e:
        sys.stdout.write(e.stdout)
        return e.code
    except UsageError as e:
        sys.stderr.write(f"Error: {e}\n\n{USAGE}")
        return 1
    except Fatal as e:
        _fatal(str(e))
    def stop(signum: int, frame: object) -> None:
        if not conf.run:
            raise KeyboardInterrupt
        conf.run = False

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    out = sys.stdout.buffer
    try:
        return _RUNNERS[conf.mode](conf, out)
    except Fatal as e:
        _fatal(str(e))
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except KeyboardInterrupt:
        return 0


def _quiet_stdout() -> None:
    # stdout's reader went away (``| head``): stop writing, as kcat does on SIGPIPE, without a traceback at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
