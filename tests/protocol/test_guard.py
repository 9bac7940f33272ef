"""The request shape guard accepts every well-formed request (walking to exactly its end) and refuses counts that
cannot fit before kio would allocate for them."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.serial import entity_writer
from kio.static.primitive import Records

from loosely.protocol.errors import ProtocolError
from loosely.protocol.guard import check_entity
from loosely.protocol.messages import SUPPORTED_VERSIONS, load_request_schema

st.register_type_strategy(Records, st.binary(max_size=40).map(Records))  # type: ignore[arg-type]

CASES = [
    (key, version)
    for key, (lo, hi) in sorted(SUPPORTED_VERSIONS.items())
    for version in range(lo, hi + 1)
    if not (key == 0 and version < 3)
]


def encode(cls: type, value: object) -> bytes:
    buf = io.BytesIO()
    entity_writer(cls)(buf, value)
    return buf.getvalue()


@pytest.mark.parametrize(("key", "version"), CASES)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_well_formed_request_walks_to_its_end(key: int, version: int, data: st.DataObject) -> None:
    cls = load_request_schema(key, version)
    value = data.draw(st.from_type(cls))
    frame = encode(cls, value)
    assert check_entity(cls, frame) == len(frame)
    # And any truncation is refused rather than read past the end.
    if frame:
        cut = data.draw(st.integers(0, len(frame) - 1))
        try:
            check_entity(cls, frame[:cut])
        except ProtocolError:
            pass
        else:
            pytest.fail("a truncated request passed the guard")  # every field consumes at least one byte


def test_compact_array_count_that_cannot_fit_is_refused() -> None:
    cls = load_request_schema(3, 12)
    with pytest.raises(ProtocolError, match="cannot fit"):
        check_entity(cls, bytes.fromhex("ffffffff62") + b"\x00\x00\x00")
