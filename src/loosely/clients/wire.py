"""A blocking Kafka connection of loosely's own, for the few requests confluent-kafka cannot send.

confluent-kafka speaks only the consumer group protocol and has no DescribeLogDirs (and its admin OffsetFetch can
crash, see :mod:`loosely.clients.groups`), so the schema registry's group member, the console's log-dir sizes and
the console's lag sampler frame their requests themselves with loosely's codec
(:mod:`loosely.protocol.messages`). :class:`KafkaConnection` is that connection: one socket, requests sent one at a
time, each answer read whole (bounded by ``frame_bytes_max``) within a timeout. On a secured cluster it first
wraps the socket in TLS and logs in with SASL PLAIN or SCRAM-SHA-256/512 (SaslHandshake v1, SaslAuthenticate v2,
the exchange of :class:`loosely.security.scram.ScramClient`); :class:`KafkaSecurity` reads those settings from
librdkafka's names, as the rest of loosely's clients take them. A refused login is a :class:`WireError` with the
broker's words; an unreachable broker an ``OSError``.

The RAW Hollow writer commits its transactions over these connections too; :func:`produce_then_end_txn` is its
commit's last exchange (Produce requests, their answers, then EndTxn) done in C without the GIL (``_fast.c``).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from loosely.clients import _fast
from loosely.protocol.errors import ErrorCode, ProtocolError
from loosely.protocol.framing import SIZE
from loosely.protocol.messages import ApiKey, build, decode_response, encode_request, load_request_schema
from loosely.security.scram import SCRAM_MECHANISMS, ScramClient, ScramError

__all__ = [
    "ConnectionPool",
    "KafkaConnection",
    "KafkaSecurity",
    "WireError",
    "error_code",
    "parse_address",
    "produce_then_end_txn",
    "request_class",
]

SASL_HANDSHAKE_V: Final = 1  # v1: the tokens go in SaslAuthenticate requests, not bare on the socket
SASL_AUTHENTICATE_V: Final = 2
FRAME_BYTES_MAX: Final = 8 * 1024 * 1024
RECV_BYTES: Final = 64 * 1024  # asked of each recv at least: the answers of the requests sent here fit


class WireError(Exception):
    """The broker refused the connection's login."""


SASL_MECHANISMS: Final = ("PLAIN", *sorted(SCRAM_MECHANISMS))


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """How a connection reaches secured brokers: a TLS context, and a SASL mechanism with its user and password."""

    tls: ssl.SSLContext | None = None
    mechanism: str | None = None  # PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; None: no SASL
    username: str = ""
    password: str = ""

    @staticmethod
    def from_client_config(config: dict[str, str]) -> KafkaSecurity:
        """From librdkafka's settings (loosely's confluent-kafka clients take the same); ValueError for what
        :class:`KafkaConnection` cannot speak."""
        protocol = config.get("security.protocol", "plaintext").lower()
        if protocol not in ("plaintext", "ssl", "sasl_plaintext", "sasl_ssl"):
            raise ValueError(f"security.protocol={protocol} is not a Kafka security protocol")
        tls = None
        if protocol.endswith("ssl"):
            tls = ssl.create_default_context(cafile=config.get("ssl.ca.location") or None)
            identify = config.get("ssl.endpoint.identification.algorithm", "https").lower()
            tls.check_hostname = identify == "https"
            if config.get("ssl.certificate.location"):
                tls.load_cert_chain(config["ssl.certificate.location"], config.get("ssl.key.location") or None,
                                    config.get("ssl.key.password") or None)
        if not protocol.startswith("sasl"):
            return KafkaSecurity(tls)
        mechanism = config.get("sasl.mechanism", config.get("sasl.mechanisms", "GSSAPI")).upper()
        if mechanism not in SASL_MECHANISMS:
            raise ValueError(f"sasl.mechanism={mechanism}: loosely's own connections speak "
                             f"{', '.join(SASL_MECHANISMS)}")
        return KafkaSecurity(tls, mechanism, config.get("sasl.username", ""), config.get("sasl.password", ""))


