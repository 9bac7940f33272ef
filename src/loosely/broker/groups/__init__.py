"""Consumer groups: the classic membership protocol (pure), committed offsets, and the coordinator that runs both.

* :mod:`.classic`: the group state machine, ``step(group, event, now_ms)``.
* :mod:`.records`: the ``__consumer_offsets`` record formats (Kafka's own schemas).
* :mod:`.store`: committed offsets and group metadata in memory and in ``__consumer_offsets``.
* :mod:`.coordinator`: the asyncio shell the handlers call.
"""
