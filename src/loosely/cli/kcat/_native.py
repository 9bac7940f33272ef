"""kcat's native path: plain produce and consume over :mod:`loosely.clients.fastpath`, when it serves the command line
exactly.

The native path speaks plain TCP: any other property (security.protocol, sasl.*, ssl.* above all, from -X, -F or
--client-config) sends the command to librdkafka (:mod:`._rdkafka`), which gives the same output and exit codes.
Each ``try_*`` returns None, having printed nothing, when it does not apply.
"""

from __future__ import annotations

import os
from typing import IO

from loosely.cli.kcat._options import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    OFFSET_STORED,
    OFFSET_TAIL_BASE,
    Conf,
    Fatal,
    info,
)
from loosely.clients import fastpath
from loosely.clients.kcat_format import NULL_STR, parse_format
from loosely.clients.partitioner import DEFAULT_PARTITIONER

__all__ = ["try_consumer", "try_producer"]


_FAST_PRODUCER_PROPERTIES = frozenset({"compression.codec", "partitioner"})


def _fast_enabled() -> bool:
    return os.environ.get("LOOSELY_KCAT_FASTPATH", "1") != "0"


def try_producer(conf: Conf) -> int | None:
    """The native produce path (loosely.clients.fastpath) when it serves this command line exactly, else None."""
    if not _fast_enabled() or conf.operands or conf.tee or not set(conf.rk) <= _FAST_PRODUCER_PROPERTIES:
        return None
    codec = str(conf.rk.get("compression.codec", "none"))
    if codec not in fastpath.CODECS:
        return None
    assert conf.topic is not None and conf.brokers is not None
    job = fastpath.ProduceJob(
        bootstrap=conf.brokers, topic=conf.topic, delim=conf.delim, key_delim=conf.key_delim,
        fixed_key=conf.fixed_key, null_empty=conf.null,
        headers=[(n, v.encode() if isinstance(v, str) else v) for n, v in conf.headers],
        partition=conf.partition, partitioner=str(conf.rk.get("partitioner", DEFAULT_PARTITIONER)), codec=codec,
        limit=max(conf.msg_cnt, 0), timeout_s=conf.metadata_timeout_s or 5,
    )
    failures = [0]

    def on_failure(text: str, messages: int) -> None:
        failures[0] += messages
        for _ in range(min(messages, 1)):
            info(conf, 1, f"% Delivery failed for message: {text}\n")

    try:
        fastpath.produce(job, on_failure)
    except fastpath.Unsupported:
        return None
    except (fastpath.WireError, OSError) as e:
        raise Fatal(f"Failed to produce: {e}") from None
    return 1 if failures[0] else 0


def try_consumer(conf: Conf, out: IO[bytes]) -> int | None:
    """The native consume path when it serves this command line exactly, else None (nothing printed yet)."""
    if (not _fast_enabled() or conf.json or conf.start_ts or conf.stop_ts or conf.unbuffered or conf.rk
            or conf.offset == OFFSET_STORED or conf.serdes or conf.pack):
        return None
    assert conf.topic is not None and conf.brokers is not None and conf.fmt is not None
    tail = OFFSET_TAIL_BASE - conf.offset if conf.offset < OFFSET_TAIL_BASE else 0
    offset = OFFSET_BEGINNING if conf.offset == OFFSET_INVALID else conf.offset
    job = fastpath.ConsumeJob(
        bootstrap=conf.brokers, topic=conf.topic, partition=conf.partition, offset=offset, tail=tail,
        exit_eof=conf.exit_eof, limit=max(conf.msg_cnt, 0),
        tokens=[(fastpath.TOKEN_KINDS[t.kind], t.text) for t in parse_format(conf.fmt)],
        null_str=NULL_STR if conf.null else None, timeout_s=conf.metadata_timeout_s or 5,
    )
    try:
        fastpath.consume(job, out, lambda level, text: info(conf, level, text), lambda: conf.run)
    except fastpath.Unsupported:
        return None
    except (fastpath.WireError, OSError, ValueError) as e:
        raise Fatal(str(e)) from None
    return 0
