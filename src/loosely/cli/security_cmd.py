"""``loosely security dev-certs DIR``: a local CA, a broker certificate and client certificates for development."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_security_command"]


def add_security_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("security", help="security helpers: development certificates")
    ssub = p.add_subparsers(dest="security_command", required=True)
    d = ssub.add_parser(
        "dev-certs",
        help="make a local CA, a broker certificate and client certificates (PEM) for development and tests",
        description="Write ca.crt/ca.key, broker.pem (key and chain; also .crt/.key) and NAME.pem/.crt/.key per "
        "client into DIR (keys mode 0600), and print the broker and client settings that use them. "
        "Not for production: the CA key sits beside the certificates.",
    )
    d.add_argument("directory", metavar="DIR", help="where to write the files (created if missing)")
    d.add_argument(
        "--client",
        action="append",
        metavar="NAME",
        help="a client certificate for NAME, principal User:CN=NAME,O=loosely dev (repeatable; default: client)",
    )
    d.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME",
        help="another host name or IP address for the broker certificate (it always has localhost, 127.0.0.1, ::1)",
    )
    d.add_argument("--days", type=int, default=365, help="validity of the broker and client certificates")
    d.set_defaults(func=_dev_certs)


def _dev_certs(args: argparse.Namespace) -> int:
    from loosely.testing.certs import make_dev_certs, subject_dn  # noqa: PLC0415 - cryptography only when asked

    try:
        certs = make_dev_certs(args.directory, clients=args.client or ["client"], hosts=args.host, days=args.days)
    except (OSError, ValueError) as e:
        print(f"loosely security dev-certs: {e}", file=sys.stderr)
        return 2
    print(f"wrote to {certs.directory}:")
    print(f"  {certs.ca_crt}  CA certificate: clients and the broker trust it")
    print(f"  {certs.ca_key}  CA key (0600): signs certificates; keep it to yourself")
    print(f"  {certs.broker.pem}  broker key and certificate chain (0600); also {certs.broker.crt.name}, "
          f"{certs.broker.key.name}")
    for name, pair in certs.clients.items():
        print(f"  {pair.pem}  client {name}: key and chain (0600), principal User:{subject_dn(name)}; "
              f"also {pair.crt.name}, {pair.key.name}")
    first = next(iter(certs.clients.values()))
    print(
        f"""
broker (TLS on 9093, client certificates required; PLAINTEXT stays on loopback 9092):
  loosely broker --data-dir DATA \\
    --config listeners=PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9093 \\
    --config ssl.keystore.type=PEM --config ssl.keystore.location={certs.broker.pem} \\
    --config ssl.truststore.type=PEM --config ssl.truststore.location={certs.ca_crt} \\
    --config ssl.client.auth=required

clients (librdkafka, kcat, confluent-kafka):
  -X security.protocol=ssl -X ssl.ca.location={certs.ca_crt} \\
  -X ssl.certificate.location={first.crt} -X ssl.key.location={first.key}

Java clients (client.properties):
  security.protocol=SSL
  ssl.truststore.type=PEM
  ssl.truststore.location={certs.ca_crt}
  ssl.keystore.type=PEM
  ssl.keystore.location={first.pem}"""
    )
    return 0
