"""The public names of loosely.hollow.core resolve and are documented (pinned in tests/test_public_api.py)."""

from __future__ import annotations

from loosely.hollow import core


def test_every_public_name_resolves_and_is_documented() -> None:
    for name in core.__all__:
        obj = getattr(core, name)
        assert obj is not None
        if callable(obj) and not isinstance(obj, type(core.TypeName)):
            assert obj.__doc__, f"{name} has no docstring"


def test_no_private_module_leaks_into_the_namespace_as_public() -> None:
    assert all(not n.startswith("_") for n in core.__all__)
