"""The examples in hollow.api's docstrings run and print what they say."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import loosely.hollow.api

MODULES = sorted(m.name for m in pkgutil.iter_modules(loosely.hollow.api.__path__, "loosely.hollow.api."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_modules_with_public_classes_have_examples() -> None:
    finder = doctest.DocTestFinder()
    without = [n for n in MODULES if not any(t.examples for t in finder.find(importlib.import_module(n)))]
    assert without == [
        "loosely.hollow.api._interfaces",  # protocols only
        "loosely.hollow.api._kafka",  # needs a broker: tests/compat/hollow/test_api_kafka.py
        "loosely.hollow.api._paths",
        "loosely.hollow.api._planning",
        "loosely.hollow.api._s3",  # needs an S3 server: tests/compat/hollow/test_api_s3.py
    ]
