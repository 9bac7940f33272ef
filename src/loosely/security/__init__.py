"""Security without I/O: SASL mechanisms (PLAIN, SCRAM, OAUTHBEARER), the per-connection SASL state machine, the
credential store, and the ACL authorizer.

Everything here is synchronous and sans-IO (the broker's asyncio shell feeds it bytes and requests and acts on its
answers), so it sits beside storage on the import ladder and is tested without sockets.

* :mod:`.sasl`: one connection's SASL exchange; the mechanisms :mod:`.plain`, :mod:`.scram` and :mod:`.oauthbearer`
  (unsecured JWTs) with :mod:`.jwt` (signed JWTs checked against a JWKS); :mod:`.jaas`: ``sasl.jaas.config`` values.
* :mod:`.credentials`: the SCRAM credential store; :mod:`.passwords`: HTTP services' password checks against it;
  :mod:`.authorizer`: ACLs and their decisions; :mod:`.tokens`: delegation tokens (KIP-48), their rules and store.
"""

__all__ = [
    "authorizer",
    "credentials",
    "jaas",
    "jwt",
    "oauthbearer",
    "passwords",
    "plain",
    "sasl",
    "scram",
    "tokens",
]
