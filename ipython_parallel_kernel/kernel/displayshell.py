"""The smallest IPython shell that makes ``display()`` record display data.

Imported only once IPython is loaded (``rich`` does it); why a shell at all, and why
not a real ``InteractiveShell``, is explained in ``rich``'s docstring.
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


class DisplayShell(InteractiveShell):
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

    def enable_gui(self, gui: str | None = None) -> None:
        """Nothing to do: a kernel runs its own event loop (``ipk-kernel --gui``).

        pyplot calls this when it selects an interactive backend.
        """

    def showtraceback(self, exc_tuple: Any = None, *args: Any, **kwargs: Any) -> None:
        """Print the exception to stderr, the command's: formatters call this when they fail."""
        etype, value, tb = exc_tuple or sys.exc_info()
        if value is not None:
            traceback.print_exception(etype, value, tb, file=sys.stderr)

    def __getattr__(self, name: str) -> NoReturn:
        raise AttributeError(
            f"{type(self).__name__!r} object has no attribute {name!r}: an ipk kernel runs "
            "plain Python, and its IPython shell only displays (no magics, history or "
            "user namespace)"
        )
