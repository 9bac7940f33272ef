"""Delegation tokens (KIP-48), differential: the same tools, clients and checks on loosely and Apache Kafka 4.1.

Both brokers run from the same Kafka settings: a SASL_PLAINTEXT listener with SCRAM users alice, bob and carol
beside PLAINTEXT, SSL and mutual-TLS (MTLS) ones, StandardAuthorizer with ``allow.everyone.if.no.acl.found=true``, and
``delegation.token.secret.key``. One pair of brokers serves the whole module; each test makes its own tokens.

The clients: Kafka's own ``kafka-delegation-tokens`` (DelegationTokenCommand from kafka-tools, on the Java Admin
client) and the Java producer and consumer logging in with a token (ScramLoginModule's ``tokenauth="true"``). No
Python client manages or logs in with tokens (confluent-kafka, kafka-python and aiokafka have no delegation token
admin calls; librdkafka's SCRAM client sends no ``tokenauth`` extension), so the rules are checked with raw
requests over a SCRAM session made here.
"""

from __future__ import annotations

import base64
import datetime
import ssl
import struct
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from broker._raw import Raw
from compat._java import run_java
from compat._kafka_tools import kafka_tool
from loosely.broker.config import BrokerConfig, split_kafka_settings
from loosely.broker.server import BrokerThread
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, build, decode_response, encode_request, load_request_schema
from loosely.security.authorizer import AclOperation, PatternType, PermissionType, ResourceType
from loosely.security.scram import SCRAM_MECHANISMS, ScramClient, parse_scram_spec
from loosely.security.tokens import token_hmac
from loosely.testing import ApacheKafka
from loosely.testing.certs import DevCerts, make_dev_certs, subject_dn

SECRET = "delegation-secret-for-tests"
SCRAM_JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
SETTINGS = {
    "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512",
    "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": SCRAM_JAAS,
    "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": SCRAM_JAAS,
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "allow.everyone.if.no.acl.found": "true",
    "delegation.token.secret.key": SECRET,
    "delegation.token.expiry.check.interval.ms": "1000",
}
USERS = ("alice", "bob", "carol")
SCRAM_USERS = [f"{m}=[name={u},password={u}-secret]" for u in USERS for m in ("SCRAM-SHA-256", "SCRAM-SHA-512")]
REFUSED_LOGIN = "Authentication failed during authentication due to invalid credentials with SASL mechanism"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    return make_dev_certs(tmp_path_factory.mktemp("token-certs"), clients=["alice"])


def _tls_settings(certs: DevCerts) -> dict[str, str]:
    """Two TLS listeners beside SASL: SSL (no client certificate) and MTLS (one required)."""
    return {
        **SETTINGS,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(certs.broker.pem),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(certs.ca_crt),
        "listener.name.mtls.ssl.client.auth": "required",
    }


LISTENERS = ("SASL_PLAINTEXT", "PLAINTEXT", "SSL", "MTLS")


@pytest.fixture(scope="module")
def loosely_brokers(tmp_path_factory: pytest.TempPathFactory, certs: DevCerts) -> Iterator[dict[str, str]]:
    listeners = {
        "listeners": ",".join(f"{name}://127.0.0.1:0" for name in LISTENERS),
        "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL",
    }
    settings, _, unknown = split_kafka_settings({**_tls_settings(certs), **listeners})
    assert not unknown
    creds = tuple((u, m.name, c) for u, m, c in map(parse_scram_spec, SCRAM_USERS))
    config = BrokerConfig(data_dir=str(tmp_path_factory.mktemp("loosely-tokens")), initial_scram_credentials=creds,
                          **settings)  # type: ignore[arg-type]
    with BrokerThread(config) as b:
        yield {name: b.bootstrap_servers_for(name) for name in LISTENERS}


@pytest.fixture(scope="module")
def kafka_brokers(
    jars_dir: Path, tmp_path_factory: pytest.TempPathFactory, certs: DevCerts
) -> Iterator[dict[str, str]]:
    kafka = ApacheKafka(
        base_dir=tmp_path_factory.mktemp("kafka-tokens"),
        jars_dir=jars_dir,
        listeners={"SASL_PLAINTEXT": "SASL_PLAINTEXT", "SSL": "SSL", "MTLS": "SSL"},
        format_args=[a for spec in SCRAM_USERS for a in ("--add-scram", spec)],
        config=_tls_settings(certs),
    )
    with kafka:
        yield {"PLAINTEXT": kafka.bootstrap_servers, **{n: kafka.bootstrap(n) for n in LISTENERS if n != "PLAINTEXT"}}


