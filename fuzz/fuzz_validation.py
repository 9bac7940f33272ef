"""Invariant: the produce validator returns a ValidBatch or raises ProtocolError (BatchRejected), never anything
else, and what it accepts decodes to exactly the records its header declares, with one key hash (for the storage
key index) per non-null key, which _recwalk.key_hashes and key_offsets agree with.

Inputs build a valid batch (random records and codec), overwrite a few of its bytes after the CRC, and recompute
the CRC, so every lie reaches the decompression and the record walk instead of stopping at the checksum.
"""

import struct
import sys

import atheris

with atheris.instrument_imports(include=["loosely"]):
    from loosely.protocol import _recwalk
    from loosely.protocol.compression import Codec, decompress
    from loosely.protocol.errors import ProtocolError
    from loosely.protocol.records import (
        BATCH_HEADER_BYTES,
        NewRecord,
        batch_crc,
        build_batch,
        decode_records,
        read_header,
    )
    from loosely.protocol.validation import ValidationPolicy, validate_client_batch

POLICY = ValidationPolicy(now_ms=1 << 41, max_message_bytes=1 << 20, decompressed_bytes_max=1 << 16, compacted=False)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    records = [
        NewRecord(
            fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 16)) if fdp.ConsumeBool() else None,
            fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64)) if fdp.ConsumeBool() else None,
            (1 << 41) + fdp.ConsumeIntInRange(-1000, 1000),
            tuple((fdp.ConsumeUnicodeNoSurrogates(4), fdp.ConsumeBytes(4)) for _ in range(fdp.ConsumeIntInRange(0, 2))),
        )
        for _ in range(fdp.ConsumeIntInRange(1, 8))
    ]
    batch = bytearray(build_batch(records, codec=Codec(fdp.ConsumeIntInRange(0, 4))))
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        batch[fdp.ConsumeIntInRange(21, len(batch) - 1)] = fdp.ConsumeInt(1) & 0xFF
    struct.pack_into(">I", batch, 17, batch_crc(batch, 0, len(batch)))
    try:
        header = read_header(batch)
        valid = validate_client_batch(batch, 0, header, POLICY, "t-0")
    except ProtocolError:
        return
    decoded = decode_records(batch, 0, header, 1 << 16)
    assert valid.records == header.records_count == len(decoded)
    keys = [r.key for r in decoded if r.key is not None]
    assert valid.key_hashes == b"".join(struct.pack("=Q", _recwalk.key_hash(k)) for k in keys)
    body = bytes(batch[BATCH_HEADER_BYTES:])
    section = decompress(header.codec, body, 1 << 16) if header.codec else body
    assert _recwalk.key_hashes(section, header.records_count) == valid.key_hashes
    for k in set(keys):
        assert [header.base_offset + d for d in _recwalk.key_offsets(section, header.records_count, k)] == [
            r.offset for r in decoded if r.key == k
        ]


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
