"""The examples in hollow.raw's docstrings run and print what they say (the package's runs on a broker)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import loosely.hollow.raw

MODULES = ["loosely.hollow.raw", *sorted(m.name for m in pkgutil.iter_modules(loosely.hollow.raw.__path__,
                                                                             "loosely.hollow.raw."))]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
