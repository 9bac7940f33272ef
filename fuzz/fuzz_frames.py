"""Invariant: FrameReader yields frames or raises FrameError, whatever bytes and splits it is fed."""

import sys

import atheris

with atheris.instrument_imports(include=["loosely"]):
    from loosely.protocol.errors import FrameError
    from loosely.protocol.framing import FrameReader


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    reader = FrameReader(frame_bytes_max=fdp.ConsumeIntInRange(1, 1 << 16))
    try:
        while fdp.remaining_bytes():
            reader.feed(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64)))
            while (frame := reader.next_frame()) is not None:
                assert isinstance(frame, bytes)
    except FrameError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
