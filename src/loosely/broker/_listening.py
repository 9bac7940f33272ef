"""Where the broker listens, what it tells clients to connect to, and whether that is safe.

Listeners are configured as Kafka's are: ``listeners=NAME://host:port,...`` names each socket, ``advertised.listeners``
says what Metadata tells clients who arrived on that listener (default: the listener's own address), and
``listener.security.protocol.map`` gives each name its security protocol (by default a listener named after a
protocol speaks it). ``--listen``/``--advertise`` are shorthand for one PLAINTEXT listener.

Safety: a broker on loopback is reachable from this machine only. Anything else (a LAN address, or the wildcards
``0.0.0.0`` and ``::``, which mean every interface) is reachable by anyone who reaches the port, so

- a non-loopback listener needs an explicit advertised address (a wildcard is never advertised: Kafka refuses
  ``advertised.listeners`` with ``0.0.0.0`` too, clients cannot connect to it), and
- a non-loopback listener must authenticate its clients (SASL_PLAINTEXT, SASL_SSL, or SSL with
  ``ssl.client.auth=required``) unless ``loosely.allow.unauthenticated=true`` (``--allow-unauthenticated``) says the
  operator means it; the start-up then logs a WARNING saying who can reach it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from loosely.tls.settings import TlsSettings, tls_settings

__all__ = [
    "DEFAULT_PROTOCOL_MAP",
    "SECURITY_PROTOCOLS",
    "ListenerSpec",
    "check_listen",
    "check_listener",
    "is_loopback",
    "is_wildcard",
    "listeners_from_settings",
    "parse_endpoints",
    "parse_protocol_map",
]

SECURITY_PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# Kafka's default listener.security.protocol.map
DEFAULT_PROTOCOL_MAP: Final = "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"
LISTENER_SETTINGS: Final = (
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "controller.listener.names",
)
_ENDPOINT: Final = re.compile(r"^([A-Za-z0-9_]+)://(\[[^\]]*\]|[^:\[\]]*):(\d+)$")


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    """One listening socket: Kafka's listener name, where it binds, what it advertises, how clients authenticate."""

    name: str
    host: str
    port: int  # 0 picks a free port; Broker.listener_port(name) reports it
    security_protocol: str = "PLAINTEXT"
    advertised_host: str | None = None  # None: the bound host
    advertised_port: int | None = None  # None or 0: the bound port
    tls: TlsSettings | None = None  # SSL and SASL_SSL listeners

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def authenticates(self) -> bool:
        """Every client proves who it is: SASL, or a client certificate the broker requires."""
        return self.uses_sasl or (self.tls is not None and self.tls.client_auth == "required")


def parse_endpoints(value: str, setting: str = "listeners") -> list[tuple[str, str, int]]:
    """``NAME://host:port,...`` to ``(NAME, host, port)``; ``[::1]`` for IPv6, an empty host means every interface.

    >>> parse_endpoints("PLAINTEXT://127.0.0.1:9092, SSL://[::1]:9093,INTERNAL://:0")
    [('PLAINTEXT', '127.0.0.1', 9092), ('SSL', '::1', 9093), ('INTERNAL', '0.0.0.0', 0)]
    """
    out: list[tuple[str, str, int]] = []
    for item in filter(None, (i.strip() for i in value.split(","))):
        m = _ENDPOINT.match(item)
        if m is None:
            raise ValueError(f"{setting}: expected NAME://HOST:PORT, got {item!r}")
        name, host, port = m.group(1).upper(), m.group(2).strip("[]"), int(m.group(3))
        if port > 65535:
            raise ValueError(f"{setting}: port {port} is out of range in {item!r}")
        if any(name == n for n, _, _ in out):
            raise ValueError(f"{setting}: listener name {name} appears twice")
        out.append((name, host or "0.0.0.0", port))  # Kafka binds every interface for an empty host
    if not out:
        raise ValueError(f"{setting} is empty")
    return out


def parse_protocol_map(value: str) -> dict[str, str]:
    """``listener.security.protocol.map``: ``NAME:PROTOCOL,...``.

    >>> parse_protocol_map("INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL")
    {'INTERNAL': 'PLAINTEXT', 'EXTERNAL': 'SASL_SSL'}
    """
    out: dict[str, str] = {}
    for item in filter(None, (i.strip() for i in value.split(","))):
        name, sep, protocol = item.partition(":")
        protocol = protocol.strip().upper()
        if not sep or protocol not in SECURITY_PROTOCOLS:
            raise ValueError(
                f"listener.security.protocol.map: expected NAME:PROTOCOL with PROTOCOL one of "
                f"{', '.join(SECURITY_PROTOCOLS)}, got {item!r}"
            )
        out[name.strip().upper()] = protocol
    return out


