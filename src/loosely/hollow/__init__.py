"""Netflix Hollow, in Python and byte-identical with Java: :mod:`.core` (schema, blob format, read and write state
engines; it never imports :mod:`.api`) and :mod:`.api` (producer cycles, consumer refresh, blob stores and
announcements), and :mod:`.raw` above them (read-after-write Hollow over the log: writes through Kafka, reads from
memory).
"""

__all__ = ["api", "core", "raw"]
