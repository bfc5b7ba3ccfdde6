"""The heartbeat: a silent kernel that is busy is waited for, one that cannot run is lost."""

from __future__ import annotations

import os
import signal
import socket

import pytest
from conftest import wait_for

from ipython_parallel_kernel import RemoteKernel
from ipython_parallel_kernel.client import liveness
from ipython_parallel_kernel.errors import KernelDied

HEARTBEAT = 1.0

#: Defines ``hold(n)``: one C call (a regex backtracking through 2**n paths) that holds
#: the GIL, so the kernel's network thread cannot answer pings while it runs; and
#: ``n``, the size for which it lasts a quarter of a second or more here.
CALIBRATE = """
import re, time

def hold(n):
    started = time.perf_counter()
    re.match(r"(a+)+$", "a" * n + "b")
    return time.perf_counter() - started

n = 18
while n < 40 and min(hold(n) for _ in range(3)) < 0.25:
    n += 1
"""


def test_a_call_holding_the_gil_is_not_taken_for_a_lost_kernel(kernel):
    """A C call holding the GIL for several heartbeats: the kernel stays connected and
    the result arrives."""
    rk = RemoteKernel(kernel.address, timeout=120, heartbeat=HEARTBEAT)
    rk.execute(CALIBRATE)
    # Sixteen times the calibrated quarter second: four seconds or more.
    held = rk.execute("hold(n + 4)")
    assert float(held.text) >= 2 * HEARTBEAT, "the call did not hold the GIL long enough"
    assert rk.execute("'still connected'").text == "'still connected'"
    rk.disconnect()


def test_a_stopped_kernel_is_lost_by_name(kernel):
    """A SIGSTOPped kernel's pending request fails, naming the kernel and its state,
    within a bounded time."""
    rk = RemoteKernel(kernel.address, timeout=60, heartbeat=HEARTBEAT)
    os.kill(kernel.pid, signal.SIGSTOP)
    try:
        pending = rk.execute("1 + 1", block=False)
        with pytest.raises(KernelDied) as info:
            pending.get(30)
    finally:
        os.kill(kernel.pid, signal.SIGCONT)
    message = str(info.value)
    assert rk.name in message and f"pid {kernel.pid}) is stopped" in message


def test_a_peer_whose_os_acknowledges_is_busy_not_lost():
    """Over a real TCP connection whose peer's OS acknowledges our bytes (its process
    reads nothing), a silent peer counts as busy."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname(), timeout=10)
        peer, _ = server.accept()
        try:
            client.sendall(b"ping" * 100)
            wait_for(lambda: liveness.tcp_progress(client).unacked == 0, timeout=10)
            assert liveness.why_lost(None, client, HEARTBEAT) is None
        finally:
            client.close()
            peer.close()
