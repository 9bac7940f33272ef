"""Invariant: the record batch decoders return values or raise ProtocolError, never anything else.

Half the inputs are raw bytes; the other half build a valid batch (random records and codec) from the input and
then overwrite a few of its bytes, so the fuzzer reaches deep into the record and codec decoders.
"""

import sys

import atheris

with atheris.instrument_imports(include=["loosely"]):
    from loosely.protocol.compression import Codec
    from loosely.protocol.errors import ProtocolError
    from loosely.protocol.records import NewRecord, build_batch, check_batch_crc, decode_records, iter_batches


def _batch_from(fdp: atheris.FuzzedDataProvider) -> bytes:
    records = []
    for _ in range(fdp.ConsumeIntInRange(1, 8)):
        key = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 16)) if fdp.ConsumeBool() else None
        value = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64)) if fdp.ConsumeBool() else None
        headers = tuple(
            (fdp.ConsumeUnicodeNoSurrogates(4), fdp.ConsumeBytes(4)) for _ in range(fdp.ConsumeIntInRange(0, 2))
        )
        records.append(NewRecord(key, value, fdp.ConsumeIntInRange(0, 1 << 42), headers))
    batch = bytearray(build_batch(records, codec=Codec(fdp.ConsumeIntInRange(0, 4))))
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        batch[fdp.ConsumeIntInRange(0, len(batch) - 1)] = fdp.ConsumeInt(1) & 0xFF
    return bytes(batch)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    blob = _batch_from(fdp) if fdp.ConsumeBool() else fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        for pos, header in iter_batches(blob, allow_partial_tail=True):
            try:
                check_batch_crc(blob, pos, header)
            except ProtocolError:
                pass  # still decode: the cleaner and tools see batches whose CRC they did not check
            decode_records(blob, pos, header, 1 << 20)
    except ProtocolError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
