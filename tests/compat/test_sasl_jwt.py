"""SASL/OAUTHBEARER with signed JWTs checked against a JWKS file (KIP-768), differential: librdkafka's ``oauth_cb``
hands loosely and Apache Kafka the same tokens, both brokers are configured from the same Kafka settings.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient

from compat._roundtrip import produce_and_consume
from loosely.broker.config import BrokerConfig, split_kafka_settings
from loosely.broker.server import BrokerThread
from loosely.testing import ApacheKafka
from loosely.testing.jwt import JwtSigner, jwks_document

ISSUER = "https://idp.example"
SIGNER = JwtSigner("RS256", kid="rsa-1")
EC_SIGNER = JwtSigner("ES256", kid="ec-1")
IMPOSTOR = JwtSigner("RS256", kid="rsa-1")  # the same kid, another key


def _settings(jwks: Path) -> dict[str, str]:
    return {
        "sasl.enabled.mechanisms": "OAUTHBEARER",
        "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config": (
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;"
        ),
        "listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class": (
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"
        ),
        # Kafka 4.1.1's default (DefaultJwtValidator) checks no signature when built by the handler: name the one
        # that does (loosely verifies either way; docs/broker.md)
        "sasl.oauthbearer.jwt.validator.class": "org.apache.kafka.common.security.oauthbearer.BrokerJwtValidator",
        "sasl.oauthbearer.jwks.endpoint.url": jwks.as_uri(),
        "sasl.oauthbearer.expected.audience": "kafka",
        "sasl.oauthbearer.expected.issuer": ISSUER,
    }


@pytest.fixture(scope="module")
def jwks_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_bytes(jwks_document(SIGNER, EC_SIGNER))
    return path


@pytest.fixture(scope="module")
def loosely_jwt(jwks_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings, _, unknown = split_kafka_settings({"listeners": "SASL_PLAINTEXT://127.0.0.1:0", **_settings(jwks_file)})
    assert not unknown
    config = BrokerConfig(data_dir=str(tmp_path_factory.mktemp("loosely-jwt")), **settings)  # type: ignore[arg-type]
    with BrokerThread(config) as b:
        yield b.bootstrap_servers


@pytest.fixture(scope="module")
def kafka_jwt(jwks_file: Path, jars_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    kafka = ApacheKafka(
        base_dir=tmp_path_factory.mktemp("kafka-jwt"),
        jars_dir=jars_dir,
        listeners={"SASL_PLAINTEXT": "SASL_PLAINTEXT"},
        config=_settings(jwks_file),
        # Kafka 4 fetches a JWKS only from URLs allowed by this system property (CVE-2025-27817)
        jvm_args=[f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={jwks_file.as_uri()}"],
    )
    with kafka:
        yield kafka.bootstrap("SASL_PLAINTEXT")


@pytest.fixture(params=["loosely", "kafka"])
def jwt_bootstrap(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("loosely_jwt" if request.param == "loosely" else "kafka_jwt"))


def _conf(
    bootstrap: str, signer: JwtSigner, claims: dict[str, object] | None = None, header: dict[str, object] | None = None
) -> dict[str, object]:
    """librdkafka settings whose ``oauth_cb`` signs a fresh token (``claims`` relative to now, added or replaced)."""

    def oauth_cb(_config: str) -> tuple[str, float]:
        now = int(time.time())
        base = {"sub": "alice", "iss": ISSUER, "aud": "kafka", "iat": now, "exp": now + 3600, "scope": "kafka"}
        extra = {
            k: now + v if k in ("exp", "iat", "nbf") and isinstance(v, int) else v for k, v in (claims or {}).items()
        }
        return signer.sign({**base, **extra}, header), float(now + 3600)

    return {"bootstrap.servers": bootstrap, "security.protocol": "sasl_plaintext", "sasl.mechanism": "OAUTHBEARER",
            "oauth_cb": oauth_cb}  # fmt: skip


@pytest.mark.parametrize("signer", [SIGNER, EC_SIGNER], ids=["RS256", "ES256"])
def test_confluent_kafka_produce_consume_with_signed_tokens(jwt_bootstrap: str, signer: JwtSigner) -> None:
    produce_and_consume(_conf(jwt_bootstrap, signer), b"signed")


@pytest.mark.parametrize(
    ("signer", "claims", "header"),
    [
        (IMPOSTOR, None, None),  # the right kid, another key
        (JwtSigner("RS256", kid="unknown"), None, None),
        (SIGNER, {"exp": -2}, None),  # no clock skew on exp in Kafka 4.1.1
        (SIGNER, {"iat": 4000}, None),  # after exp
        (SIGNER, {"nbf": 600}, None),
        (SIGNER, {"aud": "someone-else"}, None),
        (SIGNER, {"iss": "https://evil.example"}, None),
        (SIGNER, None, {"alg": "PS256"}),  # signed with one algorithm, claiming another
    ],
    ids=[
        "wrong-key",
        "unknown-kid",
        "just-expired",
        "iat-after-exp",
        "not-yet-valid",
        "wrong-aud",
        "wrong-iss",
        "alg-mismatch",
    ],
)
def test_bad_tokens_are_refused_with_kafkas_challenge(
    jwt_bootstrap: str, signer: JwtSigner, claims: dict[str, object] | None, header: dict[str, object] | None
) -> None:
    errors: list[KafkaError] = []
    admin = AdminClient({**_conf(jwt_bootstrap, signer, claims, header), "error_cb": errors.append})
    deadline = time.monotonic() + 15
    while not errors and time.monotonic() < deadline:
        admin.poll(0.2)  # error_cb is served by poll
    assert errors, "no error reported"
    assert errors[0].code() == KafkaError._AUTHENTICATION, errors[0]
    assert '{"status":"invalid_token"}' in errors[0].str(), errors[0].str()


@pytest.mark.parametrize("claims", [{"nbf": 20}, {"iat": 40}], ids=["nbf-within-skew", "iat-in-the-future"])
def test_tokens_kafka_accepts_at_the_edges_of_the_clock(jwt_bootstrap: str, claims: dict[str, object]) -> None:
    admin = AdminClient(_conf(jwt_bootstrap, SIGNER, claims))
    assert admin.list_topics(timeout=15).brokers


def _loosely_config(jwks: Path, data_dir: Path, **extra: str) -> BrokerConfig:
    settings, _, unknown = split_kafka_settings(
        {"listeners": "SASL_PLAINTEXT://127.0.0.1:0", **_settings(jwks), **extra}
    )
    assert not unknown
    return BrokerConfig(data_dir=str(data_dir), **settings)  # type: ignore[arg-type]


def test_loosely_reloads_the_jwks_for_an_unknown_kid_and_the_client_gets_in_on_retry(tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_bytes(jwks_document(SIGNER))
    rotated = JwtSigner("ES384", kid="rotated")
    with BrokerThread(_loosely_config(jwks, tmp_path / "data")) as b:
        jwks.write_bytes(jwks_document(SIGNER, rotated))  # the provider rotates; the broker still holds the old set
        errors: list[KafkaError] = []
        admin = AdminClient({**_conf(b.bootstrap_servers, rotated), "error_cb": errors.append})
        md = admin.list_topics(timeout=20)  # librdkafka reconnects on its own after the first refusal
        assert md.brokers and b.broker._jwks is not None and b.broker._jwks.loads == 2
        admin.poll(0)
        assert errors and errors[0].code() == KafkaError._AUTHENTICATION, errors


def test_a_jwks_that_cannot_be_read_stops_the_start_with_its_reason(tmp_path: Path) -> None:
    config = _loosely_config(tmp_path / "missing.json", tmp_path / "data")
    with pytest.raises(ValueError, match=r"sasl.oauthbearer.jwks.endpoint.url .*No such file"):
        BrokerThread(config).start()
    (tmp_path / "bad.json").write_text('{"keys": 5}')
    with pytest.raises(ValueError, match="JWKS"):
        BrokerThread(_loosely_config(tmp_path / "bad.json", tmp_path / "data")).start()