@pytest.fixture(params=["loosely", pytest.param("kafka", marks=pytest.mark.kafka)])
def brokers(request: pytest.FixtureRequest) -> dict[str, str]:
    """The broker's bootstrap address per listener name."""
    found: dict[str, str] = request.getfixturevalue(f"{request.param}_brokers")
    return found


# --- raw requests over a SCRAM session -----------------------------------------------------------------------


def _request(api_key: int, version: int, **fields: object) -> Any:
    return build(load_request_schema(api_key, version), **fields)


def login(bootstrap: str, user: str, password: str, *, tokenauth: bool = False,
          mechanism: str = "SCRAM-SHA-256") -> tuple[Raw, Any]:
    """A connection after a SCRAM exchange, and the last SaslAuthenticate answer (an error ends it early)."""
    raw = Raw(bootstrap)
    hs: Any = raw.request(ApiKey.SASL_HANDSHAKE, 1, _request(ApiKey.SASL_HANDSHAKE, 1, mechanism=mechanism))
    assert hs.error_code == ErrorCode.none
    client = ScramClient(SCRAM_MECHANISMS[mechanism], user, password, tokenauth=tokenauth)
    r: Any = raw.request(ApiKey.SASL_AUTHENTICATE, 2,
                         _request(ApiKey.SASL_AUTHENTICATE, 2, auth_bytes=client.first()))
    if r.error_code == ErrorCode.none:
        final = client.final(r.auth_bytes)
        r = raw.request(ApiKey.SASL_AUTHENTICATE, 2, _request(ApiKey.SASL_AUTHENTICATE, 2, auth_bytes=final))
        if r.error_code == ErrorCode.none:
            client.verify(r.auth_bytes)
    return raw, r


def as_user(brokers: dict[str, str], user: str) -> Raw:
    raw, r = login(brokers["SASL_PLAINTEXT"], user, f"{user}-secret")
    assert r.error_code == ErrorCode.none
    return raw


def as_token(brokers: dict[str, str], token_id: str, mac: bytes) -> tuple[Raw, Any]:
    return login(brokers["SASL_PLAINTEXT"], token_id, base64.b64encode(mac).decode(), tokenauth=True)


LONG_MAX, LONG_MIN = 2**63 - 1, -(2**63)
# kio writes no timedelta as large as a Java long can be: a period of LONG_MAX or LONG_MIN is sent as this marker,
# whose eight bytes are then swapped in the encoded request
_MARK_MS = 1_234_567_890_123


def ms(n: int) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=_MARK_MS if n in (LONG_MAX, LONG_MIN) else n)


def create(raw: Raw, renewers: tuple[str, ...] = (), owner: str | None = None, max_life_ms: int = -1) -> Any:
    cls = load_request_schema(ApiKey.CREATE_DELEGATION_TOKEN, 3)
    renewer = sys.modules[cls.__module__].CreatableRenewers
    return _call(raw, ApiKey.CREATE_DELEGATION_TOKEN, 3, cls(
        owner_principal_type=owner and owner.split(":")[0], owner_principal_name=owner and owner.split(":")[1],
        renewers=tuple(renewer(principal_type=r.split(":")[0], principal_name=r.split(":")[1]) for r in renewers),
        max_lifetime=ms(max_life_ms),
    ), period_ms=max_life_ms)  # fmt: skip


def _call(raw: Raw, api_key: int, version: int, body: object, period_ms: int = 0) -> Any:
    """A token API's decoded answer; a refusal as ``error_code`` and the ``frame``, since its timestamps may be the
    -1 kio cannot read. ``period_ms``: the request's period, put in place of the marker when it is a long's limit."""
    raw.corr += 1
    frame = encode_request(api_key, version, raw.corr, body, raw.client_id)
    if period_ms in (LONG_MAX, LONG_MIN):
        mark = struct.pack(">q", _MARK_MS)
        assert frame.count(mark) == 1
        frame = frame.replace(mark, struct.pack(">q", period_ms))
    raw.send(frame)
    frame = raw.recv_frame()
    assert frame is not None, "the broker closed the connection"
    (code,) = struct.unpack_from(">h", frame, 5)  # after the correlation id and the header's empty tagged fields
    if code != ErrorCode.none:
        return SimpleNamespace(error_code=code, frame=frame)
    return decode_response(api_key, version, frame)[1]


