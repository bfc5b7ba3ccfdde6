"""A kernel's IPython shells: one that only displays, and one that runs IPython syntax.

``DisplayShell`` is the smallest shell that makes ``display()`` record display data;
``KernelShell`` is a real ``InteractiveShell`` in the engine's namespace, for commands
written in IPython syntax (``%timeit``, ``!cmd``), which displays the same way. An
engine has at most one of them in use: the first command that needs IPython syntax
replaces its ``DisplayShell`` with a ``KernelShell``.

Imported only once IPython is loaded (``rich`` does it); why a shell at all, and why
not always a real ``InteractiveShell``, is explained in ``rich``'s docstring.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from IPython.core.displaypub import DisplayPublisher
from IPython.core.events import EventManager, available_events
from IPython.core.formatters import DisplayFormatter
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from .capture import DisplayCapture


class PlainValues:
    """Tells, cheaply, when a number's or string's display data is its repr alone.

    IPython's ``DisplayFormatter.format`` asks each of its dozen formatters for a
    printer, about 0.15 ms a value, to find for ``5`` what ``repr`` gives. Whether a
    printer could apply to a builtin type changes only when one is registered: this
    notices that from the registries' sizes (``for_type`` and ``for_type_by_name`` add
    entries) and from the text/plain printer of the type itself (registering one again
    replaces it in place), and then checks again.
    """

    def __init__(self, formatter: DisplayFormatter, types: Iterable[type]) -> None:
        """``types``: the builtin types to answer for (exact types: a subclass may have
        printers or ``_repr_*_`` methods of its own)."""
        self.formatter = formatter
        self.plain = formatter.formatters["text/plain"]
        self._defaults = {kind: self.plain.type_printers.get(kind) for kind in types}
        self._registries: list[dict[Any, Any]] = []
        self._sizes: list[int] = []
        self._by_repr: frozenset[type] = frozenset()
        self._survey()

    def text(self, value: Any) -> str | None:
        """``value``'s text/plain, if that is all its display data holds; else None."""
        kind = type(value)
        if kind not in self._defaults:
            return None
        if [len(r) for r in self._registries] != self._sizes:
            self._survey()
        if (
            kind not in self._by_repr
            or self.plain.type_printers.get(kind) is not (self._defaults[kind])
        ):
            return None
        if kind is float:
            return self.plain.float_format % value  # %precision sets it
        return repr(value)

    def _survey(self) -> None:
        formatter = self.formatter
        others = [
            formatter.ipython_display_formatter,
            formatter.mimebundle_formatter,
            *(f for mime, f in formatter.formatters.items() if mime != "text/plain"),
        ]
        self._registries = [formatter.formatters]
        for f in [*others, self.plain]:
            self._registries += (f.type_printers, f.deferred_printers)
        self._sizes = [len(r) for r in self._registries]
        enabled = self.plain.enabled and "text/plain" in (formatter.active_types or ())
        self._by_repr = frozenset(
            kind
            for kind in self._defaults
            if enabled and not any(_has_printer(f, kind) for f in others if f.enabled)
        )


def _has_printer(formatter: Any, kind: type) -> bool:
    """Whether ``formatter`` has a printer for ``kind`` or one of its bases."""
    for cls in kind.__mro__:
        if cls in formatter.type_printers:
            return True
        if (cls.__module__, cls.__name__) in formatter.deferred_printers:
            return True
    return False


def make_formatter(figure_png: Callable[[Any], str | None]) -> DisplayFormatter:
    """IPython's formatter, with matplotlib figures as PNG.

    Registered by type name, so matplotlib is not imported until user code has made
    a figure.
    """
    formatter = DisplayFormatter()
    formatter.formatters["image/png"].for_type_by_name("matplotlib.figure", "Figure", figure_png)
    return formatter