class KafkaConnection:
    """One blocking connection to a broker: framed requests out, framed answers in, each with a timeout; TLS and
    SASL first when the cluster wants them."""

    def __init__(self, host: str, port: int, timeout_s: float, security: KafkaSecurity | None = None, *,
                 frame_bytes_max: int = FRAME_BYTES_MAX, client_id: str = "loosely") -> None:
        self.address = f"{host}:{port}"
        self.frame_bytes_max = frame_bytes_max
        self.client_id = client_id
        sock = socket.create_connection((host, port), timeout=timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._correlation = 0
        self._buffer = bytearray()  # read past the answer being taken: the start of the next
        try:
            self._sock = sock if security is None or security.tls is None else security.tls.wrap_socket(
                sock, server_hostname=host)
        except (OSError, ssl.SSLError):
            sock.close()
            raise
        if security is not None and security.mechanism is not None:
            try:
                self._authenticate(security, timeout_s)
            except BaseException:
                self.close()
                raise

    def _authenticate(self, security: KafkaSecurity, timeout_s: float) -> None:
        mechanism = security.mechanism
        assert mechanism is not None
        shake = self.call(ApiKey.SASL_HANDSHAKE, SASL_HANDSHAKE_V,
                          build(request_class(ApiKey.SASL_HANDSHAKE, SASL_HANDSHAKE_V), mechanism=mechanism), timeout_s)
        if error_code(shake) != ErrorCode.none:
            raise WireError(f"{self.address} does not take SASL {mechanism} (it offers "
                           f"{', '.join(shake.mechanisms) or 'none'})")
        if mechanism == "PLAIN":
            self._sasl_step(f"\0{security.username}\0{security.password}".encode(), timeout_s)
            return
        client = ScramClient(SCRAM_MECHANISMS[mechanism], security.username, security.password)
        try:
            server_first = self._sasl_step(client.first(), timeout_s)
            client.verify(self._sasl_step(client.final(server_first), timeout_s))
        except ScramError as e:
            raise WireError(f"SASL {mechanism} with {self.address}: {e}") from None

    def _sasl_step(self, token: bytes, timeout_s: float) -> bytes:
        answer = self.call(ApiKey.SASL_AUTHENTICATE, SASL_AUTHENTICATE_V,
                           build(request_class(ApiKey.SASL_AUTHENTICATE, SASL_AUTHENTICATE_V), auth_bytes=token),
                           timeout_s)
        if error_code(answer) != ErrorCode.none:
            raise WireError(f"SASL authentication with {self.address} failed: "
                           f"{answer.error_message or ErrorCode(error_code(answer)).name}")
        return bytes(answer.auth_bytes)

    def call(self, api_key: int, version: int, request: object, timeout_s: float) -> Any:
        return self.receive(api_key, version, self.send(api_key, version, request, timeout_s), timeout_s)

    def send(self, api_key: int, version: int, request: object, timeout_s: float) -> int:
        """Send a request without reading its answer (to ask several brokers at once); its correlation id, for
        :meth:`receive`. Answers come in the order the requests went."""
        correlation, frame = self.frame(api_key, version, request)
        self._sock.settimeout(timeout_s)
        self._sock.sendall(frame)
        return correlation

    def receive(self, api_key: int, version: int, correlation_id: int, timeout_s: float) -> Any:
        """The answer to the request :meth:`send` sent as ``correlation_id``."""
        self._sock.settimeout(timeout_s)
        (size,) = SIZE.unpack(self._read(SIZE.size))
        if not 0 <= size <= self.frame_bytes_max:
            raise ProtocolError(f"answer of {size} bytes from {self.address} (at most {self.frame_bytes_max})")
        return self.decode(api_key, version, correlation_id, self._read(size))

    # -- for callers that move the bytes themselves (the RAW writer's commit, in C without the GIL) ------------

    def frame(self, api_key: int, version: int, request: object) -> tuple[int, bytes]:
        """A request framed for this connection, not sent: its correlation id and bytes. Whoever sends it reads
        its answer too, in order with this connection's other requests, and passes the body to :meth:`decode`."""
        self._correlation += 1
        return self._correlation, encode_request(api_key, version, self._correlation, request,
                                                 client_id=self.client_id)

    def decode(self, api_key: int, version: int, correlation_id: int, body: bytes) -> Any:
        """An answer's body (after its size) as the answer to ``correlation_id``; ProtocolError if it is not."""
        correlation, answer = decode_response(api_key, version, body)
        if correlation != correlation_id:
            raise ProtocolError(f"answer {correlation} from {self.address} to request {correlation_id}")
        return answer

    def _plain_fd(self) -> int | None:
        """The socket's descriptor, when bytes may go to it and come from it directly: no TLS wrapping, nothing
        read ahead; None otherwise."""
        if isinstance(self._sock, ssl.SSLSocket) or self._buffer:
            return None
        return self._sock.fileno()

    def _read(self, n: int) -> bytes:
        # one recv usually brings a whole answer, size and body: each recv gives up the GIL, and a thread taking it
        # back from busy Python threads waits for their switch interval (5 ms), so fewer recvs answer sooner
        buf = self._buffer
        while len(buf) < n:
            got = self._sock.recv(min(max(n - len(buf), RECV_BYTES), 1 << 20))
            if not got:
                raise ConnectionError(f"{self.address} closed the connection")
            buf += got
        out = bytes(buf[:n])
        del buf[:n]
        return out

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> KafkaConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ConnectionPool:
    """Connections kept by broker address between requests: opened on first use (with the pool's security, answer
    limit and client id) and dropped on the first trouble, since a connection in an unknown state (a request sent,
    its answer not read) must not be used again. Not thread-safe: its owner makes one call at a time.

    >>> pool = ConnectionPool(None, client_id="loosely-docs")
    >>> pool.existing(("127.0.0.1", 9092)) is None
    True
    """

    def __init__(self, security: KafkaSecurity | None, *, frame_bytes_max: int = FRAME_BYTES_MAX,
                 client_id: str = "loosely") -> None:
        self.security = security
        self.frame_bytes_max = frame_bytes_max
        self.client_id = client_id
        self._connections: dict[tuple[str, int], KafkaConnection] = {}

    def connection(self, address: tuple[str, int], timeout_s: float) -> KafkaConnection:
        """The connection to ``address``, opened (and logged in) now if there is none; ``OSError`` or
        :class:`WireError` if that fails."""
        c = self._connections.get(address)
        if c is None:
            c = self._connections[address] = KafkaConnection(address[0], address[1], timeout_s, self.security,
                                                             frame_bytes_max=self.frame_bytes_max,
                                                             client_id=self.client_id)
        return c

    def existing(self, address: tuple[str, int]) -> KafkaConnection | None:
        """The connection to ``address`` if one is open (none is opened)."""
        return self._connections.get(address)

    def drop(self, address: tuple[str, int]) -> None:
        """Close the connection to ``address`` (if any): the next request there opens a new one."""
        c = self._connections.pop(address, None)
        if c is not None:
            c.close()

    def close(self) -> None:
        """Close every connection."""
        for address in list(self._connections):
            self.drop(address)


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (an IPv6 host in brackets or not) as ``(host, port)``; ``ValueError`` otherwise.

    >>> parse_address(" [::1]:9092")
    ('::1', 9092)
    """
    host, _, port = text.strip().rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"bootstrap server {text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def produce_then_end_txn(produce: Sequence[tuple[KafkaConnection, bytes]], end: tuple[KafkaConnection, bytes],
                         timeout_s: float) -> tuple[list[bytes], bytes | None, bool, str | None] | None:
    """A transaction's last Produce requests (framed by :meth:`KafkaConnection.frame`, one per connection) and,
    if every partition of their answers landed, its EndTxn: all in C with the GIL released once (see
    ``_fast.c``, ``txn_exchange``). ``(answers, end_answer, end_sent, error)``: the answer bodies read, in order
    (a connection whose answer is not among them has one outstanding: close it); EndTxn's answer body, or None;
    whether EndTxn went out; what stopped the exchange. None, with nothing sent, when a connection is not a
    plain socket (TLS): send those the usual way."""
    fds = [conn._plain_fd() for conn, _ in produce]
    end_fd = end[0]._plain_fd()
    if end_fd is None or any(fd is None for fd in fds):
        return None
    frame_bytes_max = max(conn.frame_bytes_max for conn in [end[0], *(c for c, _ in produce)])
    return _fast.txn_exchange([(fd, frame) for fd, (_, frame) in zip(fds, produce, strict=True) if fd is not None],
                              end_fd, end[1], frame_bytes_max, max(1, int(timeout_s * 1000)))


def request_class(api_key: int, version: int) -> type[Any]:
    """The request class of an API version, kio's or loosely's own where kio lacks it (to
    :func:`~loosely.protocol.messages.build` a request with)."""
    return load_request_schema(api_key, version)


def error_code(answer: Any) -> int:
    """An answer's (or an answer entry's) ``error_code`` as an int."""
    code = answer.error_code
    return int(code.value if hasattr(code, "value") else code)
