"""DescribeConfigs and IncrementalAlterConfigs over a raw connection, for the config tests of several modules
(dynamic broker configs, group configs of share and streams groups), against loosely and Apache Kafka alike."""

from __future__ import annotations

import time

from kio.schema.describe_configs.v4.request import DescribeConfigsRequest, DescribeConfigsResource
from kio.schema.incremental_alter_configs.v1.request import (
    AlterableConfig,
    AlterConfigsResource,
    IncrementalAlterConfigsRequest,
)
from kio.static.primitive import i8

from broker._raw import Raw
from loosely.protocol.messages import ApiKey

# resource types, IncrementalAlterConfigs' operations, DescribeConfigs' sources, error codes
TOPIC, BROKER, GROUP = 2, 4, 32
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
DYNAMIC_BROKER, DYNAMIC_DEFAULT, STATIC_BROKER, DEFAULT, GROUP_CONFIG = 2, 3, 4, 5, 8
INVALID_REQUEST, INVALID_CONFIG = 42, 40


def describe(bootstrap: str, rtype: int, name: str, keys: tuple[str, ...]) -> dict[str, tuple[str | None, int, bool,
                                                                                               list[int]]]:
    """``config -> (value, source, read_only, synonym sources)``."""
    raw = Raw(bootstrap)
    try:
        resp = raw.request(ApiKey.DESCRIBE_CONFIGS, 4, DescribeConfigsRequest(
            resources=(DescribeConfigsResource(resource_type=i8(rtype), resource_name=name,
                                               configuration_keys=keys or None),),  # () asks for all
            include_synonyms=True, include_documentation=False))
    finally:
        raw.close()
    (result,) = resp.results  # type: ignore[attr-defined]
    assert (result.error_code, result.error_message) == (0, ""), result.error_message
    return {e.name: (e.value, e.config_source, e.read_only, [s.source for s in e.synonyms]) for e in result.configs}


def alter(bootstrap: str, name: str, ops: list[tuple[str, int, str | None]], *, validate_only: bool = False,
          rtype: int = BROKER) -> tuple[int, str | None]:
    raw = Raw(bootstrap)
    try:
        resp = raw.request(ApiKey.INCREMENTAL_ALTER_CONFIGS, 1, IncrementalAlterConfigsRequest(
            resources=(AlterConfigsResource(resource_type=i8(rtype), resource_name=name, configs=tuple(
                AlterableConfig(name=n, config_operation=i8(op), value=v) for n, op, v in ops)),),
            validate_only=validate_only))
    finally:
        raw.close()
    (r,) = resp.responses  # type: ignore[attr-defined]
    return r.error_code, r.error_message


def wait_for(bootstrap: str, rtype: int, name: str, key: str, value: str | None, source: int) -> None:
    deadline = time.monotonic() + 20
    while (seen := describe(bootstrap, rtype, name, (key,)).get(key, (None, 0))[:2]) != (value, source):
        assert time.monotonic() < deadline, f"{key} of {name!r} is {seen}, never ({value}, {source})"
        time.sleep(0.1)
