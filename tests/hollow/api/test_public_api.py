"""The public names of loosely.hollow.api resolve and are documented (pinned in tests/test_public_api.py)."""

from __future__ import annotations

from loosely.hollow import api


def test_every_public_name_resolves() -> None:
    for name in api.__all__:
        assert getattr(api, name) is not None, name


def test_classes_and_functions_are_documented() -> None:
    for name in api.__all__:
        obj = getattr(api, name)
        if isinstance(obj, type) and obj.__module__.startswith("loosely.hollow.api"):
            assert obj.__doc__, f"{name} has no docstring"
