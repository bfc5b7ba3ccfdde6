"""Memory for incoming message parts: fast to receive into, and only as large as
what has arrived.

Receiving a large array costs mostly page faults: every fresh 4 KiB page is
faulted in and zeroed by the OS the first time data lands in it. For large parts a
helper thread asks the OS to populate pages (``MADV_POPULATE_WRITE``, Linux 5.14+)
ahead of the socket reads, so faulting and copying overlap on two cores instead of
taking turns on one. It keeps at most ``POPULATE_WINDOW`` bytes ahead of the bytes
received, so a part whose bytes never come (a peer that announces 4 GiB and stops)
costs that window, not its announced size: the rest of the mapping is virtual until
written. Where the call is not supported the helper stops and the reads fault pages
in themselves, as they would anyway.
"""

from __future__ import annotations

import ctypes
import mmap
import threading
import weakref
from typing import Any, cast

# Below this, a bytearray: mmap's system calls cost more than they save.
MMAP_MIN = 1024 * 1024
# From this size on, pages are populated ahead of the reads by a helper thread.
PREFAULT_MIN = 64 * 1024 * 1024
#: How far ahead of the bytes received the helper populates pages, at most.
POPULATE_WINDOW = 32 * 1024 * 1024
_STEP = 4 * 1024 * 1024
# Seconds between the waiting helper's checks that its buffer is still wanted.
_IDLE_CHECK = 1.0
_MADV_POPULATE_WRITE = 23

_madvise: Any
try:
    _madvise = ctypes.CDLL(None, use_errno=True).madvise
    _madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
except (OSError, AttributeError):
    _madvise = None


def allocate(size: int) -> memoryview:
    """A writable, zero-filled buffer of ``size`` bytes, cheap to allocate.

    From ``MMAP_MIN`` on it is an anonymous mapping: it takes memory only as its
    pages are written.
    """
    if size < MMAP_MIN:
        return memoryview(bytearray(size))
    return memoryview(mmap.mmap(-1, size))


class ReceiveBuffer:
    """Memory for one incoming part of ``size`` bytes, written front to back.

    ``view`` is zero-filled and writable. Tell ``advance`` how many bytes have been
    written so far: for parts of ``PREFAULT_MIN`` or more, a helper thread populates
    the pages up to ``POPULATE_WINDOW`` beyond them.
    """

    __slots__ = ("_populator", "size", "view")

    def __init__(self, size: int) -> None:
        self.size = size
        self.view = allocate(size)
        self._populator = (
            _Populator(cast(mmap.mmap, self.view.obj))
            if size >= PREFAULT_MIN and _madvise is not None
            else None
        )

    def advance(self, written: int) -> None:
        """``written`` bytes from the start now hold data (called by the receiving thread)."""
        if self._populator is not None:
            self._populator.advance(written)

    @property
    def populated(self) -> int:
        """How far the helper has populated pages (0 without a helper)."""
        return 0 if self._populator is None else self._populator.populated


class _Populator:
    """The helper thread of one large ReceiveBuffer.

    It holds its region only by weak reference between two steps, so a buffer that is
    dropped half-filled is freed, and the helper then ends.
    """

    def __init__(self, region: mmap.mmap) -> None:
        self._region = weakref.ref(region)
        self._size = len(region)
        self._written = 0
        # The writer wakes the helper only once it has written this far.
        self._wake_at = self._size
        self._wake = threading.Event()
        self.populated = 0
        threading.Thread(target=self._run, name="ipk-prefault", daemon=True).start()

    def advance(self, written: int) -> None:
        self._written = written
        if written >= self._wake_at:
            self._wake.set()

    def _run(self) -> None:
        size, page = self._size, mmap.PAGESIZE
        while (written := self._written) < size:
            # Pages already written need no help; madvise wants page-aligned ranges.
            start = max(self.populated, written - written % page)
            end = min(size, written - written % page + POPULATE_WINDOW)
            if end - start >= min(_STEP, size - start):
                if not self._populate(start, min(start + _STEP, end)):
                    return
                continue
            # Sleep until the writer leaves room for a whole step.
            self._wake.clear()
            self._wake_at = start + _STEP - POPULATE_WINDOW
            timed_out = self._written < self._wake_at and not self._wake.wait(_IDLE_CHECK)
            if timed_out and self._region() is None:
                return
            self._wake_at = size

    def _populate(self, start: int, end: int) -> bool:
        region = self._region()
        if region is None:
            return False
        # The ctypes view holds an export on the region, so it stays mapped meanwhile.
        anchor = ctypes.c_char.from_buffer(region)
        try:
            ok = _madvise(ctypes.addressof(anchor) + start, end - start, _MADV_POPULATE_WRITE) == 0
        finally:
            del anchor
        self.populated = end
        return ok
