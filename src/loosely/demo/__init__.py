"""The talk's system, running: ``loosely demo``'s services on the embedded broker.

A write service that only appends to the log, read sides that are views of it (full-text search, JSON documents
with a page that reads them, Prometheus metrics, Hollow lookups from memory), and the talk's scenarios: a
partition during which reads keep answering and writes fail clearly, and a blue/green rebuild while reads go on.
:class:`Demo` composes them; ``loosely demo`` (:mod:`loosely.cli.demo`) is the command line around it.
"""

from loosely.demo._catalog import Catalog, ChangeStream, movie_document
from loosely.demo._reads import DocumentSite, HollowReader
from loosely.demo._system import Demo, DemoConfig

__all__ = ["Catalog", "ChangeStream", "Demo", "DemoConfig", "DocumentSite", "HollowReader", "movie_document"]
