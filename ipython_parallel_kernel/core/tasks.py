"""Several calls of one function sent as one request: how a load-balanced ``map``
ships ``chunksize`` items at a time.

A ``Chunk`` is applied like a function (the ``apply`` verb); the kernel binds its
function once, as it binds any applied function (the kernel's namespace for an
interactive one), and resolves the References of each item's arguments::

    >>> Chunk(pow, [(2, 3), (3, 2)]).run(lambda f: f, lambda a, k: (a, k))
    [8, 9]
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable
from typing import Any

#: Functions kept unpickled, by their pickle: a map sends the same one with every chunk.
_FUNCTIONS_KEPT = 64


class Chunk:
    """``func(*args, **kwargs)`` for each ``args`` of ``items``; the list of values.

    ``func`` may be given pickled (``bytes``): a map pickles its function once for all
    its chunks, and the kernel unpickles each different one once.
    """

    def __init__(
        self,
        func: Callable[..., Any] | bytes,
        items: list[tuple[Any, ...]],
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.func = func
        self.items = items
        self.kwargs = kwargs or {}
        #: How often the function's pickle names ``__main__`` (see ``serialize.dumps``).
        self.mentions = func.count(b"__main__") if isinstance(func, bytes) else 0

    def __len__(self) -> int:
        return len(self.items)

    def __call__(self) -> list[Any]:
        """The calls as they are, where nothing needs binding (not on a kernel)."""
        return self.run(lambda func: func, lambda args, kwargs: (args, kwargs))

    def run(
        self,
        bind: Callable[[Callable[..., Any]], Callable[..., Any]],
        resolve: Callable[[tuple, dict[str, Any]], tuple[tuple, dict[str, Any]]],
    ) -> list[Any]:
        """Call the bound function on every item, in order (on the kernel)."""
        func = bind(_unpickled(self.func) if isinstance(self.func, bytes) else self.func)
        values = []
        for args in self.items:
            call_args, call_kwargs = resolve(args, self.kwargs)
            values.append(func(*call_args, **call_kwargs))
        return values


@functools.lru_cache(maxsize=_FUNCTIONS_KEPT)
def _unpickled(data: bytes) -> Callable[..., Any]:
    return pickle.loads(data)
