"""SaslHandshake and SaslAuthenticate outside authentication, and the SCRAM credential APIs.

On a SASL listener the connection's SASL gate (:mod:`loosely.broker._sasl`) answers SaslHandshake and
SaslAuthenticate while they authenticate. The handlers here see them only otherwise (on a PLAINTEXT listener, or
once authenticated by a client that cannot re-authenticate), and answer ILLEGAL_SASL_STATE as Kafka's KafkaApis
does.

DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554) read and change the credential store, with
the validation, error codes and messages of Kafka's ScramControlManager and ScramImage: an unknown user is
RESOURCE_NOT_FOUND, a user named twice DUPLICATE_RESOURCE, an unknown mechanism UNSUPPORTED_SASL_MECHANISM, fewer
than 4096 or more than 16384 iterations UNACCEPTABLE_CREDENTIAL. The client sends the salted password; the store
keeps only the keys derived from it. All accepted changes of one request are written in one atomic step.
"""

from __future__ import annotations

from loosely.broker.acls import allowed
from loosely.broker.context import BrokerContext, Request
from loosely.broker.handlers._util import NO_THROTTLE, Response, build
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import ApiKey, RequestHeader
from loosely.security.authorizer import CLUSTER_NAME, AclOperation, ResourceType
from loosely.security.credentials import CredentialStore
from loosely.security.scram import SCRAM_MECHANISMS, ScramCredential, credential_from_salted_password

__all__ = ["HANDLERS"]

_BY_TYPE = {m.type_id: m for m in SCRAM_MECHANISMS.values()}


