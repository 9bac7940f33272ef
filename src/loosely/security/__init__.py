"""Security without I/O: SASL mechanisms (PLAIN, SCRAM), the per-connection SASL state machine, the credential store.

Everything here is synchronous and sans-IO (the broker's asyncio shell feeds it bytes and acts on its answers), so
it sits beside storage on the import ladder and is tested without sockets.
"""
