"""A Kafka-aware TCP proxy that loses Produce acknowledgements: the broker appended, the producer never hears so.

It sits in front of one broker. Responses to Metadata and FindCoordinator are rewritten to name the proxy instead of
the broker, so clients keep talking through it. For the first ``drops`` Produce responses it closes the client's
connection instead of forwarding the response, which is what a network failure after the append looks like; the
producer must retry, and only idempotence keeps the retry from appending the records again.
"""

from __future__ import annotations

import dataclasses
import socket
import struct
import threading
from typing import Any

from loosely.protocol.messages import ApiKey, decode_response, encode_response, peek_request_prefix


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return buf


def _frames(sock: socket.socket) -> Any:
    while True:
        head = _recv_exact(sock, 4)
        if head is None:
            return
        (n,) = struct.unpack(">i", head)
        body = _recv_exact(sock, n)
        if body is None:
            return
        yield body


class AckLossProxy:
    def __init__(self, upstream: str, drops: int) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.drops = drops
        self.dropped = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stopping = False
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stopping = True
        self._listener.close()
        for s in list(self._socks):
            try:
                s.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            self._socks += [client, server]
            pending: dict[int, tuple[int, int]] = {}
            threading.Thread(target=self._requests, args=(client, server, pending), daemon=True).start()
            threading.Thread(target=self._responses, args=(client, server, pending), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket, pending: dict[int, tuple[int, int]]) -> None:
        for frame in _frames(client):
            key, version, corr = peek_request_prefix(frame)
            pending[corr] = (key, version)
            try:
                server.sendall(struct.pack(">i", len(frame)) + frame)
            except OSError:
                break
        self._hang_up(client, server)

    def _responses(self, client: socket.socket, server: socket.socket, pending: dict[int, tuple[int, int]]) -> None:
        for raw in _frames(server):
            frame = raw
            (corr,) = struct.unpack_from(">i", frame, 0)
            key, version = pending.pop(corr, (-1, -1))
            if key == ApiKey.PRODUCE:
                with self._lock:
                    drop = self.dropped < self.drops
                    if drop:
                        self.dropped += 1
                if drop:
                    break
            elif key in (ApiKey.METADATA, ApiKey.FIND_COORDINATOR):
                frame = self._rewrite(key, version, frame)
            try:
                client.sendall(struct.pack(">i", len(frame)) + frame)
            except OSError:
                break
        self._hang_up(client, server)

    @staticmethod
    def _hang_up(*socks: socket.socket) -> None:
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _rewrite(self, key: int, version: int, frame: bytes) -> bytes:
        corr, resp = decode_response(key, version, frame)
        me: dict[str, object] = {"host": "127.0.0.1", "port": self.port}
        if key == ApiKey.METADATA:
            brokers = tuple(dataclasses.replace(b, **me) for b in resp.brokers)  # type: ignore[attr-defined]
            resp = dataclasses.replace(resp, brokers=brokers)  # type: ignore[type-var]
        elif hasattr(resp, "coordinators"):
            coords = tuple(dataclasses.replace(c, **me) for c in resp.coordinators)
            resp = dataclasses.replace(resp, coordinators=coords)  # type: ignore[type-var]
        else:
            resp = dataclasses.replace(resp, **me)  # type: ignore[type-var]
        return encode_response(key, version, corr, resp)[4:]
