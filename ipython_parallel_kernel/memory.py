"""Memory for incoming buffers, allocated so that receiving into it is fast.

Receiving a large array costs mostly page faults: every fresh 4 KiB page is
faulted in and zeroed by the OS the first time data lands in it. For large buffers
a helper thread asks the OS to populate the pages ahead of the socket reads
(``MADV_POPULATE_WRITE``, Linux 5.14+), so faulting and copying overlap on two
cores instead of taking turns on one. Where the call is not supported the helper
stops and the reads fault pages in themselves, as they would anyway.
"""

from __future__ import annotations

import ctypes
import mmap
import threading

# Below this, a bytearray: mmap's system calls cost more than they save.
MMAP_MIN = 1024 * 1024
# From this size on, pages are populated ahead of the reads by a helper thread.
PREFAULT_MIN = 64 * 1024 * 1024
_STEP = 32 * 1024 * 1024
_MADV_POPULATE_WRITE = 23

try:
    _madvise = ctypes.CDLL(None, use_errno=True).madvise
    _madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
except (OSError, AttributeError):
    _madvise = None


def allocate(size: int) -> memoryview:
    """A writable, zero-filled buffer of ``size`` bytes, cheap to allocate and fill."""
    if size < MMAP_MIN:
        return memoryview(bytearray(size))
    region = mmap.mmap(-1, size)
    if size >= PREFAULT_MIN and _madvise is not None:
        threading.Thread(target=_populate, args=(region,), name="ipk-prefault", daemon=True).start()
    return memoryview(region)


def _populate(region: mmap.mmap) -> None:
    # The ctypes view holds an export on the region, so it stays mapped until we finish.
    anchor = ctypes.c_char.from_buffer(region)
    base = ctypes.addressof(anchor)
    size = len(region)
    for offset in range(0, size, _STEP):
        if _madvise(base + offset, min(_STEP, size - offset), _MADV_POPULATE_WRITE) != 0:
            break
    del anchor