class RecordingPublisher(DisplayPublisher):
    """Hands published bundles to a ``DisplayCapture`` instead of printing them."""

    def __init__(self, capture: DisplayCapture, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.capture = capture

    def publish(
        self,
        data: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        source: Any = None,
        *,
        transient: dict[str, Any] | None = None,
        update: bool = False,
        **kwargs: Any,
    ) -> None:
        # Metadata (image sizes, isolation) is not carried: records hold bundles only.
        self._validate_data(data, metadata)
        display_id = (transient or {}).get("display_id")
        self.capture.publish(data, display_id=display_id, update=update)

    def clear_output(self, wait: bool = False) -> None:
        self.capture.clear(wait)


class KernelHooks:
    """What a kernel's shells do their own way, whichever of them is in use."""

    def enable_gui(self, gui: str | None = None) -> None:
        """Nothing to do: a kernel runs its own event loop (``ipk-kernel --gui``).

        pyplot calls this when it selects an interactive backend.
        """

    def showtraceback(self, exc_tuple: Any = None, *args: Any, **kwargs: Any) -> None:
        """Print the exception to stderr, the command's: formatters call this when they fail."""
        etype, value, tb = exc_tuple or sys.exc_info()
        if value is not None:
            traceback.print_exception(etype, value, tb, file=sys.stderr)


class DisplayShell(KernelHooks, InteractiveShell):
    """An ``InteractiveShell`` that only displays: formatter, publisher, events.

    ``InteractiveShell.__init__`` is skipped on purpose (see ``rich``); what the
    display functions and shell-aware libraries use is provided, and any other shell
    feature fails with an AttributeError saying why.
    """

    def __init__(self, capture: DisplayCapture, formatter: DisplayFormatter) -> None:
        # Configurable's __init__ (config, traits), not InteractiveShell's.
        super(InteractiveShell, self).__init__()
        self.configurables = [self]
        self.events = EventManager(self, available_events)
        self.display_formatter = formatter
        self.display_pub = RecordingPublisher(capture, shell=self, parent=self)

    def __getattr__(self, name: str) -> NoReturn:
        raise AttributeError(
            f"{type(self).__name__!r} object has no attribute {name!r}: this kernel's "
            "IPython shell only displays until a command uses IPython syntax (a magic such "
            "as %who, or !command), which gives it magics and the kernel's namespace"
        )


#: Names IPython's ``init_user_ns`` binds that a kernel leaves to Python: its ``exit``
#: and ``quit`` only set a flag a terminal reads (Python's raise SystemExit, which the
#: engine records), and its ``open`` wraps the builtin.
PYTHON_NAMES = ("exit", "quit", "open")
#: The displayhook's names for the last results; the engine's results are its records.
RESULT_NAMES = ("_", "__", "___")


class KernelShell(KernelHooks, InteractiveShell):
    """A real ``InteractiveShell`` whose user namespace is the engine's: it runs the
    Python that IPython syntax becomes (``get_ipython().run_line_magic(...)``).

    ``%timeit f(x)`` sees the kernel's ``f`` and ``%whos`` lists its names; magics and
    ``!cmd`` (IPython's ``system_piped``, as in ipykernel) print to ``sys.stdout``, which
    is the command's while one runs. It displays as ``DisplayShell`` does, with the same
    formatter and publisher.

    Left out of ``InteractiveShell.__init__``, because a kernel must keep them as
    they are: ``sys.modules["__main__"]`` (the engine's namespace is not the kernel's
    main module, as for IPython's embedded shell), ``sys.path`` (no virtualenv
    guessing), Python's ``exit``, ``quit`` and ``open`` in the namespace, and a history
    file with its writer thread (the engine keeps the history; ``In`` and ``Out`` stay
    empty). As in IPython, the builtins gain ``display`` and ``__IPYTHON__``. Its names
    (``get_ipython``, ``In``, ``Out``...) are in ``user_ns_hidden``, so ``%who`` and
    ``Engine.keys`` leave them out.

    >>> namespace = {"a": 1}
    >>> shell = KernelShell(DisplayCapture(), DisplayFormatter(), namespace)
    >>> namespace["get_ipython"]() is shell, shell.run_line_magic("time", "a + 1")
    CPU times: ...
    (True, 2)
    """

    def __init__(
        self, capture: DisplayCapture, formatter: DisplayFormatter, namespace: dict[str, Any]
    ) -> None:
        self._capture = capture
        self._formatter = formatter
        config = Config()
        config.HistoryManager.enabled = False
        super().__init__(user_ns=namespace, config=config)
        self.user_ns_hidden.update({name: namespace[name] for name in RESULT_NAMES})

    def init_sys_modules(self) -> None:
        """Leave ``sys.modules["__main__"]`` alone (see the class docstring)."""

    def init_virtualenv(self) -> None:
        """Leave ``sys.path`` alone: the kernel's Python is the one it was started with."""

    def init_user_ns(self) -> None:
        """IPython's names in the namespace, hidden from ``%who``, less ``PYTHON_NAMES``
        (a user's own ``open`` or ``exit`` stays)."""
        users = {name: self.user_ns[name] for name in PYTHON_NAMES if name in self.user_ns}
        super().init_user_ns()
        for name in PYTHON_NAMES:
            del self.user_ns[name], self.user_ns_hidden[name]
        self.user_ns.update(users)

    def init_display_formatter(self) -> None:
        """The kernel's formatter (matplotlib figures as PNG), shared with ``rich``."""
        self.display_formatter = self._formatter
        # Listed for %config, as IPython lists its own (the list holds any Configurable).
        self.configurables.append(self._formatter)  # type: ignore[arg-type]

    def init_display_pub(self) -> None:
        """A publisher that records bundles for the command, as ``DisplayShell``'s."""
        self.display_pub = RecordingPublisher(self._capture, shell=self, parent=self)
        self.configurables.append(self.display_pub)  # type: ignore[arg-type]
