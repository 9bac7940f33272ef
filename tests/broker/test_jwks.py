"""The broker's JWKS source: file: and http: URLs, read off the event loop; unknown kids reload at most once per
backoff; a failed reload keeps the old keys."""

from __future__ import annotations

import asyncio
import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from loosely.broker._jwks import JwksSource
from loosely.broker.config import BrokerConfig, split_kafka_settings
from loosely.security.jwt import JwtValidatorOptions, UnknownKeyError
from loosely.testing import FakeClock
from loosely.testing.jwt import JwtSigner, jwks_document

SIGNER = JwtSigner("RS256", kid="a")
CLAIMS = {"sub": "alice", "iat": 1_800_000_000, "exp": 1_800_000_060}
NOW_MS = 1_800_000_000_000


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, list[bytes]]]:
    """An HTTP JWKS endpoint serving the last document of the returned list, counting requests."""
    served: list[bytes] = [jwks_document(SIGNER)]
    hits: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(b"")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(served[-1])

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/keys", served
    finally:
        server.shutdown()
        server.server_close()


def test_http_jwks_unknown_kid_reloads_once_per_backoff(jwks_server: tuple[str, list[bytes]]) -> None:
    url, served = jwks_server
    clock = FakeClock()
    source = JwksSource(url, JwtValidatorOptions(), clock, refresh_ms=3_600_000, retry_backoff_ms=1_000)
    rotated = JwtSigner("ES256", kid="b")

    async def run() -> None:
        await source.load()
        assert source.validate(SIGNER.sign(CLAIMS), NOW_MS).principal == "alice"
        served.append(jwks_document(SIGNER, rotated))
        clock.advance(1_000)
        for _ in range(5):  # a burst of unknown kids: one reload
            with pytest.raises(UnknownKeyError):
                source.validate(rotated.sign(CLAIMS), NOW_MS)
        assert source._expedited is not None
        await source._expedited
        assert source.loads == 2
        assert source.validate(rotated.sign(CLAIMS), NOW_MS).principal == "alice"
        with pytest.raises(UnknownKeyError):  # within the backoff: no reload
            source.validate(JwtSigner("RS256", kid="c").sign(CLAIMS), NOW_MS)
        assert source._expedited.done() and source.loads == 2
        await source.stop()

    asyncio.run(run())


def test_a_failed_reload_keeps_the_old_keys(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_bytes(jwks_document(SIGNER))
    source = JwksSource(path.as_uri(), JwtValidatorOptions(), FakeClock(), refresh_ms=1, retry_backoff_ms=0)

    async def run() -> None:
        await source.load()
        path.write_text("not json")
        await source._reload()  # logged, not raised
        assert source.loads == 1 and source.validate(SIGNER.sign(CLAIMS), NOW_MS).principal == "alice"

    asyncio.run(run())


def test_kafka_settings_name_the_validator_and_bad_ones_are_refused() -> None:
    handler = "listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class"
    settings, _, unknown = split_kafka_settings(
        {handler: "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler",
         "sasl.oauthbearer.expected.audience": "kafka, other", "sasl.oauthbearer.clock.skew.seconds": "5"}
    )  # fmt: skip
    assert not unknown and settings["oauthbearer_validated_listeners"] == frozenset({"sasl_plaintext"})
    assert settings["oauthbearer_expected_audience"] == ("kafka", "other")
    with pytest.raises(ValueError, match=r"needs sasl\.oauthbearer\.jwks\.endpoint\.url"):
        BrokerConfig(data_dir="unused", **settings).check_limits()  # type: ignore[arg-type]
    for bad in (
        {handler: "com.example.MyHandler"},
        {"sasl.oauthbearer.jwt.validator.class": "org.apache.kafka.common.security.oauthbearer.ClientJwtValidator"},
        {"sasl.oauthbearer.jwks.endpoint.url": "ftp://idp/keys"},
        {"sasl.oauthbearer.clock.skew.seconds": "-1"},
    ):
        with pytest.raises(ValueError, match=re.escape(next(iter(bad)))):
            split_kafka_settings(bad)