def renew(raw: Raw, mac: bytes, period_ms: int = -1) -> Any:
    return _call(raw, ApiKey.RENEW_DELEGATION_TOKEN, 2,
                 _request(ApiKey.RENEW_DELEGATION_TOKEN, 2, hmac=mac, renew_period=ms(period_ms)), period_ms)


def expire(raw: Raw, mac: bytes, period_ms: int = -1) -> Any:
    return _call(raw, ApiKey.EXPIRE_DELEGATION_TOKEN, 2,
                 _request(ApiKey.EXPIRE_DELEGATION_TOKEN, 2, hmac=mac, expiry_time_period=ms(period_ms)),
                 period_ms)


def describe(raw: Raw, owners: list[str] | None = None) -> Any:
    cls = load_request_schema(ApiKey.DESCRIBE_DELEGATION_TOKEN, 3)
    owner = sys.modules[cls.__module__].DescribeDelegationTokenOwner
    wanted = None if owners is None else tuple(
        owner(principal_type=o.split(":")[0], principal_name=o.split(":")[1]) for o in owners
    )
    return _call(raw, ApiKey.DESCRIBE_DELEGATION_TOKEN, 3, cls(owners=wanted))


def described(raw: Raw, mine: set[str], owners: list[str] | None = None) -> dict[str, tuple[object, ...]]:
    """Of the tokens ``mine``, those Describe shows: id -> (owner, requester, renewers)."""
    r = describe(raw, owners)
    assert r.error_code == ErrorCode.none
    return {
        t.token_id: (f"{t.principal_type}:{t.principal_name}",
                     f"{t.token_requester_principal_type}:{t.token_requester_principal_name}",
                     tuple(f"{x.principal_type}:{x.principal_name}" for x in t.renewers))
        for t in r.tokens if t.token_id in mine
    }  # fmt: skip


def add_acl(raw: Raw, rtype: ResourceType, name: str, principal: str, op: AclOperation) -> None:
    cls = load_request_schema(ApiKey.CREATE_ACLS, 3)
    creation = sys.modules[cls.__module__].AclCreation(
        resource_type=rtype, resource_name=name, resource_pattern_type=PatternType.LITERAL, principal=principal,
        host="*", operation=op, permission_type=PermissionType.ALLOW,
    )
    r: Any = raw.request(ApiKey.CREATE_ACLS, 3, cls(creations=(creation,)))
    assert r.results[0].error_code == ErrorCode.none


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    """Kafka applies ACLs and token changes through its metadata log: poll until the broker has them."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _code(r: Any) -> int:
    return int(r.error_code)


# --- Kafka's kafka-delegation-tokens tool ---------------------------------------------------------------------


def _client_properties(path: Path, brokers: dict[str, str], user: str, password: str, *, tokenauth: bool = False,
                       mechanism: str = "SCRAM-SHA-256") -> Path:
    token = ' tokenauth="true"' if tokenauth else ""
    path.write_text(
        f"bootstrap.servers={brokers['SASL_PLAINTEXT']}\n"
        "security.protocol=SASL_PLAINTEXT\n"
        f"sasl.mechanism={mechanism}\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{user}" password="{password}"{token};\n'
    )
    return path


def _tokens_tool(brokers: dict[str, str], config: Path, *args: str) -> str:
    out = kafka_tool("DelegationTokenCommand", "--bootstrap-server", brokers["SASL_PLAINTEXT"],
                     "--command-config", str(config), *args, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def _table(stdout: str) -> list[list[str]]:
    """The rows of the tool's token table: TOKENID HMAC OWNER REQUESTER RENEWERS ISSUEDATE EXPIRYDATE MAXDATE."""
    lines = [line.split() for line in stdout.splitlines() if line.strip()]
    start = next(i for i, cells in enumerate(lines) if cells[:2] == ["TOKENID", "HMAC"])
    return [cells for cells in lines[start + 1:] if len(cells) == 8]


