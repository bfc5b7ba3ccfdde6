"""Functions that run only on a kernel that meets their requirement: ipyparallel's
``@require`` and ``@depend``.

``@require("numpy", helper)`` imports ``numpy`` into the kernel's namespace before
the function runs, and binds ``helper`` there under its name; ``@depend(check, *args)``
runs ``check(*args)`` on the kernel first. Where the module cannot be imported, or the
check returns False, the call raises ``UnmetDependency`` instead of running: a
load-balanced view then sends the task to another kernel (and fails it with
``ImpossibleDependency`` once no kernel is left)::

    >>> @require("numpy")
    ... def norm(a):
    ...     return numpy.linalg.norm(a)
    >>> @depend(lambda: sys.platform == "linux")
    ... def on_linux():
    ...     ...

Both sides use this module: the client wraps the function, the kernel runs it.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

from ..errors import UnmetDependency


class Requirement:
    """Modules to import and objects to bind in the kernel's namespace."""

    def __init__(self, modules: list[str], objects: dict[str, Any]) -> None:
        self.modules = modules
        self.objects = objects

    def met_in(self, *namespaces: dict[str, Any]) -> bool:
        """Import and bind into each of ``namespaces``; False if a module is missing."""
        for namespace in namespaces:
            for name in self.modules:
                try:
                    exec(f"import {name}", namespace)
                except ImportError:
                    return False
            namespace.update(self.objects)
        return True

    def __repr__(self) -> str:
        return f"<Requirement {', '.join([*self.modules, *self.objects])}>"


class Dependent:
    """``func``, run only where its dependency is met (see the module docstring)."""

    def __init__(
        self,
        func: Callable[..., Any],
        check: Callable[..., Any] | Requirement,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.func = func
        self.check = check
        self.args = args
        self.kwargs = kwargs or {}
        self.__name__: str = getattr(func, "__name__", "function")
        functools.update_wrapper(self, func)

    def bound(
        self, bind: Callable[[Callable[..., Any]], Callable[..., Any]], namespace: dict[str, Any]
    ) -> Callable[..., Any]:
        """The function to call on a kernel: ``bind`` gives a function the kernel's
        globals where it should have them; ``namespace`` is the kernel's."""
        func = bind(self.func)
        # A function defined in a module keeps that module's globals: it finds what
        # ``@require`` imports there, and the kernel's namespace has it too.
        own = getattr(func, "__globals__", namespace)
        namespaces = (namespace,) if own is namespace else (namespace, own)

        def checked(*args: Any, **kwargs: Any) -> Any:
            if isinstance(self.check, Requirement):
                met = self.check.met_in(*namespaces)
            else:
                met = bind(self.check)(*self.args, **self.kwargs) is not False
            if not met:
                raise UnmetDependency(f"{self.__name__}: {self.check!r} is not met here")
            return func(*args, **kwargs)

        return checked

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call it here, checking the dependency against this process's globals."""
        namespace = getattr(self.func, "__globals__", {})
        return self.bound(lambda f: f, namespace)(*args, **kwargs)


def depend(
    check: Callable[..., Any], *args: Any, **kwargs: Any
) -> Callable[[Callable[..., Any]], Dependent]:
    """Run the decorated function only where ``check(*args, **kwargs)`` is not False."""
    return lambda func: Dependent(func, check, args, kwargs)


def require(*needed: Any, **objects: Any) -> Callable[[Callable[..., Any]], Dependent]:
    """Run the decorated function only where these modules import (names, or the
    modules themselves), with these functions (positional, bound under their
    ``__name__``) and objects (keyword) in the kernel's namespace."""
    modules: list[str] = []
    for item in needed:
        if isinstance(item, types.ModuleType):
            modules.append(item.__name__)
        elif isinstance(item, str):
            modules.append(item)
        elif callable(item) and hasattr(item, "__name__"):
            objects[item.__name__] = item
        else:
            raise TypeError(
                f"require() takes module names, modules and functions; pass "
                f"{type(item).__name__} objects by keyword (name=value)"
            )
    requirement = Requirement(modules, objects)
    return lambda func: Dependent(func, requirement)
