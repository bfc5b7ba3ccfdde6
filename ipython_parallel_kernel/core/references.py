"""What code sent to a kernel may borrow from the kernel's namespace, as in ipyparallel.

``Reference("name")`` is an argument that stands for a value on the kernel: ``apply``
replaces it with what ``name`` evaluates to in the kernel's namespace when the call
runs, so the value never travels::

    >>> rk["data"] = list(range(10))
    >>> rk.apply(len, Reference("data"))
    10

``@interactive`` marks a function defined in a module (not typed at the prompt) to
run as if it had been: its globals are the kernel's namespace, so it reads the
kernel's names and its ``global`` statements bind there. Functions defined in
``__main__`` (a notebook, IPython, a script) are treated so without it.

A Reference is resolved where ipyparallel resolves one: as an argument or keyword
argument, or an item of a list, tuple or dict given as one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class Reference:
    """A name (or expression) to look up in the kernel's namespace when a call runs."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"a Reference names a variable on the kernel, not {name!r}")
        self.name = name

    def resolve(self, namespace: dict[str, Any]) -> Any:
        """The value ``name`` has in ``namespace``."""
        return eval(self.name, namespace)

    def __repr__(self) -> str:
        return f"<Reference: {self.name!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reference) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("Reference", self.name))


def interactive(func: F) -> F:
    """Run ``func`` on a kernel with the kernel's namespace as its globals.

    >>> @interactive
    ... def total():
    ...     return sum(data)  # the kernel's ``data``
    """
    func.__module__ = "__main__"
    return func


def resolve_arguments(
    args: tuple[Any, ...], kwargs: Mapping[str, Any], namespace: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``args`` and ``kwargs`` with their References replaced by the values they name."""
    return (
        tuple(_resolved(a, namespace) for a in args),
        {k: _resolved(v, namespace) for k, v in kwargs.items()},
    )


def _resolved(value: Any, namespace: dict[str, Any], nested: bool = False) -> Any:
    if isinstance(value, Reference):
        return value.resolve(namespace)
    if nested:
        return value
    if type(value) in (list, tuple):
        return type(value)(_resolved(v, namespace, True) for v in value)
    if type(value) is dict:
        return {k: _resolved(v, namespace, True) for k, v in value.items()}
    return value
