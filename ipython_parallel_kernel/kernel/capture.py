"""Per-command capture of what user code prints and displays.

The kernel replaces ``sys.stdout`` and ``sys.stderr`` with ``CapturedStream`` objects
once, at start-up. While a command runs, everything written to them (from any
thread the command started, too) is collected for that command; between commands
writes go to the kernel's own terminal, so nothing is lost. ``take_unsent`` hands out
what was written since it was last called, so output can be streamed while the
command still runs.

``DisplayCapture`` does the same for display data (mimebundles): see ``rich`` for
how ``display()`` and matplotlib figures reach it.
"""

from __future__ import annotations

import base64
import io
import json
import sys
import threading
from typing import Any, TextIO, cast


class CapturedStream(io.TextIOBase):
    """A text stream that collects writes for the running command, or passes them on.

    >>> stream = CapturedStream("stdout", io.StringIO())
    >>> stream.start()
    >>> print("hi", file=stream)
    >>> stream.stop()
    'hi\\n'
    """

    def __init__(self, name: str, fallback: TextIO) -> None:
        super().__init__()
        self.name = name
        self.fallback = fallback
        self._lock = threading.Lock()
        self._parts: list[str] | None = None
        self._sent = 0

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            parts = self._parts
            if parts is not None:
                parts.append(text)
                return len(text)
        self.fallback.write(text)
        return len(text)

    def flush(self) -> None:
        if self._parts is None:
            self.fallback.flush()

    def start(self) -> None:
        """Begin collecting for a new command."""
        with self._lock:
            self._parts = []
            self._sent = 0

    def take_unsent(self) -> str:
        """What was written for this command since the last call (or since ``start``)."""
        with self._lock:
            if self._parts is None:
                return ""
            new, self._sent = self._parts[self._sent :], len(self._parts)
        return "".join(new)

    def stop(self) -> str:
        """Stop collecting; return everything written since ``start``."""
        with self._lock:
            parts, self._parts = self._parts or [], None
        return "".join(parts)


def install() -> tuple[CapturedStream, CapturedStream]:
    """Replace ``sys.stdout`` and ``sys.stderr`` with captured streams; return them."""
    out = CapturedStream("stdout", cast(TextIO, sys.__stdout__))
    err = CapturedStream("stderr", cast(TextIO, sys.__stderr__))
    sys.stdout, sys.stderr = out, err
    return out, err


def jsonable(data: dict[str, Any]) -> dict[str, Any]:
    """A mimebundle that can travel as JSON: bytes (PNG, JPEG) base64-encoded, as Jupyter does.

    A value JSON cannot carry is dropped, with a note on stderr (the command's, while
    one runs), rather than left to break the reply that would carry it.

    >>> jsonable({"text/plain": "x", "image/png": b"\\x89PNG"})
    {'text/plain': 'x', 'image/png': 'iVBORw=='}
    """
    bundle: dict[str, Any] = {}
    for mimetype, value in data.items():
        if isinstance(value, bytes | bytearray | memoryview):
            value = base64.b64encode(value).decode("ascii")
        elif not isinstance(value, str):
            try:
                json.dumps(value)
            except (TypeError, ValueError) as e:
                print(f"ipk: {mimetype} display data dropped, not JSON: {e}", file=sys.stderr)
                continue
        bundle[str(mimetype)] = value
    return bundle


class DisplayCapture:
    """Collects the mimebundles published while a command runs, in order.

    The display counterpart of ``CapturedStream``: while a command runs, bundles
    published from any thread are kept for it; between commands no one would receive
    them, so their text/plain is printed (to the kernel's terminal), as IPython's own
    publisher does when no frontend renders display data.

    >>> capture = DisplayCapture()
    >>> capture.start()
    >>> capture.publish({"text/plain": "x", "text/html": "<b>x</b>"})
    >>> capture.stop()
    [{'text/plain': 'x', 'text/html': '<b>x</b>'}]
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bundles: list[dict[str, Any]] | None = None
        self._ids: dict[str, int] = {}
        self._clear_pending = False

    @property
    def active(self) -> bool:
        """True while collecting for a command."""
        return self._bundles is not None

    def start(self) -> None:
        """Begin collecting for a new command."""
        with self._lock:
            self._bundles, self._ids, self._clear_pending = [], {}, False

    def publish(
        self, data: dict[str, Any], display_id: str | None = None, update: bool = False
    ) -> None:
        """Keep one bundle for the running command (or print its text between commands).

        ``update`` with a ``display_id`` this command already published replaces that
        bundle, as a notebook updates the output in place. An update of an earlier
        command's display, already sent, is kept as a new bundle instead of being lost.
        """
        bundle = jsonable(data)
        with self._lock:
            bundles = self._bundles
            if bundles is not None:
                if self._clear_pending:
                    bundles.clear()
                    self._ids.clear()
                    self._clear_pending = False
                if update and display_id in self._ids:
                    bundles[self._ids[display_id]] = bundle
                    return
                if display_id is not None:
                    self._ids[display_id] = len(bundles)
                bundles.append(bundle)
                return
        text = bundle.get("text/plain")
        if text:
            print(text)

    def clear(self, wait: bool = False) -> None:
        """Forget this command's bundles so far (``clear_output``); with ``wait``, at the next."""
        with self._lock:
            if self._bundles is None:
                return
            if wait:
                self._clear_pending = True
            else:
                self._bundles.clear()
                self._ids.clear()

    def stop(self) -> list[dict[str, Any]]:
        """Stop collecting; return the bundles published since ``start``."""
        with self._lock:
            bundles, self._bundles = self._bundles or [], None
            self._ids = {}
        return bundles
