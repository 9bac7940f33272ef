"""kcat's options: the command line parsed into a :class:`Conf`, and the librdkafka configuration it implies.

Both paths (:mod:`._native`, :mod:`._rdkafka`) read a ``Conf`` and import from here; nothing here imports them, so
the package has no cycle (an import-linter contract in pyproject.toml keeps it so).

Documented differences: with no ``-p``, keyed records go to the partition Apache Kafka's Java producer picks
(murmur2, librdkafka's ``murmur2_random``) instead of librdkafka's CRC32 ``consistent_random``; pass
``-X topic.partitioner=consistent_random`` for kcat's placement. ``-X dump`` shows secrets (``sasl.password``,
``ssl.key.password``, ...) as ``[redacted]``. ``--client-config FILE`` (loosely's addition) reads a Java client's
properties, translated to librdkafka's names (:mod:`loosely.clients.client_config`).
"""

from __future__ import annotations

import getopt
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from loosely.clients.client_config import ClientConfigError, client_config, redacted
from loosely.clients.kcat_format import (
    FormatStringError,
    parse_delim,
    parse_format,
)
from loosely.clients.partitioner import DEFAULT_PARTITIONER

__all__ = [
    "INPUT_CHUNK_BYTES",
    "OFFSET_BEGINNING",
    "OFFSET_INVALID",
    "OFFSET_STORED",
    "OFFSET_TAIL_BASE",
    "PARTITION_UA",
    "USAGE",
    "Conf",
    "Exit",
    "Fatal",
    "FormatFailure",
    "UsageError",
    "info",
    "librdkafka_config",
    "parse_args",
]

