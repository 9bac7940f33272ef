"""``loosely kcat`` / ``produce`` / ``consume`` / ``metadata`` / ``query``: kcat's command line, flag for flag.

The same command line prints the same bytes on stdout and exits with the same code as Debian's kcat 1.7.1
(``tests/compat/test_cli_conformance.py`` runs both). Options are parsed like kcat's GNU ``getopt`` (options and
operands may be mixed; each option acts in order, so ``-t`` means a query partition only after ``-Q``). Errors
follow kcat: fatal ones print ``% ERROR: ...`` and exit 1, usage errors print ``Error: ...`` and the usage and
exit 1.

The package, one way down (an import-linter contract in pyproject.toml keeps it so):

- :mod:`._main`: the entry point; it picks the path for a parsed command line.
- :mod:`._native`: plain produce and consume over loosely's own client (:mod:`loosely.clients.fastpath`), which
  starts in milliseconds.
- :mod:`._rdkafka`: every other mode on librdkafka (confluent-kafka), imported only when it is needed because its
  import costs ~0.2 s of start-up.
- :mod:`._serdes`: ``-s`` deserializers on the librdkafka path: pack formats, and with ``-r`` Confluent-framed
  Avro (JSON Schema, Protobuf) decoded by :mod:`loosely.registry`, imported only for ``-s``.
- :mod:`._options`: options, the ``Conf`` both paths read, kcat's errors, the librdkafka configuration.
"""

from loosely.cli.kcat._main import main
from loosely.cli.kcat._options import Conf, Fatal, UsageError, parse_args

__all__ = ["Conf", "Fatal", "UsageError", "main", "parse_args"]
