"""The configuration reference (docs/configuration.md), rendered from the settings the code really understands.

Broker settings come from :data:`~loosely.broker.config.BROKER_SETTINGS` with their defaults from
:class:`~loosely.broker.config.BrokerConfig`; topic settings and their broker-wide defaults from
:data:`~loosely.storage.config.TOPIC_CONFIGS`. A topic setting is *honoured* when changing it changes the
:class:`~loosely.storage.config.LogConfig` the log runs with; the others are accepted, stored and reported by
DescribeConfigs (so Kafka tools and clients that set them keep working) and have no effect on a single node.
``tests/broker/test_config_doc.py`` fails when the file and the code disagree. Regenerate with::

    python -m loosely.broker.config_doc > docs/configuration.md
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Final

from loosely.broker.config import BROKER_SETTINGS, BrokerConfig
from loosely.storage.config import LONG_MAX, TOPIC_CONFIGS, ConfigDef, InvalidConfigError, resolve_log_config

__all__ = ["BROKER_SETTING_DOCS", "LISTENER_SETTING_DOCS", "honoured_topic_configs", "render"]

# What each broker setting does in loosely (its Kafka meaning, and where loosely departs from it).
BROKER_SETTING_DOCS: Final[dict[str, str]] = {
    "node.id": "This broker's id in Metadata (Kafka's KRaft node id).",
    "broker.id": "Alias of node.id (Kafka's name before KRaft).",
    "num.partitions": "Partitions of auto-created topics (also `--num-partitions`).",
    "auto.create.topics.enable": "Create a topic when a client asks Metadata for it (`--no-auto-create-topics`).",
    "socket.request.max.bytes": "Largest request frame; a larger size prefix closes the connection before any "
    "allocation.",
    "queued.max.requests": "Requests waiting on one connection before reading from it pauses (Kafka counts them "
    "across the broker).",
    "connections.max.idle.ms": "Close connections that sent nothing for this long.",
    "log.retention.check.interval.ms": "How often retention, time-based rolls and `flush.ms` are checked.",
    "log.flush.offset.checkpoint.interval.ms": "How often recovery points and log start offsets are checkpointed.",
    "log.cleaner.backoff.ms": "Pause between compaction passes.",
    "log.cleaner.enable": "Run the log cleaner for `cleanup.policy=compact` topics.",
    "fetch.max.bytes": "Cap on the records of one whole Fetch response.",
    "loosely.fetch.backlog.delay.ms": "loosely only (Kafka has none; 0 answers as Kafka does): hold a Fetch answer "
    "whose records stop short of the end of the log this long, so a librdkafka consumer reading a backlog slower "
    "than the broker answers does not fill `queued.min.messages` and pause until its next whole second (0-1000).",
    "offsets.topic.num.partitions": "Partitions of `__consumer_offsets` when it is first created.",
    "group.initial.rebalance.delay.ms": "Wait for more members before a new classic group's first rebalance "
    "(Kafka: 3000; 0 here so an embedded broker does not make tests wait).",
    "group.min.session.timeout.ms": "Smallest session timeout a classic group member may ask for.",
    "group.max.session.timeout.ms": "Largest session timeout a classic group member may ask for.",
    "group.consumer.session.timeout.ms": "Session timeout of KIP-848 consumer group members (a group's "
    "`consumer.session.timeout.ms` config overrides it).",
    "group.consumer.heartbeat.interval.ms": "Heartbeat interval given to KIP-848 consumer group members (a group's "
    "`consumer.heartbeat.interval.ms` config overrides it).",
    "group.consumer.min.session.timeout.ms": "Smallest `consumer.session.timeout.ms` a group config may set.",
    "group.consumer.max.session.timeout.ms": "Largest `consumer.session.timeout.ms` a group config may set.",
    "group.consumer.min.heartbeat.interval.ms": "Smallest `consumer.heartbeat.interval.ms` a group config may set.",
    "group.consumer.max.heartbeat.interval.ms": "Largest `consumer.heartbeat.interval.ms` a group config may set.",
    "group.consumer.migration.policy": "Online conversion of a group between the classic and the KIP-848 protocol: "
    "`bidirectional` (classic to consumer when a consumer-protocol member joins, and back when the last one leaves), "
    "`upgrade`, `downgrade` or `disabled`.",
    "group.streams.session.timeout.ms": "Session timeout of streams group members (a group's "
    "`streams.session.timeout.ms` config overrides it).",
    "group.streams.heartbeat.interval.ms": "Heartbeat interval given to streams group members (a group's "
    "`streams.heartbeat.interval.ms` config overrides it).",
    "group.streams.num.standby.replicas": "Standby replicas of each task of a streams group, on members of other "
    "processes (a group's `streams.num.standby.replicas` config overrides it).",
    "group.streams.assignment.interval.ms": "A streams group's assignment is computed at most this often; members "
    "changing meanwhile wait for the next (a group's `streams.assignment.interval.ms` config overrides it).",
    "group.streams.initial.rebalance.delay.ms": "How long a streams group without members waits for more before "
    "assigning (a group's `streams.initial.rebalance.delay.ms` config overrides it).",
    "group.share.heartbeat.interval.ms": "Heartbeat interval given to share group members (a group's "
    "`share.heartbeat.interval.ms` config overrides it).",
    "group.share.session.timeout.ms": "Session timeout of share group members (a group's `share.session.timeout.ms` "
    "config overrides it).",
    "group.share.record.lock.duration.ms": "How long a share group member holds a record it fetched before it goes "
    "to another (a group's `share.record.lock.duration.ms` config overrides it).",
    "group.share.min.record.lock.duration.ms": "Smallest `share.record.lock.duration.ms` a group config may set.",
    "group.share.max.record.lock.duration.ms": "Largest `share.record.lock.duration.ms` a group config may set.",
    "group.share.delivery.count.limit": "Deliveries of a record to a share group before it is archived (a group's "
    "`share.delivery.count.limit` config overrides it).",
    "group.share.min.delivery.count.limit": "Smallest `share.delivery.count.limit` a group config may set.",
    "group.share.max.delivery.count.limit": "Largest `share.delivery.count.limit` a group config may set.",
    "group.share.partition.max.record.locks": "Records of one partition a share group has in flight at most (a "
    "group's `share.partition.max.record.locks` config overrides it).",
    "group.share.min.partition.max.record.locks": "Smallest `share.partition.max.record.locks` a group config may "
    "set.",
    "group.share.max.partition.max.record.locks": "Largest `share.partition.max.record.locks` a group config may set.",
    "offsets.retention.minutes": "How long committed offsets of an empty group are kept.",
    "transaction.max.timeout.ms": "Largest transaction timeout a producer may ask for.",
    "transactional.id.expiration.ms": "Forget a transactional id unused for this long.",
    "producer.id.expiration.ms": "Forget an idempotent producer's state after this long without writes.",
    "authorizer.class.name": "`org.apache.kafka.metadata.authorizer.StandardAuthorizer` turns ACLs on with Kafka's "
    "semantics (the old `kafka.security.authorizer.AclAuthorizer` name means the same; any other class is refused). "
    "ACLs are kept in `acls.json` in the data directory. See docs/broker.md, Authorization (ACLs).",
    "super.users": "Principals allowed everything whatever the ACLs say, separated by semicolons "
    "(`User:admin;User:ops`).",
    "allow.everyone.if.no.acl.found": "With an authorizer: allow an action on a resource no ACL matches at all "
    "(an ACL for anyone on the resource, or a prefix or `*` covering it, closes it to everyone else).",
    "queued.max.request.bytes": "Bytes of requests read but not yet handled, across all connections; above it every "
    "connection stops reading until handled requests make room (Kafka's default is unbounded, -1; -1 or 0 here too).",
    "max.connections": "Connections at once; past it new clients wait in the listen backlog until one closes, as in "
    "Kafka.",
    "max.connections.per.ip": "Connections from one IP address; one over it is closed at once.",
    "max.connection.creation.rate": "New connections a second, on all listeners together, measured as client quotas "
    "are (`quota.window.*`); over it the broker waits before accepting the next (at most one quota window), as "
    "Kafka's acceptor does. `listener.name.<listener>.max.connection.creation.rate` sets one listener's own limit. "
    "Kafka exempts its inter-broker listener from the broker-wide limit; loosely has none, so it limits every "
    "listener.",
    "max.connections.per.ip.overrides": "Per-address exceptions, `IP:N,IP:N` (IP addresses only; Kafka also takes "
    "host names).",
    "loosely.request.receive.timeout.ms": "loosely only: close a connection whose request has not fully arrived this "
    "long after its first byte (slow or stalled clients; Kafka relies on connections.max.idle.ms).",
    "socket.listen.backlog.size": "The listen socket's backlog (pending connections the kernel queues).",
    "log.scrub.bytes.per.second": "loosely only (Kafka has none): bytes of closed segments the background scrubber "
    "re-reads and CRC-checks per second, to find damage that appears after a clean start; 0 turns it off.",
    "sasl.enabled.mechanisms": "SASL mechanisms a SASL listener offers, from PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and "
    "OAUTHBEARER (unsecured tokens, development only). Kafka's default, GSSAPI, is refused (loosely has no "
    "Kerberos); unset, loosely offers the first three.",
    "sasl.oauthbearer.jwks.endpoint.url": "KIP-768: where the OAUTHBEARER validator gets its keys, a `file:` or "
    "`http(s):` URL (read at start, where failing stops the start; fetched in a worker thread with a 10 s timeout). "
    "Used by listeners whose `listener.name.<l>.oauthbearer.sasl.server.callback.handler.class` is "
    "OAuthBearerValidatorCallbackHandler. Kafka 4 also needs the URL in the `org.apache.kafka.sasl.oauthbearer."
    "allowed.urls` system property; loosely needs no such switch.",
    "sasl.oauthbearer.jwks.endpoint.refresh.ms": "How often the JWKS is reloaded; a failed reload keeps the old keys.",
    "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms": "A token with an unknown `kid` is refused and reloads the "
    "JWKS at once, at most once per this interval.",
    "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms": "Accepted for compatibility (Kafka's cap on its growing "
    "retry backoff; loosely retries at a fixed backoff).",
    "sasl.oauthbearer.expected.audience": "Comma-separated audiences; a token's `aud` must hold one of them. Unset, "
    "a token that has an `aud` is refused (as by Kafka's jose4j validator).",
    "sasl.oauthbearer.expected.issuer": "A token's `iss` must equal it (unset: not checked).",
    "sasl.oauthbearer.sub.claim.name": "The claim naming the principal (`User:<value>`).",
    "sasl.oauthbearer.scope.claim.name": "The claim holding the token's scopes (kept with the token; neither Kafka's "
    "validator nor loosely checks them).",
    "sasl.oauthbearer.clock.skew.seconds": "Slack allowed on `nbf` (as Kafka 4.1.1: none on `exp`; a future `iat` "
    "before `exp` is accepted).",
    "sasl.oauthbearer.jwt.validator.class": "BrokerJwtValidator or DefaultJwtValidator: loosely verifies signatures "
    "with either (Kafka 4.1's DefaultJwtValidator, built by the callback handler, does not; docs/broker.md). "
    "ClientJwtValidator is refused.",
    "delegation.token.secret.key": "The key of delegation tokens' HMACs (a password: never printed nor "
    "described). Unset, delegation tokens are disabled (DELEGATION_TOKEN_AUTH_DISABLED). Keep it across restarts: "
    "a new key invalidates every token.",
    "delegation.token.max.lifetime.ms": "Longest life of a delegation token; a client may ask for less at creation.",
    "delegation.token.expiry.time.ms": "A delegation token expires this long after its creation or last renewal "
    "(never past its max lifetime); also the longest renewal.",
    "delegation.token.expiry.check.interval.ms": "How often expired delegation tokens are removed.",
    "connections.max.reauth.ms": "KIP-368: a SASL session lasts this long (told to the client, which re-authenticates "
    "in time); a request after that closes the connection. 0: sessions never expire.",
    "quota.window.num": "Client quotas (`kafka-configs --alter --add-config producer_byte_rate=...`) measure each "
    "client's rate over this many samples; a new client may burst `num - 1` windows' worth before it is throttled.",
    "quota.window.size.seconds": "The length of one client-quota sample.",
    "controller.quota.window.num": "`controller_mutation_rate` quotas let a client create or delete "
    "`num * size * rate` partitions at once (a token bucket that refills at the rate) before it is throttled.",
    "controller.quota.window.size.seconds": "The length of one controller-mutation-quota sample.",
    "connection.failed.authentication.delay.ms": "A failed SASL authentication is answered, and its connection "
    "closed, after this delay (it slows password guessing; other connections are not held up).",
    "loosely.allow.unauthenticated": "loosely only (also `--allow-unauthenticated`): let a listener that is not on "
    "loopback run without SASL or required client certificates; without it such a listener refuses to start.",
    "loosely.ssl.handshake.timeout.ms": "loosely only: close a connection whose TLS handshake has not finished this "
    "long after it was accepted (Kafka has no separate limit).",
    "loosely.client.telemetry.enable": "loosely only: advertise GetTelemetrySubscriptions and PushTelemetry (KIP-714) "
    "and export what clients push on the Prometheus endpoint as `loosely_client_*`. Kafka does so when "
    "`metric.reporters` names a ClientTelemetry reporter; by default loosely does when `--metrics-listen` is on. "
    "Either way both APIs are answered, as Kafka answers them (see docs/broker.md, \"Client telemetry\").",
    "telemetry.max.bytes": "The largest client telemetry push taken, compressed and decompressed "
    "(TELEMETRY_TOO_LARGE above it).",
}

# Listener and TLS settings (loosely.broker._listening, loosely.tls.settings): default, what it does.
LISTENER_SETTING_DOCS: Final[dict[str, tuple[str, str]]] = {
    "listeners": ("PLAINTEXT://127.0.0.1:9092", "`NAME://HOST:PORT,...`, one socket each; port 0 picks a free one, "
                  "an empty host means every interface. `--listen HOST:PORT` is shorthand for one PLAINTEXT listener "
                  "(not both). Kafka's default listens on every interface; loosely's on loopback."),
    "advertised.listeners": ("listeners", "What Metadata, FindCoordinator and DescribeCluster tell a client that "
                             "came in on that listener; a listener not named here advertises its own address (port 0: "
                             "the bound port)."),
    "controller.listener.names": ("(none)", "Listeners that belong to a KRaft controller quorum; loosely has none, so "
                                  "they are not opened (a copied KRaft server.properties works as is)."),
    "listener.security.protocol.map": ("PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
                                       "The security protocol of each listener name."),
    "ssl.keystore.type": ("PEM", "PEM only (Kafka's default is JKS; convert JKS and PKCS12 stores to PEM)."),
    "ssl.keystore.location": ("(none)", "PEM file holding the private key (PKCS#8) and the certificate chain. "
                              "Re-read when it changes (checked at most once a second, on new connections)."),
    "ssl.key.password": ("(none)", "Password of an encrypted private key."),
    "ssl.keystore.certificate.chain": ("(none)", "The certificate chain as inline PEM text, with `ssl.keystore.key`."),
    "ssl.keystore.key": ("(none)", "The private key as inline PEM text."),
    "ssl.truststore.type": ("PEM", "PEM only."),
    "ssl.truststore.location": ("(none)", "PEM file of CA certificates client certificates are checked against; "
                                "re-read when it changes."),
    "ssl.truststore.certificates": ("(none)", "The trusted CA certificates as inline PEM text."),
    "ssl.enabled.protocols": ("TLSv1.2,TLSv1.3", "TLS versions offered (TLSv1.2 and TLSv1.3 only)."),
    "ssl.client.auth": ("none", "`required`, `requested` or `none`: whether clients must present a certificate."),
    "ssl.principal.mapping.rules": ("DEFAULT", "`RULE:pattern/replacement/[LU]`, ..., `DEFAULT`: the principal name "
                                    "taken from a client certificate's subject DN, as Kafka's SslPrincipalMapper."),
}

# Defaults shown in Kafka's unit where BrokerConfig keeps another one.
_SHOWN_AS: Final[dict[str, tuple[str, int]]] = {"offsets.retention.minutes": ("offsets_retention_ms", 60_000)}


# Defaults that a field expresses another way (None: derived at start-up; a factory: empty).
_DEFAULT_TEXT: Final[dict[str, str]] = {
    "queued.max.request.bytes": "2 × socket.request.max.bytes",
    "max.connections.per.ip.overrides": "(none)",
    "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512 (Kafka: GSSAPI)",
    "sasl.oauthbearer.jwks.endpoint.url": "(none)",
    "sasl.oauthbearer.expected.audience": "(none)",
    "sasl.oauthbearer.expected.issuer": "(none)",
    "authorizer.class.name": "(none: no ACLs)",
    "super.users": "(none)",
    "delegation.token.secret.key": "(none: no delegation tokens)",
    "loosely.client.telemetry.enable": "(with --metrics-listen)",
}


def _broker_default(name: str, field_name: str) -> str:
    if name in _DEFAULT_TEXT:
        return _DEFAULT_TEXT[name]
    default = {f.name: f.default for f in dataclasses.fields(BrokerConfig)}[field_name]
    assert default is not dataclasses.MISSING and default is not None, f"{name}: say its default in _DEFAULT_TEXT"
    if name in _SHOWN_AS:
        assert isinstance(default, int)
        default //= _SHOWN_AS[name][1]
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)


def _other_values(c: ConfigDef) -> list[str]:
    """Valid values other than the default, to see whether the log notices a change."""
    candidates: list[str] = []
    if c.kind in ("long", "int"):
        n = int(c.default)
        candidates = [str(n + 1), str(n - 1), "1", "0", str(LONG_MAX)]
    elif c.kind == "double":
        candidates = ["0.25", "0.75"]
    elif c.kind == "boolean":
        candidates = ["false" if c.default == "true" else "true"]
    else:
        candidates = ["compact", "delete,compact", "gzip", "LogAppendTime", "CreateTime", "uncompressed"]
    out = []
    for v in candidates:
        if v == c.default:
            continue
        try:
            resolve_log_config({c.name: v}, {})
        except (InvalidConfigError, ValueError):
            continue
        if c.check is not None:
            try:
                c.check(v)
            except (InvalidConfigError, ValueError):
                continue
        out.append(v)
    return out


def honoured_topic_configs() -> set[str]:
    """Topic settings whose value changes the config the log runs with."""
    base = resolve_log_config({}, {})
    return {
        c.name for c in TOPIC_CONFIGS.values() if any(resolve_log_config({c.name: v}, {}) != base
                                                      for v in _other_values(c))
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


# Services `loosely broker` runs beside the broker, in the same process, as clients of it (command-line flags only).
SERVICE_FLAG_DOCS: dict[str, tuple[str, str]] = {
    "--metrics-listen HOST:PORT": ("off", "Serve Prometheus metrics on `http://HOST:PORT/metrics`."),
    "--schema-registry-listen HOST:PORT": ("off", "Serve a Confluent-compatible schema registry stored in this "
                                           "broker's `_schemas` (see docs/schema-registry.md)."),
    "--console-listen HOST:PORT": ("off", "Serve the web console (docs/console.md) for this broker; key searches "
                                   "use the broker's key index. Use a loopback address, or `--console-users-file`, "
                                   "unless the network is trusted."),
    "--console-read-only": ("false", "The console shows everything and changes nothing: creating and deleting "
                            "topics, producing and offset resets are refused."),
    "--console-hollow DIR-or-S3-URL": ("none", "A Hollow blob store for the console's Hollow pages."),
    "--console-views SINK-URL": ("none", "A views sink (e.g. `sqlite:///views.db`) for the console's views page: "
                                 "versions, state, lag, freshness, blue/green switch (repeatable)."),
    "--console-users-file FILE": ("none", "Require HTTP Basic auth from the SCRAM users in FILE (this broker's "
                                  "`<data-dir>/scram-credentials.json`; re-read when it changes)."),
    "--console-sample-interval-ms MS": ("5000", "How often the console samples the cluster for its charts "
                                        "(messages/s in and out, group lag)."),
    "--services-client-config FILE": ("none", "Kafka client properties (Java or librdkafka names) with which the "
                                      "console and the schema registry reach this broker: they use its first "
                                      "listener of that `security.protocol` (PLAINTEXT without them), so a broker "
                                      "with only SSL or SASL listeners can serve them (repeatable)."),
    "--services-config NAME=VALUE": ("none", "One such client setting, over the files' (repeatable)."),
}


def render() -> str:
    """docs/configuration.md."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the code (`python -m loosely.broker.config_doc > docs/configuration.md`); a test keeps it",
        "in sync. Names and defaults are Apache Kafka's unless the text says otherwise.",
        "",
        "## Broker settings",
        "",
        "Give them as `loosely broker --config NAME=VALUE` (repeatable) or in a properties file,",
        "`--config-file server.properties` (the command line wins). A name loosely does not know is reported",
        "(`ignoring unknown setting NAME`) and ignored, so a Kafka `server.properties` can be copied over.",
        "",
        "| setting | default | what it does |",
        "|---|---|---|",
    ]
    for name, (field_name, _) in sorted(BROKER_SETTINGS.items()):
        lines.append(f"| `{name}` | {_broker_default(name, field_name)} | {_cell(BROKER_SETTING_DOCS[name])} |")
    lines += [
        "",
        "SASL users: `listener.name.<listener>.plain.sasl.jaas.config` holds the PLAIN users of a listener in",
        "Kafka's JAAS syntax",
        "(`org.apache.kafka.common.security.plain.PlainLoginModule required user_alice=\"alice-secret\";`);",
        "the SCRAM users are kept salted in the data directory (`--add-scram`, `kafka-configs --alter`, `loosely",
        "users`). `sasl.mechanism.inter.broker.protocol` and `sasl.mechanism.controller.protocol` are accepted and",
        "ignored (one node: no inter-broker or controller connections).",
        "`listener.name.<listener>.sasl.enabled.mechanisms` sets one listener's mechanisms (over",
        "`sasl.enabled.mechanisms`); `listener.name.<listener>.oauthbearer.sasl.jaas.config` its OAUTHBEARER options.",
        "`listener.name.<listener>.oauthbearer.sasl.server.callback.handler.class` set to",
        "`org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler` makes a listener take",
        "signed JWTs checked against `sasl.oauthbearer.jwks.endpoint.url` (the unsecured validator's class sets it",
        "back).",
    ]
    lines += [
        "",
        "## Listener and TLS settings",
        "",
        "Kafka's names, through `--config` or `--config-file server.properties`. Every `ssl.*` setting may be given",
        "for one listener as `listener.name.<lowercase listener name>.ssl.*`, which wins over the plain name.",
        "See docs/broker.md, \"Listeners and TLS\".",
        "",
        "| setting | default | what it does |",
        "|---|---|---|",
    ]
    for name, (default, doc) in LISTENER_SETTING_DOCS.items():
        lines.append(f"| `{name}` | {_cell(default)} | {_cell(doc)} |")
    lines += [
        "",
        "## Services beside the broker",
        "",
        "Command-line flags of `loosely broker`; each service runs in the broker's process as a Kafka client of it.",
        "",
        "| flag | default | what it does |",
        "|---|---|---|",
    ]
    for flag, (default, doc) in SERVICE_FLAG_DOCS.items():
        lines.append(f"| `{flag}` | {_cell(default)} | {_cell(doc)} |")
    honoured = honoured_topic_configs()
    lines += [
        "",
        "## Topic settings",
        "",
        "Per topic with `loosely topics create -c NAME=VALUE`, `loosely topics alter` or any Kafka admin client;",
        "broker-wide defaults with `loosely broker --config BROKER-NAME=VALUE`, or at run time as dynamic broker",
        "configs (`kafka-configs --entity-type brokers --entity-default --alter --add-config BROKER-NAME=VALUE`;",
        "docs/broker.md). *Accepted* settings are stored and reported by DescribeConfigs so that Kafka tools keep",
        "working, and change nothing on a single node.",
        "",
        "| topic setting | broker default setting | type | default | effect | what it does |",
        "|---|---|---|---|---|---|",
    ]
    for c in sorted(TOPIC_CONFIGS.values(), key=lambda c: c.name):
        effect = "honoured" if c.name in honoured else "accepted"
        lines.append(
            f"| `{c.name}` | `{c.broker_name}` | {c.kind} | {_cell(c.default)} | {effect} | {_cell(c.doc)} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