def test_kafka_tool_creates_describes_renews_and_expires(brokers: dict[str, str], tmp_path: Path) -> None:
    alice = _client_properties(tmp_path / "alice.properties", brokers, "alice", "alice-secret")
    bob = _client_properties(tmp_path / "bob.properties", brokers, "bob", "bob-secret")
    out = _tokens_tool(brokers, alice, "--create", "--renewer-principal", "User:bob",
                       "--max-life-time-period", "3600000")
    [[token_id, mac, owner, requester, renewers, *_]] = _table(out)
    assert f"Created delegation token with tokenId : {token_id}" in out
    assert (owner, requester, renewers) == ("User:alice", "User:alice", "[User:bob]")
    assert base64.b64decode(mac) == token_hmac(SECRET, token_id)  # Kafka's HmacSHA512 of the id, under the key

    wait_for(lambda: token_id in described(as_user(brokers, "alice"), {token_id}), "the token to be described")
    out = _tokens_tool(brokers, bob, "--describe", "--owner-principal", "User:alice")
    rows = {row[0]: row for row in _table(out)}
    assert rows[token_id][:5] == [token_id, mac, "User:alice", "User:alice", "[User:bob]"]
    # Without --owner-principal the tool sends an empty owner list ("current user"), which both brokers answer
    # with no tokens at all (Kafka's DescribeDelegationTokenRequest.ownersListEmpty)
    out = _tokens_tool(brokers, alice, "--describe")
    assert "Total number of tokens : 0" in out and not _table(out)

    before_ms = int(time.time() * 1000)
    out = _tokens_tool(brokers, bob, "--renew", "--hmac", mac, "--renew-time-period", "600000")
    assert "Completed renew operation. New expiry date" in out
    raw = as_user(brokers, "alice")

    def mine() -> Any:
        return next(t for t in describe(raw, ["User:alice"]).tokens if t.token_id == token_id)

    # before the renewal the expiry was the max (1 day from the issue is past it)
    wait_for(lambda: mine().expiry_timestamp < mine().max_timestamp, "the renewal to be described")
    assert before_ms + 600_000 <= mine().expiry_timestamp <= int(time.time() * 1000) + 600_000
    assert mine().max_timestamp - mine().issue_timestamp == 3_600_000

    out = _tokens_tool(brokers, alice, "--expire", "--hmac", mac, "--expiry-time-period", "-1")
    assert "Completed expire operation" in out
    wait_for(lambda: not described(raw, {token_id}), "the expired token to be gone")


# --- the Java clients logging in with a token ---------------------------------------------------------------


def test_java_clients_log_in_with_a_token_as_its_owner(brokers: dict[str, str], tmp_path: Path) -> None:
    alice = as_user(brokers, "alice")
    created = create(alice)
    assert _code(created) == ErrorCode.none
    token_id, mac = created.token_id, created.hmac
    wait_for(lambda: _code(as_token(brokers, token_id, mac)[1]) == ErrorCode.none, "the token to log in")

    topic = f"tokens-{uuid.uuid4().hex[:8]}"
    props = _client_properties(tmp_path / "token.properties", brokers, token_id, base64.b64encode(mac).decode(),
                               tokenauth=True, mechanism="SCRAM-SHA-512")
    r = run_java("interop/java-clients", "ConfiguredProbe", "roundtrip", str(props), topic, "3")
    assert r.returncode == 0, r.stderr[-3000:]
    assert [line.split()[-1] for line in r.stdout.splitlines() if line.startswith("consumed")] == [
        "value-0", "value-1", "value-2"
    ]

    # The token's client is alice for the ACLs: denied what alice is denied, and may not manage tokens.
    token_conn, _ = as_token(brokers, token_id, mac)
    assert _code(describe(token_conn)) == ErrorCode.delegation_token_request_not_allowed
    assert _code(create(token_conn)) == ErrorCode.delegation_token_request_not_allowed
    add_acl(alice, ResourceType.TOPIC, topic, "User:bob", AclOperation.READ)  # the topic now has ACLs, none alice's
    wait_for(lambda: _list_offsets_error(as_token(brokers, token_id, mac)[0], topic)
             == ErrorCode.topic_authorization_failed, "the ACL to apply")  # fmt: skip
    assert _list_offsets_error(as_user(brokers, "bob"), topic) == ErrorCode.none

    wrong = _client_properties(tmp_path / "wrong.properties", brokers, token_id, base64.b64encode(b"x" * 64).decode(),
                               tokenauth=True)
    r = run_java("interop/java-clients", "ConfiguredProbe", "roundtrip", str(wrong), topic, "1", timeout=120)
    assert r.returncode != 0
    assert f"SaslAuthenticationException: {REFUSED_LOGIN} SCRAM-SHA-256" in r.stderr, r.stderr[-3000:]

    assert _code(expire(alice, mac)) == ErrorCode.none  # -1: at once
    wait_for(lambda: _code(as_token(brokers, token_id, mac)[1]) != ErrorCode.none, "the expired token to be refused")
    raw, answer = as_token(brokers, token_id, mac)
    assert _code(answer) == ErrorCode.sasl_authentication_failed
    assert answer.error_message == f"{REFUSED_LOGIN} SCRAM-SHA-256"
    assert raw.closed_by_peer()