async def handle_sasl_handshake(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    return Response.of(ApiKey.SASL_HANDSHAKE, header.api_version).make(
        error_code=ErrorCode.illegal_sasl_state, mechanisms=()
    )


async def handle_sasl_authenticate(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    return Response.of(ApiKey.SASL_AUTHENTICATE, header.api_version).make(
        error_code=ErrorCode.illegal_sasl_state,
        error_message="SaslAuthenticate request received after successful authentication",
        auth_bytes=b"",
    )


def _store(ctx: BrokerContext) -> CredentialStore:
    store = ctx.services["credentials"]
    assert isinstance(store, CredentialStore)
    return store


async def handle_describe(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    store = _store(ctx)
    resp = Response.of(ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, header.api_version)
    if not allowed(ctx, AclOperation.DESCRIBE, ResourceType.CLUSTER, CLUSTER_NAME):  # as Kafka's ControllerApis
        # Kafka answers one result per user asked for, the error without the user's name; for a request for
        # every user (a null list) Kafka 4.1.1 sends no answer at all, loosely the error with no results
        refused = build(resp.DescribeUserScramCredentialsResult, user="",
                        error_code=ErrorCode.cluster_authorization_failed, error_message=None, credential_infos=())
        return resp.make(throttle_time=NO_THROTTLE, error_code=ErrorCode.cluster_authorization_failed,
                         error_message=None, results=(refused,) * len(request.users or ()))
    names = [u.name for u in request.users or ()]
    wanted: dict[str, bool] = {}  # user -> named more than once
    for n in names or list(store.users()):
        wanted[n] = n in wanted
    results = []
    for user, twice in wanted.items():
        infos = [
            build(resp.CredentialInfo, mechanism=SCRAM_MECHANISMS[m].type_id, iterations=c.iterations)
            for m, c in sorted(store.mechanisms(user).items())
        ]
        code, message = ErrorCode.none, ""  # Kafka's schema default, as for the top-level message below
        if twice:
            code, infos = ErrorCode.duplicate_resource, []
            message = f"Cannot describe SCRAM credentials for the same user twice in a single request: {user}"
        elif not infos:
            code, message = (
                ErrorCode.resource_not_found,
                f"Attempt to describe a user credential that does not exist: {user}",
            )
        results.append(
            build(
                resp.DescribeUserScramCredentialsResult,
                user=user,
                error_code=code,
                error_message=message,
                credential_infos=tuple(infos),
            )
        )
    # "" where Kafka leaves the field at its schema default (a non-null string), null where Kafka sets null
    return resp.make(throttle_time=NO_THROTTLE, error_code=ErrorCode.none, error_message="", results=tuple(results))


def _check(name: str, mechanism: int) -> tuple[ErrorCode, str] | None:
    if not name:
        return ErrorCode.unacceptable_credential, "Username must not be empty"
    if mechanism not in _BY_TYPE:
        return ErrorCode.unsupported_sasl_mechanism, "Unknown SCRAM mechanism"
    return None


async def handle_alter(ctx: BrokerContext, header: RequestHeader, request: Request) -> object:
    store = _store(ctx)
    if not allowed(ctx, AclOperation.ALTER, ResourceType.CLUSTER, CLUSTER_NAME):  # every user refused, as Kafka
        resp = Response.of(ApiKey.ALTER_USER_SCRAM_CREDENTIALS, header.api_version)
        users = dict.fromkeys(u.name for u in (*request.deletions, *request.upsertions))
        return resp.make(throttle_time=NO_THROTTLE, results=tuple(
            build(resp.AlterUserScramCredentialsResult, user=n, error_code=ErrorCode.cluster_authorization_failed,
                  error_message=None) for n in users))
    errors: dict[str, tuple[ErrorCode, str]] = {}
    deletions: dict[str, str] = {}
    upserts: dict[str, tuple[str, ScramCredential]] = {}
    twice = ErrorCode.duplicate_resource, "A user credential cannot be altered twice in the same request"
    for d in request.deletions:
        if d.name in errors:
            continue
        if deletions.pop(d.name, None) is not None:
            errors[d.name] = twice
        elif (bad := _check(d.name, d.mechanism)) is not None:
            errors[d.name] = bad
        elif store.get(d.name, _BY_TYPE[d.mechanism].name) is None:
            errors[d.name] = ErrorCode.resource_not_found, "Attempt to delete a user credential that does not exist"
        else:
            deletions[d.name] = _BY_TYPE[d.mechanism].name
    for u in request.upsertions:
        if u.name in errors:
            continue
        if deletions.pop(u.name, None) is not None or upserts.pop(u.name, None) is not None:
            errors[u.name] = twice
        elif (bad := _check(u.name, u.mechanism)) is not None:
            errors[u.name] = bad
        elif u.iterations < (m := _BY_TYPE[u.mechanism]).iterations_min:
            errors[u.name] = ErrorCode.unacceptable_credential, "Too few iterations"
        elif u.iterations > m.iterations_max:
            errors[u.name] = ErrorCode.unacceptable_credential, "Too many iterations"
        else:
            upserts[u.name] = m.name, credential_from_salted_password(m, u.salt, u.salted_password, u.iterations)
    changes: list[tuple[str, str, ScramCredential | None]] = [(n, m, None) for n, m in deletions.items()]
    changes += [(n, m, c) for n, (m, c) in upserts.items()]
    if changes:
        store.apply(changes)
    resp = Response.of(ApiKey.ALTER_USER_SCRAM_CREDENTIALS, header.api_version)
    results = [
        build(resp.AlterUserScramCredentialsResult, user=n, error_code=ErrorCode.none, error_message=None)
        for n in [*deletions, *upserts]
    ]
    results += [
        build(resp.AlterUserScramCredentialsResult, user=n, error_code=code, error_message=message)
        for n, (code, message) in errors.items()
    ]
    return resp.make(throttle_time=NO_THROTTLE, results=tuple(results))


HANDLERS = {
    ApiKey.SASL_HANDSHAKE: handle_sasl_handshake,
    ApiKey.SASL_AUTHENTICATE: handle_sasl_authenticate,
    ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS: handle_describe,
    ApiKey.ALTER_USER_SCRAM_CREDENTIALS: handle_alter,
}
