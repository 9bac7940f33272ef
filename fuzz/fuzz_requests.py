"""Invariant: decode_request returns a value or raises ProtocolError for any frame, for every API we serve."""

import contextlib
import struct
import sys

import atheris

with atheris.instrument_imports(include=["loosely"]):
    from loosely.protocol.errors import ProtocolError
    from loosely.protocol.messages import SUPPORTED_VERSIONS, decode_request

APIS = sorted(SUPPORTED_VERSIONS)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    key = APIS[fdp.ConsumeIntInRange(0, len(APIS) - 1)]
    lo, hi = SUPPORTED_VERSIONS[key]
    version = fdp.ConsumeIntInRange(lo, hi)
    frame = struct.pack(">hhi", key, version, 1) + fdp.ConsumeBytes(fdp.remaining_bytes())
    with contextlib.suppress(ProtocolError):
        decode_request(frame)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
