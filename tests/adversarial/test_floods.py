"""Connection floods against a kernel under a low file-descriptor limit: a host that is
not allowed, and an allowed one that never authenticates, cannot keep a legitimate
client out, run the kernel out of descriptors, or grow its memory; and a kernel that
does run out says so, to its log once and to each client it cannot take.

Every flood comes from 127.0.0.0/8 (Linux routes all of it to lo) and is bounded in
connections and time; kernels and flooders are stopped by pid.
"""

from __future__ import annotations

import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import start_kernel, stop_process, wait_for

from ipython_parallel_kernel import RemoteKernel
from ipython_parallel_kernel.errors import ConnectionRefused

pytestmark = pytest.mark.slow

FLOOD_PEER = Path(__file__).with_name("flood_peer.py")
#: The descriptor limit the flooded kernel runs under.
LIMIT = 256
#: Connections the flood must have opened before the legitimate client is timed.
IN_FULL_SWING = 2000
#: Legitimate connect + execute rounds timed during the flood.
ROUNDS = 7


def set_descriptor_limit(pid: int, limit: int) -> None:
    """Lower the soft and hard RLIMIT_NOFILE of the running process ``pid``."""
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))


def descriptors(pid: int) -> int:
    """How many file descriptors process ``pid`` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def start_flood(address: tuple[str, int], status: Path, *sources: str) -> subprocess.Popen:
    """Run flood_peer.py against ``address`` from ``sources`` ("ADDRESS:HOLD")."""
    status.write_text("0")
    return subprocess.Popen(
        [sys.executable, str(FLOOD_PEER), address[0], str(address[1]), str(status), *sources],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )


def test_legitimate_client_is_served_through_a_flood(ipython_dir, tmp_path, record_property):
    """Under a 256-descriptor limit, 127.0.0.2 (not allowed) and 127.0.0.1 (allowed, never
    authenticating) flood the kernel with held connections; a legitimate client connects
    and executes every round, the kernel never runs out of descriptors, and its RSS
    stays within 50 MiB of where it started."""
    kernel = start_kernel(ipython_dir)
    flood = None
    try:
        set_descriptor_limit(kernel.pid, LIMIT)
        rss_before = psutil.Process(kernel.pid).memory_info().rss
        status = tmp_path / "flood-status"
        flood = start_flood(kernel.address, status, "127.0.0.2:400", "127.0.0.1:400")
        wait_for(lambda: int(status.read_text()) >= IN_FULL_SWING, timeout=60)
        latencies, most_descriptors = [], 0
        for _ in range(ROUNDS):
            started = time.monotonic()
            client = RemoteKernel(kernel.address, timeout=30, connect_timeout=30)
            assert client.execute("6 * 7").text == "42"
            latencies.append(time.monotonic() - started)
            client.disconnect()
            most_descriptors = max(most_descriptors, descriptors(kernel.pid))
        opened = int(status.read_text())
        assert flood.poll() is None, "the flood ended before the rounds did"
        stop_process(flood)
        rss_growth = psutil.Process(kernel.pid).memory_info().rss - rss_before
        median = statistics.median(latencies)
        record_property("flood_connections", opened)
        record_property("connect_execute_median_s", round(median, 4))
        record_property("connect_execute_max_s", round(max(latencies), 4))
        print(
            f"\nflood of {opened} connections: connect+execute median {median * 1000:.1f} ms, "
            f"max {max(latencies) * 1000:.1f} ms over {ROUNDS} rounds; kernel descriptors "
            f"at most {most_descriptors} of {LIMIT}; RSS growth {rss_growth / 2**20:.1f} MiB"
        )
        assert most_descriptors < LIMIT
        assert "out of file descriptors" not in kernel.log()
        assert rss_growth < 50 * 2**20
        assert kernel.process.poll() is None
    finally:
        if flood is not None:
            stop_process(flood)
        kernel.stop()


def test_kernel_out_of_descriptors_tells_clients_and_recovers(ipython_dir):
    """With the cap on waiting connections lifted and a 64-descriptor limit, idle
    connections use up the kernel's descriptors: a new client is told the kernel is out
    of file descriptors, the log says so once, and when the idle ones go it is served."""
    kernel = start_kernel(
        ipython_dir,
        "--KernelApp.max_unauthenticated=100000",
        "--KernelApp.handshake_timeout=120",
    )
    idle: list[socket.socket] = []
    try:
        set_descriptor_limit(kernel.pid, 64)
        for _ in range(100):
            idle.append(socket.create_connection(kernel.address, timeout=10))
        wait_for(lambda: "out of file descriptors" in kernel.log(), timeout=30)
        for _ in range(3):
            with pytest.raises(ConnectionRefused) as error:
                RemoteKernel(kernel.address, timeout=30)
            assert str(error.value).startswith(
                f"kernel 127.0.0.1:{kernel.port} is out of file descriptors (limit 64)"
            )
        for sock in idle:
            sock.close()
        idle.clear()
        wait_for(lambda: descriptors(kernel.pid) < 32, timeout=30)
        client = RemoteKernel(kernel.address, timeout=30)
        assert client.execute("'served again'").text == "'served again'"
        client.disconnect()
        assert kernel.log().count("out of file descriptors") == 1
    finally:
        for sock in idle:
            sock.close()
        kernel.stop()
