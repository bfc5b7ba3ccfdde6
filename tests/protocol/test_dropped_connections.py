"""Socket-free: a connection that drops in the middle of a frame gives back, at once,
the memory its decoder had allocated for it, without waiting for the garbage collector."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator

import pytest
from protocol_support import KEY, connect, hello, kernel_service
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure

from ipython_parallel_kernel.core.wire import Channel

#: Under memory.MMAP_MIN, so the buffer lives on the Python heap that tracemalloc sees.
BUFFER = 900_000


@pytest.fixture
def no_collector() -> Iterator[None]:
    """The cyclic garbage collector off: only reference counting frees memory."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def traced() -> int:
    """Bytes allocated on the Python heap now."""
    return tracemalloc.get_traced_memory()[0]


def test_partial_frame_is_freed_when_the_connection_drops(no_collector: None) -> None:
    """Half of a 900 kB push arrives, then the connection drops: the kernel's traced memory
    falls back by at least what had arrived, with the collector off."""
    service = kernel_service()
    protocol, _ = connect(service)
    protocol.dataReceived(hello())
    assert protocol.greeted
    sender = Channel(KEY)
    sender.peer_nonce = protocol.channel.nonce
    sender.seal("connect_request", {"nonce": sender.nonce})  # the hello above was seq 1
    pieces = [bytes(p) for p in sender.seal("push_request", {}, b"", [bytes(BUFFER)], id=1)]
    frame = b"".join(pieces)
    tracemalloc.start()
    try:
        protocol.dataReceived(frame[: len(frame) - BUFFER // 2])
        during = traced()
        protocol.connectionLost(Failure(ConnectionLost()))
        after = traced()
    finally:
        tracemalloc.stop()
    assert during - after >= BUFFER // 2
