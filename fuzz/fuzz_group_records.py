"""Invariant: whatever bytes a ``__consumer_offsets`` record or a classic member's embedded-protocol metadata carries,
the group coordinator's readers return a value or raise CorruptRecordError (ProtocolError for the embedded protocol),
never anything else: one bad record cannot stop the coordinator from loading, one bad JoinGroup cannot crash it. A
KIP-848 record that reads is folded into a group that rebuilds."""

import sys
import uuid

import atheris

with atheris.instrument_imports(include=["loosely"]):
    from loosely.broker.groups import consumer_records
    from loosely.broker.groups.consumer import ConsumerGroupLimits, TopicInfo
    from loosely.broker.groups.embedded import decode_assignment, decode_subscription
    from loosely.broker.groups.records import (
        ConsumerKey,
        GroupKey,
        OffsetKey,
        decode_group_value,
        decode_key,
        decode_offset_value,
    )
    from loosely.protocol.errors import CorruptRecordError, ProtocolError

TOPICS = {"t": TopicInfo(uuid.UUID(int=1), 2)}


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    which = fdp.ConsumeIntInRange(0, 2)
    if which == 0:
        blob = fdp.ConsumeBytes(512)
        try:
            decode_subscription(blob)
        except ProtocolError:
            pass
        try:
            decode_assignment(blob)
        except ProtocolError:
            pass
        return
    if which == 1:  # a well-formed KIP-848 key, any value
        kind = [3, 5, 6, 7, 8][fdp.ConsumeIntInRange(0, 4)]
        key = ConsumerKey(kind, "g", "m" if kind in (5, 7, 8) else None)
        value = fdp.ConsumeBytes(512) or None
    else:
        try:
            key = decode_key(fdp.ConsumeBytes(128))
        except CorruptRecordError:
            return
        value = fdp.ConsumeBytes(512) or None
    try:
        if isinstance(key, OffsetKey) and value is not None:
            decode_offset_value(value)
        elif isinstance(key, GroupKey) and value is not None:
            decode_group_value(value)
        elif isinstance(key, ConsumerKey):
            loaded: dict[str, consumer_records.LoadedGroup] = {}
            consumer_records.replay(loaded, key, value)
            for gid, g in loaded.items():
                consumer_records.rebuild(gid, g, ConsumerGroupLimits(), TOPICS, 0)
    except CorruptRecordError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
