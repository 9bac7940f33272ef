"""Helpers shared by the handlers: version-specific response classes and common values."""

from __future__ import annotations

import datetime
import functools
import sys
from typing import Final

from loosely.protocol.errors import ErrorCode
from loosely.protocol.messages import build, response_class

__all__ = ["NO_THROTTLE", "Response", "build", "err", "ms"]

NO_THROTTLE: Final = datetime.timedelta(0)


def ms(n: int) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=n)


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
