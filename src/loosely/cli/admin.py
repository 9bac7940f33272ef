"""``loosely topics ...`` and ``loosely groups ...``: cluster administration through Kafka's admin APIs.

Works against loosely's broker and any Apache Kafka cluster (``confluent-kafka``'s AdminClient). Output is a
human table by default and one JSON document with ``--json``. Failures print ``loosely: <what>: <why>`` on stderr
and exit 1; bad arguments exit 2 (argparse).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import (  # type: ignore[attr-defined,unused-ignore]  # no __all__ in some versions
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from loosely.cli._args import BadArgument, add_client_options, name_values
from loosely.cli._kafka_errors import kafka_error_text

__all__ = ["add_group_commands", "add_topic_commands"]

TIMEOUT_S_DEFAULT = 10.0  # every admin command gives up after this (--timeout); kcat's metadata wait is 5 s


class AdminError(Exception):
    """A failed admin operation: printed as ``loosely: <message>``, exit code 1."""


def _admin(args: argparse.Namespace) -> AdminClient:
    return AdminClient({"bootstrap.servers": args.bootstrap, "log_level": 0, **args.kafka_config})


def _consumer(args: argparse.Namespace) -> Consumer:
    return Consumer({"bootstrap.servers": args.bootstrap, "group.id": "loosely-admin", "log_level": 0,
                     "enable.auto.commit": False, **args.kafka_config})


def _wait(futures: dict[Any, Any], what: str, timeout_s: float) -> dict[Any, Any]:
    out = {}
    errors = []
    for key, fut in futures.items():
        try:
            out[key] = fut.result(timeout_s)
        except TimeoutError:
            raise
        except KafkaException as e:
            errors.append(f"{what} {_name(key)}: {kafka_error_text(e)}")
        except Exception as e:  # confluent-kafka raises ValueError/TypeError for some refusals
            errors.append(f"{what} {_name(key)}: {e}")
    if errors:
        raise AdminError("; ".join(errors))
    return out


def _name(key: object) -> str:
    if isinstance(key, ConfigResource):
        return str(key.name)
    if isinstance(key, ConsumerGroupTopicPartitions):
        return str(key.group_id)
    return str(key)


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [list(map(str, header))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in cells)


def _emit(args: argparse.Namespace, doc: object, text: str) -> None:
    sys.stdout.write(json.dumps(doc, indent=None, sort_keys=False) + "\n" if args.json else text)


def _configs(items: Sequence[str] | None) -> dict[str, str]:
    try:
        return name_values(list(items or []), "--config")
    except BadArgument as e:
        raise AdminError(str(e)) from None


# --- topics -----------------------------------------------------------------------------------------------------


def _topics_list(args: argparse.Namespace) -> int:
    md = _admin(args).list_topics(timeout=args.timeout)
    names = sorted(n for n in md.topics if args.internal or not n.startswith("__"))
    rows = [(n, len(md.topics[n].partitions)) for n in names]
    _emit(args, [{"topic": n, "partitions": p} for n, p in rows], _table(rows, ["TOPIC", "PARTITIONS"]))
    return 0


def _topics_create(args: argparse.Namespace) -> int:
    admin = _admin(args)
    new = NewTopic(args.topic, num_partitions=args.partitions, replication_factor=args.replication_factor,
                   config=_configs(args.config))
    _wait(admin.create_topics([new], operation_timeout=args.timeout), "create topic", args.timeout)
    _emit(args, {"created": args.topic, "partitions": args.partitions}, f"created topic {args.topic}\n")
    return 0


def _watermarks(args: argparse.Namespace, topic: str, partitions: Sequence[int]) -> dict[int, tuple[int, int]]:
    c = _consumer(args)
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=args.timeout) for p in partitions}
    finally:
        c.close()


def _topic_configs(admin: AdminClient, topic: str, all_configs: bool, timeout_s: float) -> dict[str, str]:
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = _wait(admin.describe_configs([res], request_timeout=timeout_s), "describe configs", timeout_s)[res]
    out = {}
    for name, entry in sorted(entries.items()):
        if all_configs or not entry.is_default:
            out[name] = entry.value
    return out


def _topics_describe(args: argparse.Namespace) -> int:
    admin = _admin(args)
    # all topics: asking for one by name lets the broker auto-create it
    md = admin.list_topics(timeout=args.timeout)
    t = md.topics.get(args.topic)
    if t is None or t.error is not None:
        raise AdminError(f"describe topic {args.topic}: {t.error.str() if t is not None and t.error else 'unknown'}")
    parts = sorted(t.partitions)
    marks = _watermarks(args, args.topic, parts)
    configs = _topic_configs(admin, args.topic, args.all_configs, args.timeout)
    rows = []
    for p in parts:
        pm = t.partitions[p]
        low, high = marks[p]
        rows.append((p, pm.leader, ",".join(map(str, pm.replicas)), ",".join(map(str, pm.isrs)), low, high))
    doc = {
        "topic": args.topic,
        "partitions": [
            {"partition": r[0], "leader": r[1], "replicas": t.partitions[r[0]].replicas,
             "isrs": t.partitions[r[0]].isrs, "log_start_offset": r[4], "log_end_offset": r[5]}
            for r in rows
        ],
        "configs": configs,
    }
    text = f"Topic: {args.topic}  Partitions: {len(parts)}\n"
    text += _table(rows, ["PARTITION", "LEADER", "REPLICAS", "ISR", "LOG-START", "LOG-END"])
    if configs:
        text += "Configs:\n" + "".join(f"  {k}={v}\n" for k, v in configs.items())
    _emit(args, doc, text)
    return 0


def _topics_alter(args: argparse.Namespace) -> int:
    admin = _admin(args)
    updates = _configs(args.set)
    entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in updates.items()]
    entries += [ConfigEntry(k, None, incremental_operation=AlterConfigOpType.DELETE) for k in args.delete or []]
    if not entries:
        raise AdminError("alter: nothing to change (use --set NAME=VALUE or --delete NAME)")
    res = ConfigResource(ConfigResource.Type.TOPIC, args.topic, incremental_configs=entries)
    _wait(admin.incremental_alter_configs([res]), "alter configs of", args.timeout)
    _emit(args, {"altered": args.topic}, f"altered configs of topic {args.topic}\n")
    return 0


def _topics_delete(args: argparse.Namespace) -> int:
    admin = _admin(args)
    _wait(admin.delete_topics(list(args.topics), operation_timeout=args.timeout), "delete topic", args.timeout)
    _emit(args, {"deleted": list(args.topics)}, "".join(f"deleted topic {t}\n" for t in args.topics))
    return 0


def _topics_add_partitions(args: argparse.Namespace) -> int:
    admin = _admin(args)
    _wait(admin.create_partitions([NewPartitions(args.topic, args.total)]), "add partitions to", args.timeout)
    text = f"topic {args.topic} now has {args.total} partitions\n"
    _emit(args, {"topic": args.topic, "partitions": args.total}, text)
    return 0


# --- consumer groups --------------------------------------------------------------------------------------------


def _groups_list(args: argparse.Namespace) -> int:
    admin = _admin(args)
    try:
        result = admin.list_consumer_groups(request_timeout=args.timeout).result(args.timeout)
    except KafkaException as e:
        raise AdminError(f"list groups: {kafka_error_text(e)}") from None
    if result.errors and not result.valid:
        raise AdminError("list groups: " + "; ".join(str(e) for e in result.errors))
    rows = sorted((g.group_id, g.state.name if g.state is not None else "UNKNOWN") for g in result.valid)
    _emit(args, [{"group": g, "state": s} for g, s in rows], _table(rows, ["GROUP", "STATE"]))
    return 0


def _committed(args: argparse.Namespace, admin: AdminClient, group: str) -> list[TopicPartition]:
    """The group's committed offsets, asked for every partition of every topic (see loosely.clients.groups for
    why not AdminClient.list_consumer_group_offsets)."""
    # imported here: it brings the Kafka message codecs (kio, ~0.4 s of CPU), which no other admin command needs;
    # cli/mirror_cmd.py still loads them for every command through loosely.clients.mirror
    from loosely.clients.groups import committed_offsets  # noqa: PLC0415

    md = admin.list_topics(timeout=args.timeout)
    every = [(name, p) for name, t in md.topics.items() if not name.startswith("__") for p in t.partitions]
    found = committed_offsets({"bootstrap.servers": args.bootstrap, **args.kafka_config}, group, every, args.timeout)
    return [TopicPartition(t, p, o) for (t, p), (o, _) in found.items()]


def _groups_describe(args: argparse.Namespace) -> int:
    admin = _admin(args)
    desc = _wait(admin.describe_consumer_groups([args.group], request_timeout=args.timeout), "describe group",
                 args.timeout)
    d = desc[args.group]
    owners: dict[tuple[str, int], str] = {}
    for m in d.members:
        for tp in m.assignment.topic_partitions if m.assignment else []:
            owners[(tp.topic, tp.partition)] = m.client_id or m.member_id
    committed = sorted(_committed(args, admin, args.group), key=lambda tp: (tp.topic, tp.partition))
    rows = []
    for tp in committed:
        _, high = _watermarks(args, tp.topic, [tp.partition])[tp.partition]
        offset = tp.offset if tp.offset >= 0 else None
        lag = high - offset if offset is not None else None
        rows.append((tp.topic, tp.partition, "-" if offset is None else offset, high,
                     "-" if lag is None else lag, owners.get((tp.topic, tp.partition), "-")))
    doc = {
        "group": args.group,
        "state": d.state.name if d.state is not None else "UNKNOWN",
        "members": len(d.members),
        "partitions": [
            {"topic": r[0], "partition": r[1], "committed": r[2] if r[2] != "-" else None, "log_end_offset": r[3],
             "lag": r[4] if r[4] != "-" else None, "owner": r[5] if r[5] != "-" else None}
            for r in rows
        ],
    }
    text = f"Group: {args.group}  State: {doc['state']}  Members: {len(d.members)}\n"
    text += _table(rows, ["TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG", "OWNER"])
    _emit(args, doc, text)
    return 0


def _groups_reset(args: argparse.Namespace) -> int:
    admin = _admin(args)
    md = admin.list_topics(timeout=args.timeout)
    t = md.topics.get(args.topic)
    if t is None or t.error is not None or not t.partitions:
        raise AdminError(f"reset offsets: unknown topic {args.topic}")
    parts = sorted(t.partitions) if args.partition is None else [args.partition]
    c = _consumer(args)
    try:
        if args.to_earliest or args.to_latest:
            marks = {p: c.get_watermark_offsets(TopicPartition(args.topic, p), timeout=args.timeout) for p in parts}
            targets = {p: marks[p][0 if args.to_earliest else 1] for p in parts}
        elif args.to_timestamp is not None:
            found = c.offsets_for_times([TopicPartition(args.topic, p, args.to_timestamp) for p in parts],
                                        timeout=args.timeout)
            targets = {}
            for tp in found:
                if tp.offset < 0:  # no record at or after the time: the end of the partition
                    tp.offset = c.get_watermark_offsets(TopicPartition(args.topic, tp.partition),
                                                        timeout=args.timeout)[1]
                targets[tp.partition] = tp.offset
        else:
            targets = dict.fromkeys(parts, args.to_offset)
    finally:
        c.close()
    req = ConsumerGroupTopicPartitions(args.group, [TopicPartition(args.topic, p, o) for p, o in targets.items()])
    _wait(admin.alter_consumer_group_offsets([req], request_timeout=args.timeout), "reset offsets of group",
          args.timeout)
    rows = sorted(targets.items())
    _emit(args, {"group": args.group, "topic": args.topic, "offsets": {str(p): o for p, o in rows}},
          _table([(args.topic, p, o) for p, o in rows], ["TOPIC", "PARTITION", "NEW-OFFSET"]))
    return 0


def _groups_delete(args: argparse.Namespace) -> int:
    admin = _admin(args)
    _wait(admin.delete_consumer_groups(list(args.groups), request_timeout=args.timeout), "delete group", args.timeout)
    _emit(args, {"deleted": list(args.groups)}, "".join(f"deleted group {g}\n" for g in args.groups))
    return 0


# --- wiring -----------------------------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-b", "--bootstrap", required=True, metavar="HOST:PORT,...", help="bootstrap brokers")
    p.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    p.add_argument("--timeout", type=_seconds, default=TIMEOUT_S_DEFAULT, metavar="SECONDS",
                   help=f"give up when the cluster has not answered within this (default {TIMEOUT_S_DEFAULT:g})")
    add_client_options(p)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 3600 seconds")
    return value


def _run(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def guarded(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except AdminError as e:
            print(f"loosely: {e}", file=sys.stderr)
            return 1
        except KafkaException as e:
            print(f"loosely: {kafka_error_text(e)}", file=sys.stderr)
            return 1
        except TimeoutError:  # a future's result(timeout) ran out (concurrent.futures.TimeoutError)
            print(f"loosely: no answer from {args.bootstrap} within {args.timeout:g} s (--timeout)", file=sys.stderr)
            return 1

    return guarded


def add_topic_commands(sub: Any) -> None:
    t = sub.add_parser("topics", help="list, create, describe, alter, delete topics and add partitions")
    ts = t.add_subparsers(dest="action", required=True)
    p = ts.add_parser("list", help="topic names and partition counts")
    _common(p)
    p.add_argument("--internal", action="store_true", help="include internal topics (__consumer_offsets, ...)")
    p.set_defaults(func=_run(_topics_list))
    p = ts.add_parser("create", help="create a topic")
    _common(p)
    p.add_argument("topic")
    p.add_argument("-p", "--partitions", type=int, default=1)
    p.add_argument("-r", "--replication-factor", type=int, default=1)
    p.add_argument("-c", "--config", action="append", metavar="NAME=VALUE", help="topic config (repeatable)")
    p.set_defaults(func=_run(_topics_create))
    p = ts.add_parser("describe", help="partitions, leaders, offsets and non-default configs")
    _common(p)
    p.add_argument("topic")
    p.add_argument("--all-configs", action="store_true", help="show default configs too")
    p.set_defaults(func=_run(_topics_describe))
    p = ts.add_parser("alter", help="set or delete topic configs")
    _common(p)
    p.add_argument("topic")
    p.add_argument("--set", action="append", metavar="NAME=VALUE")
    p.add_argument("--delete", action="append", metavar="NAME")
    p.set_defaults(func=_run(_topics_alter))
    p = ts.add_parser("delete", help="delete topics")
    _common(p)
    p.add_argument("topics", nargs="+")
    p.set_defaults(func=_run(_topics_delete))
    p = ts.add_parser("add-partitions", help="grow a topic to TOTAL partitions")
    _common(p)
    p.add_argument("topic")
    p.add_argument("total", type=int)
    p.set_defaults(func=_run(_topics_add_partitions))


def add_group_commands(sub: Any) -> None:
    g = sub.add_parser("groups", help="list, describe (with lag), reset offsets of and delete consumer groups")
    gs = g.add_subparsers(dest="action", required=True)
    p = gs.add_parser("list", help="groups and their states")
    _common(p)
    p.set_defaults(func=_run(_groups_list))
    p = gs.add_parser("describe", help="committed offsets, log end offsets and lag per partition")
    _common(p)
    p.add_argument("group")
    p.set_defaults(func=_run(_groups_describe))
    p = gs.add_parser("reset", help="move a group's committed offsets (the group must have no active members)")
    _common(p)
    p.add_argument("group")
    p.add_argument("-t", "--topic", required=True)
    p.add_argument("-p", "--partition", type=int, help="only this partition (default: all)")
    to = p.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true")
    to.add_argument("--to-latest", action="store_true")
    to.add_argument("--to-timestamp", type=int, metavar="MS", help="first offset at or after this time")
    to.add_argument("--to-offset", type=int, metavar="N")
    p.set_defaults(func=_run(_groups_reset))
    p = gs.add_parser("delete", help="delete groups (they must have no active members)")
    _common(p)
    p.add_argument("groups", nargs="+")
    p.set_defaults(func=_run(_groups_delete))

