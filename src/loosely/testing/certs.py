"""Development certificates: a local CA, a broker certificate and client certificates, as PEM files.

For tests and for ``loosely security dev-certs DIR``. Keys are EC P-256 in PKCS#8 PEM (what Kafka's PEM keystores
read, and fast to make), written with mode 0600; certificates are valid for a year (the CA ten), and the broker's
names ``localhost``, ``127.0.0.1`` and ``::1`` (plus any ``hosts`` given) so clients that check host names accept it.

Files in ``DIR``:

- ``ca.crt``: the CA certificate, what clients trust (``ssl.ca.location``, ``ssl.truststore.location``) and what
  the broker trusts client certificates by; ``ca.key`` signs new certificates;
- ``broker.pem``: the broker's key and certificate chain in one file (``ssl.keystore.location`` with
  ``ssl.keystore.type=PEM``); ``broker.crt`` and ``broker.key`` hold the same separately;
- ``NAME.pem`` (key and chain), ``NAME.crt`` and ``NAME.key`` for each client ``NAME``, whose subject is
  ``CN=NAME,O=loosely dev`` and whose Kafka principal is therefore ``User:CN=NAME,O=loosely dev``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["DevCerts", "KeyPair", "make_dev_certs", "subject_dn"]

ORGANIZATION: Final = "loosely dev"
BROKER_HOSTS: Final = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True, slots=True)
class KeyPair:
    """One party's files: ``pem`` holds key and chain together, ``crt`` the chain, ``key`` the private key."""

    name: str
    pem: Path
    crt: Path
    key: Path


@dataclass(frozen=True, slots=True)
class DevCerts:
    directory: Path
    ca_crt: Path
    ca_key: Path
    broker: KeyPair
    clients: dict[str, KeyPair]


def subject_dn(name: str) -> str:
    """The RFC 2253 subject DN of a dev certificate made for ``name`` (Kafka's principal is ``User:`` + it).

    >>> subject_dn("alice")
    'CN=alice,O=loosely dev'
    """
    return f"CN={name},O={ORGANIZATION}"


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def _write(path: Path, data: bytes, private: bool) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    pkcs8 = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _issue(
    cn: str,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    now: datetime.datetime,
    days: int,
    *,
    hosts: Iterable[str] = (),
    server: bool = False,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH] * server + [ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _write_pair(directory: Path, name: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate,
                ca_cert: x509.Certificate) -> KeyPair:
    pair = KeyPair(name, directory / f"{name}.pem", directory / f"{name}.crt", directory / f"{name}.key")
    chain = _cert_pem(cert) + _cert_pem(ca_cert)
    _write(pair.pem, _key_pem(key) + chain, private=True)
    _write(pair.crt, chain, private=False)
    _write(pair.key, _key_pem(key), private=True)
    return pair


def make_dev_certs(
    directory: str | os.PathLike[str],
    clients: Iterable[str] = ("client",),
    hosts: Iterable[str] = (),
    *,
    days: int = 365,
) -> DevCerts:
    """Write a new CA, a broker certificate (for localhost, 127.0.0.1, ::1 and ``hosts``) and client certificates.

    >>> import tempfile
    >>> certs = make_dev_certs(tempfile.mkdtemp(), clients=["alice"])
    >>> sorted(p.name for p in certs.directory.iterdir())[:4], oct(certs.clients["alice"].key.stat().st_mode & 0o777)
    (['alice.crt', 'alice.key', 'alice.pem', 'broker.crt'], '0o600')
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("loosely dev CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=10 * days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(d / "ca.crt", _cert_pem(ca_cert), private=False)
    _write(d / "ca.key", _key_pem(ca_key), private=True)
    broker_hosts = list(dict.fromkeys([*BROKER_HOSTS, *hosts]))
    key, cert = _issue("localhost", ca_key, ca_cert, now, days, hosts=broker_hosts, server=True)
    broker = _write_pair(d, "broker", key, cert, ca_cert)
    out: dict[str, KeyPair] = {}
    for name in dict.fromkeys(clients):
        if not name or "/" in name or name in ("ca", "broker"):
            raise ValueError(f"client name {name!r} cannot be a file name here (not empty, no '/', not ca or broker)")
        key, cert = _issue(name, ca_key, ca_cert, now, days)
        out[name] = _write_pair(d, name, key, cert, ca_cert)
    return DevCerts(d, d / "ca.crt", d / "ca.key", broker, out)
