"""Consumer groups: both membership protocols (pure), committed offsets, and the coordinator that runs them.

* :mod:`.classic`: the classic group state machine, ``step(group, event, now_ms)``.
* :mod:`.consumer`: the KIP-848 consumer group state machine (ConsumerGroupHeartbeat), and its shell
  :mod:`.consumer_shell`.
* :mod:`.migration`: online conversion between the two protocols (KIP-848's upgrade and downgrade), and
  :mod:`.embedded`: the consumer embedded protocol classic members speak inside a consumer group.
* :mod:`.records`: the ``__consumer_offsets`` record formats (Kafka's own schemas), and :mod:`.consumer_records`:
  KIP-848 consumer groups written as Kafka writes them, so their membership survives a restart.
* :mod:`.store`: committed offsets and group metadata in memory and in ``__consumer_offsets``.
* :mod:`.coordinator`: the asyncio shell the handlers call.
* :mod:`.share`: share groups (KIP-932), membership and record states (pure), and :mod:`.share_shell`: their
  sessions, timers and state file.
* :mod:`.streams`: streams groups (KIP-1071), topology, task assignment and membership (pure), and
  :mod:`.streams_shell`: their internal topics and timers.
"""

__all__ = [
    "classic",
    "consumer",
    "consumer_records",
    "consumer_shell",
    "coordinator",
    "embedded",
    "migration",
    "records",
    "share",
    "share_shell",
    "store",
    "streams",
    "streams_shell",
]