def listeners_from_settings(settings: Mapping[str, str]) -> tuple[ListenerSpec, ...]:
    """The listeners Kafka-named ``settings`` describe (empty when ``listeners`` is not set).

    >>> [(s.name, s.port, s.security_protocol, s.advertised_host) for s in listeners_from_settings({
    ...     "listeners": "PLAINTEXT://127.0.0.1:9092,EXT://0.0.0.0:9094",
    ...     "advertised.listeners": "EXT://broker.example:9094",
    ...     "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,EXT:SASL_PLAINTEXT"})]
    [('PLAINTEXT', 9092, 'PLAINTEXT', None), ('EXT', 9094, 'SASL_PLAINTEXT', 'broker.example')]
    """
    if "listeners" not in settings:
        for name in ("advertised.listeners", "listener.security.protocol.map"):
            if name in settings:
                raise ValueError(f"{name} needs listeners= too (--listen is the single PLAINTEXT listener)")
        return ()
    # A KRaft server.properties names its controller listener among the listeners; loosely has no controller
    # quorum, so that listener is not opened (its port stays free and it is never advertised).
    controllers = {n.strip().upper() for n in settings.get("controller.listener.names", "").split(",") if n.strip()}
    bound = [b for b in parse_endpoints(settings["listeners"]) if b[0] not in controllers]
    if not bound:
        raise ValueError("listeners names only controller listeners (controller.listener.names)")
    protocols = parse_protocol_map(settings.get("listener.security.protocol.map", DEFAULT_PROTOCOL_MAP))
    advertised_text = settings.get("advertised.listeners", "")
    advertised = (
        {n: (h, p) for n, h, p in parse_endpoints(advertised_text, "advertised.listeners")}
        if advertised_text.strip()
        else {}
    )
    names = {n for n, _, _ in bound}
    for name in advertised:
        if name not in names and name not in controllers:
            raise ValueError(f"advertised.listeners names {name}, which is not in listeners")
    ports = [p for _, _, p in bound if p != 0]
    if len(ports) != len(set(ports)):
        raise ValueError("listeners: each listener needs a port of its own")
    specs: list[ListenerSpec] = []
    for name, host, port in bound:
        protocol = protocols.get(name)
        if protocol is None:
            raise ValueError(
                f"listener {name} has no security protocol: add {name}:PROTOCOL to listener.security.protocol.map"
            )
        adv_host, adv_port = advertised.get(name, (None, None))
        specs.append(
            ListenerSpec(
                name=name,
                host=host,
                port=port,
                security_protocol=protocol,
                advertised_host=adv_host,
                advertised_port=adv_port,
                tls=tls_settings(settings, name, protocol) if protocol in ("SSL", "SASL_SSL") else None,
            )
        )
    return tuple(specs)


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host.split("%", 1)[0])]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return []  # an unresolvable name binds nothing; the bind reports it
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def is_wildcard(host: str) -> bool:
    """``0.0.0.0`` or ``::``: every interface.

    >>> is_wildcard("0.0.0.0"), is_wildcard("::"), is_wildcard("127.0.0.1")
    (True, True, False)
    """
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    """True when every address ``host`` stands for is a loopback address.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0"), is_loopback("192.168.1.4")
    (True, True, False, False)
    """
    addrs = _addresses(host)
    return bool(addrs) and all(a.is_loopback for a in addrs)


def check_listen(host: str, advertised_host: str | None) -> bool:
    """Raise :class:`ValueError` with one clear sentence if this pair is unsafe; return whether ``host`` is loopback."""
    if advertised_host is not None and is_wildcard(advertised_host):
        raise ValueError(
            f"cannot advertise {advertised_host}: it means every interface, not an address clients can connect to; "
            "advertise the host name or IP address clients should use"
        )
    loopback = is_loopback(host)
    if not loopback and advertised_host is None:
        raise ValueError(
            f"listening on {host}, which is not a loopback address, needs an explicit advertised address: "
            "give --advertise HOST:PORT or advertised.listeners, the address clients should connect to"
        )
    return loopback


def check_listener(spec: ListenerSpec, allow_unauthenticated: bool) -> bool:
    """:func:`check_listen`, and refuse a non-loopback listener that lets anyone in; return whether it is loopback."""
    loopback = check_listen(spec.host, spec.advertised_host)
    if not loopback and not spec.authenticates and not allow_unauthenticated:
        raise ValueError(
            f"listener {spec.name} on {spec.host} is reachable from other machines but does not authenticate clients "
            "(use SASL_SSL or SASL_PLAINTEXT, or SSL with ssl.client.auth=required); give --allow-unauthenticated "
            "(loosely.allow.unauthenticated=true) to run it open anyway"
        )
    return loopback
