"""The smallest IPython shell that makes ``display()`` record display data.

Imported only once IPython is loaded (``rich`` does it); why a shell at all, and why
not a real ``InteractiveShell``, is explained in ``rich``'s docstring.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from IPython.core.displaypub import DisplayPublisher
from IPython.core.events import EventManager, available_events
from IPython.core.formatters import DisplayFormatter
from IPython.core.interactiveshell import InteractiveShell

from .capture import DisplayCapture


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
