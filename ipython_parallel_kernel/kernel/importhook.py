"""Run a function right after a given module has been imported (Python has no such hook).

The kernel uses it to adjust a library the moment user code loads it, without loading
it at start: rich display waits for IPython, a GUI kernel for matplotlib.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any


def after_import(name: str, then: Callable[[ModuleType], None]) -> importlib.abc.MetaPathFinder:
    """Call ``then(module)`` once module ``name`` has executed; return the waiting finder.

    >>> after_import("matplotlib", lambda m: m.interactive(True))  # doctest: +SKIP
    """
    finder = _AfterImport(name, then)
    sys.meta_path.insert(0, finder)
    return finder


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls ``then(module)`` right after module ``name`` has executed, then goes away.

    Python has no post-import hook: this finder lets the other finders locate the
    module and wraps the loader they return, for that one import. Several may wait for
    one module (one per engine): each asks the others while it searches, and answers
    nothing while it is itself searching, so their loaders nest and each is called.
    """

    def __init__(self, name: str, then: Callable[[ModuleType], None]) -> None:
        self.name = name
        self.then = then
        self._searching = False

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> Any:
        if fullname != self.name or self._searching:
            return None
        self._searching = True
        try:
            spec = self._find_elsewhere(fullname, path, target)
        finally:
            self._searching = False
        if spec is None:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _ThenLoader(spec.loader, self._executed)
        return spec

    def _find_elsewhere(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None
    ) -> Any:
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if finder is self or find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None

    def _executed(self, module: ModuleType) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        self.then(module)


class _ThenLoader(importlib.abc.Loader):
    """Delegates to ``loader``, then calls ``then(module)`` once the module has executed."""

    def __init__(self, loader: Any, then: Callable[[ModuleType], None]) -> None:
        self.loader = loader
        self.then = then

    def create_module(self, spec: Any) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # Put the real loader back first: get_source, resources and reloads use it.
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        self.then(module)
