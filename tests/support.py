"""Helpers shared by the tests and the benchmarks: reading a child's ready line."""

from __future__ import annotations

import selectors
import subprocess
import time


def read_line(process: subprocess.Popen, prefix: str, timeout: float) -> str:
    """The first stdout line of ``process`` starting with ``prefix``, waited for at most
    ``timeout`` seconds; RuntimeError if the process exits first or is too slow.

    The lines before it are read and dropped; ``process`` must have been started with
    ``stdout=PIPE`` in text mode.
    """
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if selector.select(timeout=0.2):
                line = process.stdout.readline()
                if line.startswith(prefix):
                    return line.strip()
                if not line and process.poll() is not None:
                    break
            elif process.poll() is not None:
                break
    finally:
        selector.close()
    raise RuntimeError(
        f"{process.args!r} printed no line starting with {prefix!r} within {timeout} s "
        f"(exit status {process.poll()})"
    )
