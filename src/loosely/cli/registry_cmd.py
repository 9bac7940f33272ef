"""``loosely schema-registry``: a Confluent-compatible schema registry against any Kafka cluster.

Example::

    loosely schema-registry -b 127.0.0.1:9092 --listen 127.0.0.1:8081

``loosely broker --schema-registry-listen 127.0.0.1:8081`` runs the same registry inside the broker process,
against that broker (:func:`start_beside_broker`). Either way the registry is a Kafka client of the broker and
keeps everything in the ``_schemas`` topic; SIGINT/SIGTERM stop it. Several registries over one topic (any mix of
the two commands) elect a leader in the ``schema-registry`` group; the others forward writes to its
``--advertise`` url.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

from loosely.cli._args import add_client_options, password_check
from loosely.cli._heap import freeze_startup

__all__ = ["add_registry_command", "registry_options", "start_beside_broker"]


def registry_options(p: argparse.ArgumentParser, *, prefix: str = "") -> None:
    """The registry's settings, shared by ``schema-registry`` and ``broker`` (with ``--schema-registry-`` before)."""
    p.add_argument(f"--{prefix}topic", default="_schemas", metavar="TOPIC",
                   help="compacted topic holding the schemas (default _schemas, as Confluent's)")
    p.add_argument(f"--{prefix}compatibility", default="BACKWARD", metavar="LEVEL",
                   help="compatibility level until one is set with PUT /config (default BACKWARD)")
    p.add_argument(f"--{prefix}init-timeout-ms", type=int, default=60_000, metavar="MS",
                   help="give up when the cluster cannot be read within this (default 60000, as Confluent's "
                        "kafkastore.init.timeout.ms)")
    p.add_argument(f"--{prefix}users-file", metavar="FILE",
                   help="require HTTP Basic auth from the SCRAM users in FILE (a broker's "
                        "<data-dir>/scram-credentials.json; re-read when it changes)")
    p.add_argument(f"--{prefix}advertise", metavar="URL",
                   help="url the other registries over this topic forward writes to (default: the listen address; "
                        "as Confluent's host.name and listeners)")
    p.add_argument(f"--{prefix}leader-eligibility", action=argparse.BooleanOptionalAction, default=True,
                   help="whether this registry may be elected leader (default yes; Confluent's "
                        "leader.eligibility)")
    p.add_argument(f"--{prefix}session-timeout-ms", type=int, default=10_000, metavar="MS",
                   help="a leader silent this long is replaced (default 10000; the broker's "
                        "group.min.session.timeout.ms, 6000 by default, is the least it takes)")
    p.add_argument(f"--{prefix}tls-keystore", metavar="PEM",
                   help="serve HTTPS with the private key and certificate chain in this PEM file (re-read when it "
                        "changes), e.g. broker.pem from `loosely security dev-certs`")


def _security(users_file: str | None, keystore: str | None) -> dict[str, Any]:
    """The registry's ``authenticate`` and ``tls`` arguments for these options (ValueError: one line)."""
    out: dict[str, Any] = {}
    if users_file is not None:
        out["authenticate"] = password_check(users_file)
    if keystore is not None:
        from loosely.tls.context import ServerContexts  # noqa: PLC0415 - only when asked for
        from loosely.tls.settings import TlsSettings  # noqa: PLC0415

        out["tls"] = ServerContexts("schema-registry", TlsSettings(keystore_location=keystore)).current
    return out


def _start(bootstrap: str, listen: str, *, topic: str, compatibility: str, client_config: dict[str, str],
           init_timeout_ms: int, users_file: str | None = None, keystore: str | None = None,
           advertise: str | None = None, leader_eligible: bool = True, session_timeout_ms: int = 10_000) -> Any:
    from loosely.broker.config import parse_listen  # noqa: PLC0415 - keeps `loosely -h` free of broker imports
    from loosely.registry import SchemaRegistry  # noqa: PLC0415 - avro and jsonschema load only when asked for

    host, port = parse_listen(listen)
    # who leads is worth a line on stderr even without -v: it says where writes go
    logging.getLogger("loosely.registry._election").setLevel(logging.INFO)
    security = _security(users_file, keystore)
    return SchemaRegistry(bootstrap, host=host, port=port, topic=topic, client_config=client_config,
                          default_compatibility=compatibility.upper(), init_timeout_ms=init_timeout_ms,
                          advertise=advertise, leader_eligible=leader_eligible, session_timeout_ms=session_timeout_ms,
                          heartbeat_interval_ms=max(1, min(1_000, session_timeout_ms // 3)), **security).start()


def start_beside_broker(args: argparse.Namespace, bootstrap: str) -> Any:
    """Start the registry ``loosely broker --schema-registry-listen`` asked for (blocking: call it in a thread)."""
    try:
        registry = _start(bootstrap, args.schema_registry_listen, topic=args.schema_registry_topic,
                          compatibility=args.schema_registry_compatibility,
                          client_config=args.services_kafka_config,
                          init_timeout_ms=args.schema_registry_init_timeout_ms,
                          users_file=args.schema_registry_users_file, keystore=args.schema_registry_tls_keystore,
                          advertise=args.schema_registry_advertise,
                          leader_eligible=args.schema_registry_leader_eligibility,
                          session_timeout_ms=args.schema_registry_session_timeout_ms)
    except Exception as e:  # a topic with several partitions, a bad level: one line from the broker command
        raise OSError(f"schema registry: {e}") from None
    print(f"schema registry on {registry.url}", flush=True)
    return registry


def _registry(args: argparse.Namespace) -> int:
    client_config = args.kafka_config  # --client-config and -X, resolved (Java or librdkafka names) by main
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before the URL is printed: a client may signal at once
        signal.signal(sig, lambda *_: stop.set())
    try:
        registry = _start(args.bootstrap_servers, args.listen, topic=args.topic, compatibility=args.compatibility,
                          client_config=client_config, init_timeout_ms=args.init_timeout_ms,
                          users_file=args.users_file, keystore=args.tls_keystore, advertise=args.advertise,
                          leader_eligible=args.leader_eligibility, session_timeout_ms=args.session_timeout_ms)
    except Exception as e:  # unreachable cluster, port taken, a topic with several partitions: one line
        print(f"loosely schema-registry: {e}", file=sys.stderr)
        return 1
    print(f"schema registry on {registry.url} (schemas in {args.topic} on {args.bootstrap_servers})", flush=True)
    freeze_startup()
    stop.wait()
    registry.stop()
    return 0


def add_registry_command(sub: Any) -> None:
    p = sub.add_parser("schema-registry", help="run a Confluent-compatible schema registry (stored in _schemas)")
    p.add_argument("-b", "--bootstrap-servers", required=True, metavar="HOST:PORT", help="the Kafka cluster")
    p.add_argument("--listen", default="127.0.0.1:8081", help="HOST:PORT to serve HTTP on (default 127.0.0.1:8081)")
    registry_options(p)
    add_client_options(p)
    p.set_defaults(func=_registry)


def add_broker_options(b: argparse.ArgumentParser) -> None:
    b.add_argument("--schema-registry-listen", metavar="HOST:PORT",
                   help="also serve a schema registry here, stored in this broker (e.g. 127.0.0.1:8081)")
    registry_options(b, prefix="schema-registry-")
