"""Configs kept per name in one JSON file of the data directory: what group configs and client metrics
subscriptions share.

The file is ``{"version": 1, "<section>": {"<name>": {"<config>": "<value>", ...}}}``, rewritten whole and
atomically (temporary file, fsync, rename) before a change counts, read back at start; a name whose configs are all
deleted is dropped. A file that does not read back is an error naming it, never silently an empty store.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Final

from loosely.storage.fs import FileSystem

__all__ = ["NamedConfigs"]

FORMAT_VERSION: Final = 1


class NamedConfigs:
    """Each name's configs, loaded from and saved to ``<data_dir>/<file_name>`` (one event-loop thread)."""

    def __init__(self, fs: FileSystem, data_dir: str, file_name: str, section: str) -> None:
        self._fs = fs
        self._section = section
        self.path = os.path.join(data_dir, file_name)
        self.entries: dict[str, dict[str, str]] = {}
        if fs.exists(self.path):
            try:
                self.entries = self._decode(fs.read_file(self.path))
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                raise ValueError(f"{self.path} is damaged ({e}); fix or remove it") from None

    def of(self, name: str) -> Mapping[str, str]:
        return self.entries.get(name, {})

    def replace(self, name: str, props: Mapping[str, str]) -> None:
        """Make ``props`` the name's whole config (none: drop it), durable before it counts (an OSError propagates,
        nothing changes)."""
        entries = {n: dict(c) for n, c in self.entries.items()}
        entries[name] = dict(props)
        if not props:
            del entries[name]
        data = self._encode(entries)
        assert self._decode(data) == entries  # what is about to be durable reads back as what we mean
        self._fs.write_atomic(self.path, data)
        self.entries = entries

    def _encode(self, entries: Mapping[str, Mapping[str, str]]) -> bytes:
        doc = {"version": FORMAT_VERSION,
               self._section: {n: dict(sorted(c.items())) for n, c in sorted(entries.items())}}
        return json.dumps(doc, indent=1).encode()

    def _decode(self, data: bytes) -> dict[str, dict[str, str]]:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
            raise ValueError(f"expected {{'version': {FORMAT_VERSION}, '{self._section}': {{...}}}}")
        return {str(n): {str(k): str(v) for k, v in c.items()} for n, c in doc[self._section].items()}
