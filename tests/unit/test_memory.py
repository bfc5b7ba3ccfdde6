"""Unit tests for memory.allocate: receive buffers of every size class."""

from __future__ import annotations

import mmap
import threading

import pytest

from ipython_parallel_kernel import memory
from ipython_parallel_kernel.memory import MMAP_MIN, PREFAULT_MIN, allocate


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
def test_large_sizes_are_prefaulted_mmap(size: int) -> None:
    """From PREFAULT_MIN the mmap buffer (with its prefault helper) is zeroed and writable."""
    view = allocate(size)
    assert isinstance(view.obj, mmap.mmap)
    assert view.nbytes == size and not view.readonly
    view[size // 2 : size // 2 + 3] = b"abc"
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


def test_large_allocation_starts_the_prefault_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a PREFAULT_MIN (or larger) allocation hands its region to the populate thread."""
    if memory._madvise is None:
        pytest.skip("no madvise on this platform")
    seen: list[int] = []
    ran = threading.Event()
    original = memory._populate

    def recording(region: mmap.mmap) -> None:
        seen.append(len(region))
        original(region)
        ran.set()

    monkeypatch.setattr(memory, "_populate", recording)
    allocate(PREFAULT_MIN - 1)
    view = allocate(PREFAULT_MIN)
    assert ran.wait(10)
    assert seen == [PREFAULT_MIN]
    assert view.tobytes().count(0) == PREFAULT_MIN
