"""loosely.registry's docstring examples run (its public surface is pinned in tests/test_public_api.py)."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["loosely.registry", "loosely.registry._group", "loosely.registry._records",
                                  "loosely.registry._state", "loosely.registry._types", "loosely.registry._decode",
                                  "loosely.testing.embedded"])
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0, result


def test_registry_url_fixture_serves_a_registry(registry_url: str) -> None:
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    client = SchemaRegistryClient({"url": registry_url})
    assert client.register_schema("fixture-value", Schema('"string"', "AVRO")) == 1
    assert client.get_subjects() == ["fixture-value"]


def test_embedded_broker_with_a_schema_registry() -> None:
    import json
    import urllib.request

    from loosely.testing import embedded_broker

    with embedded_broker(schema_registry=True) as broker, urllib.request.urlopen(
            f"{broker.registry_url}/schemas/types") as r:
        assert json.loads(r.read()) == ["AVRO", "JSON", "PROTOBUF"]


def test_the_docs_python_example_runs_and_prints_what_it_says(tmp_path) -> None:
    import re
    import subprocess
    import sys
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "schema-registry.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert blocks
    for block in blocks:
        promised = [line.split("#", 1)[1].strip() for line in block.splitlines()
                    if line.strip().startswith("print(") and "#" in line]
        r = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                           check=False)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == promised
