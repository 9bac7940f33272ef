"""Invariant: FrameReader yields frames or raises FrameError, whatever bytes and splits it is fed; the declared size
it reports before a frame (what the broker charges to queued.max.request.bytes) is that frame's length."""

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
            while True:
                declared = reader.pending_frame_bytes
                assert declared is None or 0 <= declared <= reader.frame_bytes_max
                frame = reader.next_frame()
                if frame is None:
                    break
                assert isinstance(frame, bytes) and len(frame) == declared
    except FrameError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
