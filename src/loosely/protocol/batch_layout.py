"""The record batch v2 header's layout (documented in :mod:`loosely.protocol.records`), in a module that imports
nothing but :mod:`struct`.

The command line's native paths (:mod:`loosely.clients.fastpath`) read and write batch headers and must start
fast; :mod:`loosely.protocol.records` brings the codecs and CRC-32C with it. Both take the layout from here, so it
is declared once.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = [
    "ATTRIBUTES_AT",
    "BATCH_HEADER",
    "BATCH_HEADER_BYTES",
    "CODEC_MASK",
    "CONTROL_BIT",
    "CONTROL_KEY",
    "CONTROL_VALUE",
    "CRC_AT",
    "DELETE_HORIZON_BIT",
    "LEADER_EPOCH_AT",
    "LOG_OVERHEAD",
    "MAGIC_AT",
    "MAGIC_V2",
    "MAX_TIMESTAMP_AT",
    "TIMESTAMP_TYPE_BIT",
    "TRANSACTIONAL_BIT",
    "ControlType",
]

# baseOffset, batchLength, partitionLeaderEpoch, magic, crc, attributes, lastOffsetDelta, baseTimestamp,
# maxTimestamp, producerId, producerEpoch, baseSequence, recordsCount
BATCH_HEADER: Final = struct.Struct(">qiibIhiqqqhii")
BATCH_HEADER_BYTES: Final = 61
assert BATCH_HEADER.size == BATCH_HEADER_BYTES

# baseOffset + batchLength: the bytes before batchLength starts counting.
LOG_OVERHEAD: Final = 12
MAGIC_V2: Final = 2
LEADER_EPOCH_AT: Final = 12
MAGIC_AT: Final = 16
CRC_AT: Final = 17
ATTRIBUTES_AT: Final = 21  # the CRC covers the batch from here to its end
MAX_TIMESTAMP_AT: Final = 35
assert struct.calcsize(">qiib") == CRC_AT and struct.calcsize(">qiibIhiqq") == MAX_TIMESTAMP_AT + 8

CODEC_MASK: Final = 0x07
TIMESTAMP_TYPE_BIT: Final = 0x08  # 1 = LogAppendTime
TRANSACTIONAL_BIT: Final = 0x10
CONTROL_BIT: Final = 0x20
DELETE_HORIZON_BIT: Final = 0x40


# A control record's key (version, type) and value (version, coordinator epoch).
CONTROL_KEY: Final = struct.Struct(">hh")
CONTROL_VALUE: Final = struct.Struct(">hi")
assert (CONTROL_KEY.size, CONTROL_VALUE.size) == (4, 6)


class ControlType:
    """The type in a control record's key (a transaction marker)."""

    ABORT: Final = 0
    COMMIT: Final = 1
