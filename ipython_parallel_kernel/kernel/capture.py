"""Per-command capture of what user code prints.

The kernel replaces ``sys.stdout`` and ``sys.stderr`` with ``CapturedStream`` objects
once, at start-up. While a command runs, everything written to them (from any
thread the command started, too) is collected for that command; between commands
writes go to the kernel's own terminal, so nothing is lost. ``take_unsent`` hands out
what was written since it was last called, so output can be streamed while the
command still runs.
"""

from __future__ import annotations

import io
import sys
import threading
from typing import TextIO


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
    out = CapturedStream("stdout", sys.__stdout__)
    err = CapturedStream("stderr", sys.__stderr__)
    sys.stdout, sys.stderr = out, err
    return out, err
