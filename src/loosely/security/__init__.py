"""Security logic with no I/O: the ACL authorizer (and SASL mechanisms), called by the asyncio broker shell."""