def _list_offsets_error(raw: Raw, topic: str) -> int:
    cls = load_request_schema(ApiKey.LIST_OFFSETS, 7)
    mod = sys.modules[cls.__module__]
    part = mod.ListOffsetsPartition(partition_index=0, current_leader_epoch=-1, timestamp=-1)
    topics = (mod.ListOffsetsTopic(name=topic, partitions=(part,)),)
    r: Any = raw.request(ApiKey.LIST_OFFSETS, 7, cls(replica_id=-1, isolation_level=0, topics=topics))
    return int(r.topics[0].partitions[0].error_code)


def test_the_token_apis_are_advertised_alike(brokers: dict[str, str]) -> None:
    raw = Raw(brokers["PLAINTEXT"])
    answer: Any = raw.request(ApiKey.API_VERSIONS, 3, _request(ApiKey.API_VERSIONS, 3, client_software_name="t",
                                                          client_software_version="1"))
    advertised = {int(k.api_key): (int(k.min_version), int(k.max_version))
                  for k in answer.api_keys}
    assert {k: advertised[k] for k in range(38, 42)} == {38: (1, 3), 39: (1, 2), 40: (1, 2), 41: (1, 3)}


# --- who may do what ------------------------------------------------------------------------------------------


def test_who_may_create_renew_expire_and_describe(brokers: dict[str, str]) -> None:
    alice, bob, carol = (as_user(brokers, u) for u in USERS)
    plain = Raw(brokers["PLAINTEXT"])  # not authenticated
    assert _code(describe(plain)) == ErrorCode.delegation_token_request_not_allowed
    refused = create(plain)
    assert _code(refused) == ErrorCode.delegation_token_request_not_allowed
    assert struct.pack(">qqq", -1, -1, -1) in refused.frame  # issue, expiry and max: Kafka's error timestamp
    assert _code(renew(plain, b"x")) == ErrorCode.delegation_token_request_not_allowed
    assert _code(create(alice, renewers=("Group:g",))) == ErrorCode.invalid_principal_type

    t1 = create(alice, renewers=("User:bob",))
    assert _code(t1) == ErrorCode.none
    mac1 = t1.hmac
    wait_for(lambda: _code(renew(bob, mac1)) == ErrorCode.none, "bob to renew the token")
    assert _code(renew(carol, mac1)) == ErrorCode.delegation_token_owner_mismatch
    assert _code(expire(carol, mac1)) == ErrorCode.delegation_token_owner_mismatch
    assert _code(renew(alice, b"not a token")) == ErrorCode.delegation_token_not_found
    assert _code(expire(alice, b"not a token")) == ErrorCode.delegation_token_not_found

    # Creating for someone else takes CREATE_TOKENS on their User resource (open while it has no ACLs).
    add_acl(alice, ResourceType.USER, "User:bob", "User:carol", AclOperation.CREATE_TOKENS)
    wait_for(lambda: _code(create(alice, owner="User:bob")) == ErrorCode.delegation_token_authorization_failed,
             "the ACL to apply")  # fmt: skip
    t2 = create(carol, owner="User:bob")
    assert _code(t2) == ErrorCode.none
    assert (t2.principal_name, t2.token_requester_principal_name) == ("bob", "carol")
    ids = {t1.token_id, t2.token_id}
    wait_for(lambda: len(described(alice, ids)) == 2, "both tokens to be described")

    # Others' tokens show by ACL: DESCRIBE on the DelegationToken resource, or DESCRIBE_TOKENS on the owner.
    add_acl(alice, ResourceType.DELEGATION_TOKEN, t2.token_id, "User:carol", AclOperation.DESCRIBE)
    wait_for(lambda: set(described(alice, ids)) == {t1.token_id}, "t2 to be hidden from alice")
    assert described(carol, ids) == {  # t2 as its requester, t1 as nobody wrote an ACL for it
        t1.token_id: ("User:alice", "User:alice", ("User:bob",)),
        t2.token_id: ("User:bob", "User:carol", ()),
    }
    add_acl(carol, ResourceType.USER, "User:bob", "User:alice", AclOperation.DESCRIBE_TOKENS)
    wait_for(lambda: set(described(alice, ids)) == ids, "t2 to show to alice again")
    assert described(bob, ids, ["User:alice"]) == {t1.token_id: ("User:alice", "User:alice", ("User:bob",))}
    assert described(alice, ids, []) == {}

    assert _code(expire(bob, mac1)) == ErrorCode.none
    wait_for(lambda: set(described(alice, ids)) == {t2.token_id}, "t1 to be gone")


