"""The examples in the views' docstrings run and print what they say."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import loosely.views

MODULES = sorted(m.name for m in pkgutil.iter_modules(loosely.views.__path__, "loosely.views."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_every_public_module_has_an_example() -> None:
    without = [n for n in MODULES if not doctest.DocTestFinder().find(importlib.import_module(n))
               or all(not t.examples for t in doctest.DocTestFinder().find(importlib.import_module(n)))]
    assert without == ["loosely.views._sql"], without
