"""loosely.protocol"""

import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec, PathFinder
from types import ModuleType


class _KioWithoutHypothesis:
    """Loads kio's type module (whenever something first imports kio) with hypothesis hidden.

    kio, the message codec, registers hypothesis strategies for its field types whenever hypothesis is importable.
    Importing hypothesis for that (it pulls in pytest and numpy) cost every broker start about 0.9 s and 19 MiB in
    a project that has hypothesis installed for its own tests, and loosely never draws kio values. kio reads the
    name once, when that module runs; a process that imported hypothesis before it (a test suite drawing kio
    values) gets the strategies as before. Nothing is imported here: light modules of this package (records,
    framing) must not load kio.

    A meta path finder by its ``find_spec`` alone: the ``importlib.abc.MetaPathFinder`` base would import
    ``importlib.resources`` and through it pathlib, tempfile and urllib (4 MiB of RSS) into every process that
    imports this package, a view runner's included.
    """

    MODULE = "kio.static._phantom"

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        if name != self.MODULE:
            return None
        sys.meta_path.remove(self)  # once
        spec = PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            if "hypothesis" in sys.modules:
                run(module)
                return
            sys.modules["hypothesis"] = None  # type: ignore[assignment]  # an import of it raises ImportError
            try:
                run(module)
            finally:
                del sys.modules["hypothesis"]

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if _KioWithoutHypothesis.MODULE not in sys.modules:
    sys.meta_path.insert(0, _KioWithoutHypothesis())
