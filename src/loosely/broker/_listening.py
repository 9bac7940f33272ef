"""Where the broker may listen, and what it may tell clients to connect to.

A broker on loopback is reachable from this machine only. Anything else (a LAN address, or the wildcards ``0.0.0.0``
and ``::``, which mean every interface) lets anyone who reaches the port read, write and delete every topic: loosely
has no authentication yet. So a non-loopback listen address must come with an explicit advertised address (what
Metadata tells clients), the start-up logs a WARNING saying who can reach it, and a wildcard is never advertised
(Kafka refuses ``advertised.listeners`` with ``0.0.0.0`` too: clients cannot connect to it).
"""

from __future__ import annotations

import ipaddress
import socket

__all__ = ["check_listen", "is_loopback", "is_wildcard"]


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
            "give --advertise HOST:PORT (BrokerConfig.advertised_host), the address clients should connect to"
        )
    return loopback
