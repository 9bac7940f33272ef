"""Invariant: a SASL session answers any sequence of client tokens with a result, for every mechanism, and never
raises (a bad token is SASL_AUTHENTICATION_FAILED, not an exception in the broker)."""

import sys

import atheris

with atheris.instrument_imports(include=["loosely"]):
    from loosely.security.sasl import MECHANISMS_SUPPORTED, Phase, SaslSession, SaslSettings
    from loosely.security.scram import SCRAM_MECHANISMS, credential_from_password

CREDS = {m: credential_from_password(SCRAM_MECHANISMS[m], "pw", 4096, b"salt") for m in SCRAM_MECHANISMS}
SETTINGS = SaslSettings(
    mechanisms=MECHANISMS_SUPPORTED,
    plain_users={"u": "pw"},
    scram=lambda user, mech: CREDS[mech] if user == "u" else None,
)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    session = SaslSession(SETTINGS)
    mechanism = MECHANISMS_SUPPORTED[fdp.ConsumeIntInRange(0, len(MECHANISMS_SUPPORTED) - 1)]
    session.handshake(mechanism, 1)
    for _ in range(fdp.ConsumeIntInRange(1, 3)):
        if session.phase is not Phase.AUTHENTICATE:
            break
        first = b"n,,n=u,r=" if fdp.ConsumeBool() else b""  # reach the second SCRAM step often
        token = first + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200))
        result = session.authenticate(token, 1, 0, 1_800_000_000_000)
        if result.error_code:
            break


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
