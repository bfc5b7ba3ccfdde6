"""ipyparallel's exception names (``ipyparallel.error``), for code that catches them.

Each name is one of this package's exceptions (``errors.py`` draws their tree), so
``except ipp.error.RemoteError`` works unchanged after ``import ipyparallel as ipp``
became ``import ipython_parallel_kernel as ipp``::

    >>> import ipython_parallel_kernel as ipp
    >>> try:
    ...     rc[:].apply_sync(lambda: 1 / 0)
    ... except ipp.error.RemoteError as e:  # a CompositeError: one failure per kernel
    ...     print(e.ename)
    CompositeError

``TimeoutError`` is the builtin one, as in ipyparallel: a result's ``get(timeout)``
raises ``KernelTimeout``, which derives from it. Nothing here imports the client, so
code on a kernel can import it too.
"""

from __future__ import annotations

import builtins

from .errors import (
    CompositeError,
    DependencyError,
    DependencyTimeout,
    ImpossibleDependency,
    KernelDied,
    KernelError,
    NoKernels,
    RemoteError,
    TaskAborted,
    UnmetDependency,
)

__all__ = [
    "CompositeError",
    "DependencyError",
    "DependencyTimeout",
    "EngineError",
    "IPythonError",
    "ImpossibleDependency",
    "KernelError",
    "NoEnginesRegistered",
    "RemoteError",
    "TaskAborted",
    "TimeoutError",
    "UnmetDependency",
]

#: The base of every exception of the package (ipyparallel's base of its own).
IPythonError = KernelError
#: A kernel went away while it had work (ipyparallel: an engine died or unregistered).
EngineError = KernelDied
#: A view has no kernel to run its work on.
NoEnginesRegistered = NoKernels
#: A deadline passed: the builtin, which ``KernelTimeout`` derives from.
TimeoutError = builtins.TimeoutError
