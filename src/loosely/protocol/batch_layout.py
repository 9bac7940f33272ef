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
    "CRC_AT",
    "DELETE_HORIZON_BIT",
    "LOG_OVERHEAD",
    "MAGIC_V2",
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
CRC_AT: Final = 17
ATTRIBUTES_AT: Final = 21  # the CRC covers the batch from here to its end

CODEC_MASK: Final = 0x07
TIMESTAMP_TYPE_BIT: Final = 0x08  # 1 = LogAppendTime
TRANSACTIONAL_BIT: Final = 0x10
CONTROL_BIT: Final = 0x20
DELETE_HORIZON_BIT: Final = 0x40


class ControlType:
    """The type in a control record's key (a transaction marker)."""

    ABORT: Final = 0
    COMMIT: Final = 1