def test_tls_needs_a_client_certificate_whose_principal_owns_the_token(brokers: dict[str, str],
                                                                      certs: DevCerts) -> None:
    anonymous = Raw(brokers["SSL"], ssl.create_default_context(cafile=str(certs.ca_crt)))
    assert _code(describe(anonymous)) == ErrorCode.delegation_token_request_not_allowed
    assert _code(create(anonymous)) == ErrorCode.delegation_token_request_not_allowed
    tls = ssl.create_default_context(cafile=str(certs.ca_crt))
    tls.load_cert_chain(str(certs.clients["alice"].crt), str(certs.clients["alice"].key))
    alice = Raw(brokers["MTLS"], tls)
    t = create(alice)
    assert _code(t) == ErrorCode.none
    owner = f"User:{subject_dn('alice')}"
    assert f"{t.principal_type}:{t.principal_name}" == owner
    wait_for(lambda: bool(described(alice, {t.token_id})), "the token to be described")
    assert described(alice, {t.token_id}, [owner]) == {t.token_id: (owner, owner, ())}
    assert _code(expire(alice, t.hmac)) == ErrorCode.none


def test_expired_tokens_are_purged(brokers: dict[str, str]) -> None:
    alice = as_user(brokers, "alice")
    short = create(alice, max_life_ms=5000)
    assert _code(short) == ErrorCode.none
    assert short.max_timestamp - short.issue_timestamp == ms(5000)
    assert short.expiry_timestamp == short.max_timestamp
    mine = {short.token_id}
    wait_for(lambda: bool(described(alice, mine)), "the token to be described")
    wait_for(lambda: not described(alice, mine), "the purge (delegation.token.expiry.check.interval.ms)")
    wait_for(lambda: _code(renew(alice, short.hmac)) == ErrorCode.delegation_token_not_found, "the token to be gone")
    _, answer = as_token(brokers, short.token_id, short.hmac)
    assert _code(answer) == ErrorCode.sasl_authentication_failed


