"""A raw Kafka protocol connection for tests that need to send what no real client would."""

from __future__ import annotations

import socket
import ssl
import struct

from loosely.protocol.messages import decode_response, encode_request


class Raw:
    def __init__(self, bootstrap: str, tls: ssl.SSLContext | None = None, *, client_id: str = "loosely",
                 source_ip: str | None = None) -> None:
        host, port = bootstrap.rsplit(":", 1)
        # source_ip: connect from another loopback address (127.0.0.2), for per-IP limits that must not hit the rest
        sock = socket.create_connection((host, int(port)), timeout=10,
                                        source_address=None if source_ip is None else (source_ip, 0))
        self.sock = sock if tls is None else tls.wrap_socket(sock, server_hostname=host)
        self.corr = 0
        self.client_id = client_id

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_frame(self) -> bytes | None:
        """The next response frame, or None if the broker closed the connection."""
        head = self._recv_exact(4)
        if head is None:
            return None
        (n,) = struct.unpack(">i", head)
        return self._recv_exact(n)

    def _recv_exact(self, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            buf += chunk
        return buf

    def request(self, api_key: int, version: int, body: object) -> object:
        self.corr += 1
        self.send(encode_request(api_key, version, self.corr, body, self.client_id))
        frame = self.recv_frame()
        assert frame is not None, "the broker closed the connection"
        corr, resp = decode_response(api_key, version, frame)
        assert corr == self.corr
        return resp

    def closed_by_peer(self) -> bool:
        return self.recv_frame() is None
