"""Unit tests for memory: receive buffers of every size class, populated just ahead."""

from __future__ import annotations

import mmap
import threading
from pathlib import Path

import pytest
from conftest import wait_for

from ipython_parallel_kernel.core import memory
from ipython_parallel_kernel.core.memory import (
    MMAP_MIN,
    POPULATE_WINDOW,
    PREFAULT_MIN,
    ReceiveBuffer,
    allocate,
)


@pytest.mark.parametrize("size", [0, 1, 4096, MMAP_MIN - 1])
def test_small_sizes_are_bytearray_backed(size: int) -> None:
    """Below MMAP_MIN the buffer is a zero-filled, writable bytearray of the right size."""
    view = allocate(size)
    assert isinstance(view.obj, bytearray)
    assert view.nbytes == size and view.format == "B" and not view.readonly
    assert not any(view)


@pytest.mark.parametrize("size", [MMAP_MIN, MMAP_MIN + 12345, PREFAULT_MIN - 1])
def test_medium_sizes_are_mmap_backed(size: int) -> None:
    """From MMAP_MIN the buffer is an anonymous mmap: zero-filled, writable, exact size."""
    view = allocate(size)
    assert isinstance(view.obj, mmap.mmap)
    assert view.nbytes == size and not view.readonly
    assert view.tobytes().count(0) == size
    view[0], view[-1] = 1, 255
    assert (view[0], view[-1]) == (1, 255)


@pytest.mark.parametrize("size", [PREFAULT_MIN, PREFAULT_MIN + 4097])
def test_large_receive_buffers_are_zeroed_and_writable(size: int) -> None:
    """From PREFAULT_MIN a ReceiveBuffer (with its populate helper) is zeroed and writable."""
    buffer = ReceiveBuffer(size)
    view = buffer.view
    assert isinstance(view.obj, mmap.mmap)
    assert buffer.size == view.nbytes == size and not view.readonly
    view[size // 2 : size // 2 + 3] = b"abc"
    buffer.advance(size)
    data = view.tobytes()
    assert data[size // 2 : size // 2 + 3] == b"abc"
    assert data.count(0) == size - 3


def test_buffers_are_independent() -> None:
    """Two allocations never share memory."""
    a, b = allocate(MMAP_MIN), allocate(MMAP_MIN)
    a[:4] = b"abcd"
    assert b[:4].tobytes() == bytes(4)


def test_negative_size_is_refused() -> None:
    """A negative size is an error, not an empty buffer."""
    with pytest.raises(ValueError):
        allocate(-1)


def rss() -> int:
    """This process's resident memory, in bytes."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) * 1024


def populate_helpers() -> int:
    """How many populate helper threads are alive."""
    return sum(thread.name == "ipk-prefault" for thread in threading.enumerate())


def test_helper_populates_only_a_window_ahead_of_the_writer() -> None:
    """Pages are populated up to POPULATE_WINDOW beyond the bytes written, never further."""
    if memory._madvise is None:
        pytest.skip("no madvise on this platform")
    size = 8 * PREFAULT_MIN
    before = rss()
    buffer = ReceiveBuffer(size)
    wait_for(lambda: buffer.populated >= POPULATE_WINDOW, 10)
    assert buffer.populated == POPULATE_WINDOW
    grown = rss() - before
    print(f"RSS growth with nothing written into {size >> 20} MiB: {grown >> 20} MiB")
    assert grown < POPULATE_WINDOW + 16 * 1024**2
    written = 3 * PREFAULT_MIN + 12345
    buffer.view[:written] = bytes(written)
    buffer.advance(written)
    aligned = written - written % mmap.PAGESIZE
    wait_for(lambda: buffer.populated >= aligned + POPULATE_WINDOW, 10)
    assert buffer.populated == aligned + POPULATE_WINDOW


def test_helper_ends_when_the_buffer_is_filled_or_dropped() -> None:
    """The populate helper ends once its buffer is filled, and once it is dropped half-filled."""
    if memory._madvise is None:
        pytest.skip("no madvise on this platform")
    wait_for(lambda: populate_helpers() == 0, 10)
    filled = ReceiveBuffer(PREFAULT_MIN)
    filled.view[:] = bytes(PREFAULT_MIN)
    filled.advance(PREFAULT_MIN)
    wait_for(lambda: populate_helpers() == 0, 10)
    dropped = [ReceiveBuffer(2 * PREFAULT_MIN)]
    wait_for(lambda: dropped[0].populated == POPULATE_WINDOW, 10)
    assert populate_helpers() == 1
    dropped.clear()
    wait_for(lambda: populate_helpers() == 0, 10)


def test_small_receive_buffers_have_no_helper() -> None:
    """Below PREFAULT_MIN no helper thread is started."""
    wait_for(lambda: populate_helpers() == 0, 10)
    buffer = ReceiveBuffer(PREFAULT_MIN - 1)
    assert populate_helpers() == 0 and buffer.populated == 0