OPTSTRING = "PCG:LQt:p:b:z:o:eED:K:k:H:Od:qvF:X:c:Tuf:ZlVhs:r:Jm:U"
# loosely's one addition to kcat's options: a Java client's properties file (loosely.clients.client_config)
LONG_OPTIONS = ["client-config="]
# librdkafka's logical offsets (confluent_kafka.OFFSET_* have the same values)
OFFSET_BEGINNING = -2
OFFSET_END = -1
OFFSET_STORED = -1000
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
  --client-config <file>  A Kafka client properties file (Java names such as sasl.jaas.config translated)
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
  -s key=<serdes>|value=<serdes>|<serdes>  Deserialize the key, the value, or both:
                     a pack format of b B h H i I q Q (8..64-bit integers, upper case unsigned), c (a byte),
                     s (the rest), $ (end of input), ' ' (a space), e.g. -s key=i -s value='hB s'; or
                     avro: Confluent-framed Avro printed as JSON with the schema registry (-r);
                     loosely adds json (JSON Schema) and protobuf, e.g. -s value=protobuf
  -r <url>           Schema registry URL (http(s)://[user:password@]host:port), for -s
  -Z                 Print NULL keys and values as "NULL"
  -u                 Unbuffered output

Metadata (-L): -t <topic> optional.   Query (-Q): -t <topic>:<partition>:<timestamp ms> (repeatable).
"""


class Fatal(Exception):
    """kcat's KC_FATAL: ``% ERROR: <message>`` on stderr and exit code 1."""


class FormatFailure(Exception):
    """A ``-s`` field that could not be decoded, kcat exiting on it (no ``-E``): ``partial`` is what kcat had
    printed of the message, ``line`` its error (without ``: terminating``)."""

    def __init__(self, partial: bytes, line: str) -> None:
        super().__init__(line)
        self.partial = partial
        self.line = line


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
    exit_on_error: bool = True  # -E turns it off: kcat's conf.exitonerror
    serdes: dict[str, str] = field(default_factory=dict)  # -s: "key"/"value" -> AVRO, JSON or PROTOBUF
    pack: dict[str, str] = field(default_factory=dict)  # -s: "key"/"value" -> a pack format ("i", "hB s", ...)
    registry_url: str | None = None  # -r, or -X schema.registry.url


def info(conf: Conf, level: int, text: str) -> None:
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
    if name.startswith(_REGISTRY_PREFIX):  # kcat hands these to libserdes, not librdkafka
        if name != _REGISTRY_PREFIX + "url":
            raise Fatal(f"Unknown configuration property {name[len(_REGISTRY_PREFIX):]}")
        _set_registry(conf, value)
        return
    if name.startswith("topic."):
        name = name[len("topic.") :]
    conf.rk[name] = value


_REGISTRY_PREFIX: Final = "schema.registry."
# -s TYPE: kcat's avro, and the JSON Schema and Protobuf framing of confluent-kafka's serializers (loosely's)
_SERDES_TYPES: Final = {"avro": "AVRO", "json": "JSON", "protobuf": "PROTOBUF"}
_PACK_TOKENS: Final = " <>bBhHiIqQcs$"


def _set_registry(conf: Conf, url: str) -> None:
    url = url.rstrip("/")  # kcat trims trailing slashes (a registry answers 404 to "//schemas/...")
    if not url:
        raise Fatal("schema.registry.url is empty")
    conf.registry_url = url


def _add_serdes(conf: Conf, arg: str) -> None:
    """kcat's ``-s key=T``, ``-s value=T`` or ``-s T`` (both)."""
    name, sep, kind = arg.partition("=")
    fields = [name] if sep and name in ("key", "value") else ["key", "value"]
    if not (sep and name in ("key", "value")):
        kind = arg
    for f in fields:
        if kind not in _SERDES_TYPES:
            if not kind:
                raise Fatal(f"{f} pack-format must not be empty")
            bad = next((c for c in kind if c not in _PACK_TOKENS), None)
            if bad is not None:
                raise Fatal(f"Invalid token '{bad}' in {f} pack-format, see -s usage.")
            conf.pack[f] = kind
            conf.serdes.pop(f, None)
        else:
            conf.serdes[f] = _SERDES_TYPES[kind]
            conf.pack.pop(f, None)


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


def _read_client_config(conf: Conf, path: str) -> None:
    """``--client-config FILE``: like -F, but a Java client's properties, its names translated to librdkafka's."""
    try:
        settings = client_config([path])
    except ClientConfigError as e:
        raise Fatal(str(e)) from None
    for name, value in settings.items():
        _set_property(conf, name, value)


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
        opts, operands = getopt.gnu_getopt(list(argv), OPTSTRING, LONG_OPTIONS)
    except getopt.GetoptError:
        raise UsageError("unknown argument") from None
    conf.operands = operands
    fmt: bytes | None = None
    key_delim_raw: bytes | None = None
    delim_raw: bytes | None = None
    conf_files = 0
    for opt, arg in opts:
        if opt == "--client-config":
            _read_client_config(conf, arg)
            conf_files += 1
            continue
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
        elif o == "E":
            conf.exit_on_error = False
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
                raise Exit(0, "loosely kcat passes -X properties to librdkafka; see its CONFIGURATION.md\n")
            if arg == "dump":
                conf.dump = True
                continue
            name, sep, value = arg.partition("=")
            if not sep:
                sys.stderr.write(
                    f"% Expected -X property=value, not {arg}, use -X list to display available properties\n"
                )
                raise Exit(1)
            _set_property(conf, name, value)
        elif o == "s":
            _add_serdes(conf, arg)
        elif o == "r":
            if not arg:
                raise Fatal("-r url must not be empty")
            _set_registry(conf, arg)
        elif o == "U":
            raise Exit(0)
        elif o == "V":
            raise Exit(0, _version())
        elif o == "h":
            raise Exit(0, USAGE)
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
        # unlike kcat, secrets (sasl.password, ssl.key.password, ...) are shown as [redacted]: a dump is pasted
        # into tickets and CI logs
        lines = "".join(f"{k} = {v}\n" for k, v in sorted(redacted(librdkafka_config(conf)).items()))
        raise Exit(0, f"# Global config\n{lines}\n# Topic config\n\n")
    if conf.brokers is None:
        raise UsageError("-b <broker,..> missing")
    if not conf.mode:
        conf.mode = "C" if os.isatty(0) else "P"
        name = "Consumer" if conf.mode == "C" else "Producer"
        info(conf, 1, f"% Auto-selecting {name} mode (use -P or -C to override)\n")
    if conf.mode not in "GLQ" and not conf.topic:
        raise UsageError("-t <topic> missing")
    if conf.mode == "Q" and not conf.query:
        raise UsageError("-t <topic>:<partition>:<offset_or_timestamp> missing")
    if conf.serdes or conf.pack:
        if conf.mode not in "GC":
            raise Fatal("-s serdes only available in the consumer")
        if conf.serdes and conf.registry_url is None:
            raise Fatal(f"-s {next(iter(conf.serdes.values())).lower()} requires -r <sr_url>")
        if "key" in conf.serdes and key_delim_raw is None:
            key_delim_raw = b""  # kcat: a decoded key is printed, with an empty delimiter unless -K gives one
    try:
        if key_delim_raw is not None:
            conf.key_delim = parse_delim(key_delim_raw)
        conf.delim = parse_delim(delim_raw) if delim_raw is not None else b"\n"
    except FormatStringError as e:
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
        except FormatStringError as e:
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


class Exit(Exception):
    """An early, successful or failed, end of the command line (-h, -V, -X dump, ...): ``stdout`` and ``code``."""

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


def librdkafka_config(conf: Conf) -> dict[str, Any]:
    cfg: dict[str, Any] = {"bootstrap.servers": conf.brokers, "partitioner": DEFAULT_PARTITIONER}
    cfg.update(conf.rk)
    if conf.verbosity == 0 and "debug" not in cfg:
        cfg["log_level"] = 0
    return cfg
