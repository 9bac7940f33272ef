"""Helpers shared by the handlers: version-specific response classes and common values."""

from __future__ import annotations

import datetime
import functools
import sys
from typing import Final

from loosely.broker.context import BrokerContext, current_principal, current_request_time
from loosely.broker.quotas import quota_user
from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import build, response_class

__all__ = ["NO_THROTTLE", "Response", "build", "charge_request_time", "err", "ms"]

NO_THROTTLE: Final = datetime.timedelta(0)


def ms(n: int) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=n)


def charge_request_time(ctx: BrokerContext, client_id: str | None) -> int:
    """Record the handling time of the current request so far against the client's ``request_percentage`` (once per
    request); the throttle it earns (0: none). The dispatcher calls it after the handler; a Fetch calls it before
    answering, since a throttled Fetch is answered empty (Kafka's handleFetchRequest)."""
    timer = current_request_time.get()
    if ctx.quotas is None or timer is None or timer.charged:
        return 0
    timer.charged = True
    return ctx.quotas.request_throttle_ms(quota_user(current_principal.get()), client_id or "", timer.handling_ns())


def err(code: int | ErrorCode) -> ErrorCode:
    return code if isinstance(code, ErrorCode) else ErrorCode(code)


class Response:
    """The response class of one (api_key, version) and its nested classes, by name."""

    __slots__ = ("cls", "module", "version")

    def __init__(self, api_key: int, version: int) -> None:
        self.cls = response_class(api_key, version)
        self.module = sys.modules[self.cls.__module__]
        self.version = version

    def __getattr__(self, name: str) -> type[object]:
        found = getattr(self.module, name)
        assert isinstance(found, type)
        return found

    def make(self, **values: object) -> object:
        return build(self.cls, **values)

    @staticmethod
    @functools.cache
    def of(api_key: int, version: int) -> Response:
        return Response(api_key, version)