def test_periods_as_long_as_a_long_are_capped_as_kafka_caps_them(brokers: dict[str, str]) -> None:
    """Java's Admin sends Long.MAX_VALUE for "as long as allowed". Kafka (DelegationTokenControlManager): a create
    takes at most ``delegation.token.max.lifetime.ms`` (7 days), a renewal at most ``delegation.token.expiry.time.ms``
    (1 day) from now, an expiry period is added to the clock without overflowing and capped at the token's maximum,
    and a negative one (Long.MIN_VALUE too) expires the token at once. Every answer comes on a connection that stays
    open."""
    day, week = datetime.timedelta(days=1), datetime.timedelta(days=7)
    alice = as_user(brokers, "alice")
    t = create(alice, max_life_ms=LONG_MAX)
    assert _code(t) == ErrorCode.none
    assert t.max_timestamp - t.issue_timestamp == week
    mine = {t.token_id}
    wait_for(lambda: bool(described(alice, mine)), "the token to be described")
    renewed = renew(alice, t.hmac, LONG_MAX)
    assert _code(renewed) == ErrorCode.none
    assert day <= renewed.expiry_timestamp - t.issue_timestamp <= day + datetime.timedelta(minutes=2)
    expired = expire(alice, t.hmac, LONG_MAX)
    assert _code(expired) == ErrorCode.none
    assert expired.expiry_timestamp == t.max_timestamp
    assert _code(expire(alice, t.hmac, LONG_MIN)) == ErrorCode.none
    wait_for(lambda: not described(alice, mine), "the token expired at once to be gone")
    assert _code(renew(alice, t.hmac, LONG_MAX)) == ErrorCode.delegation_token_not_found


# --- loosely only: what a second Apache Kafka per case would cost a minute to show ------------------------------


def _loosely_config(data_dir: Path, **settings: str) -> BrokerConfig:
    listeners = {"listeners": "SASL_PLAINTEXT://127.0.0.1:0"}
    parsed, _, unknown = split_kafka_settings({**SETTINGS, **listeners, **settings})
    assert not unknown
    creds = tuple((u, m.name, c) for u, m, c in map(parse_scram_spec, SCRAM_USERS))
    return BrokerConfig(data_dir=str(data_dir), initial_scram_credentials=creds, **parsed)  # type: ignore[arg-type]


def test_tokens_survive_a_restart_and_need_the_same_secret_key(tmp_path: Path) -> None:
    """Kafka keeps tokens in its metadata log and their HMACs follow from the secret key; loosely keeps them in
    delegation-tokens.json (no secret in it) and recomputes the HMACs the same way."""
    with BrokerThread(_loosely_config(tmp_path)) as b:
        brokers = {"SASL_PLAINTEXT": b.bootstrap_servers_for("SASL_PLAINTEXT")}
        t = create(as_user(brokers, "alice"), renewers=("User:bob",))
        assert _code(t) == ErrorCode.none
    token_id, mac = t.token_id, t.hmac
    assert SECRET not in (tmp_path / "delegation-tokens.json").read_text()
    with BrokerThread(_loosely_config(tmp_path)) as b:
        brokers = {"SASL_PLAINTEXT": b.bootstrap_servers_for("SASL_PLAINTEXT")}
        assert described(as_user(brokers, "bob"), {token_id}) == {
            token_id: ("User:alice", "User:alice", ("User:bob",))
        }
        assert _code(as_token(brokers, token_id, mac)[1]) == ErrorCode.none
    with BrokerThread(_loosely_config(tmp_path, **{"delegation.token.secret.key": "another key"})) as b:
        brokers = {"SASL_PLAINTEXT": b.bootstrap_servers_for("SASL_PLAINTEXT")}
        assert _code(as_token(brokers, token_id, mac)[1]) == ErrorCode.sasl_authentication_failed
        assert _code(renew(as_user(brokers, "alice"), mac)) == ErrorCode.delegation_token_not_found
    with BrokerThread(_loosely_config(tmp_path, **{"delegation.token.secret.key": ""})) as b:
        brokers = {"SASL_PLAINTEXT": b.bootstrap_servers_for("SASL_PLAINTEXT")}
        alice = as_user(brokers, "alice")
        disabled = ErrorCode.delegation_token_auth_disabled
        assert [_code(r) for r in (create(alice), renew(alice, mac), expire(alice, mac), describe(alice))] == [
            disabled
        ] * 4
        assert _code(as_token(brokers, token_id, mac)[1]) == ErrorCode.sasl_authentication_failed


def test_a_damaged_tokens_file_stops_the_broker_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "delegation-tokens.json").write_text('{"version": 1, "tokens": [{"token_id": 5}]}')
    with pytest.raises(OSError, match=r"delegation-tokens\.json is damaged"):
        BrokerThread(_loosely_config(tmp_path)).start()
