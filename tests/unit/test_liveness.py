"""Telling a busy silent kernel from one that cannot answer: process state and TCP_INFO."""

from __future__ import annotations

import signal
import struct
import subprocess
import sys

import pytest
from conftest import stop_process, wait_for

from ipython_parallel_kernel.client import liveness
from ipython_parallel_kernel.client.liveness import TcpProgress

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="process states come from /proc"
)


def tcp_info(unacked: int = 0, probes: int = 0, last_ack_recv_ms: int = 0) -> bytes:
    """The head of a Linux ``struct tcp_info`` with the fields the client reads set."""
    u8 = [1, 0, 0, probes, 0, 0, 0, 0]
    u32 = [200_000, 0, 1448, 536, unacked, 0, 0, 0, 0, 0, 0, 0, last_ack_recv_ms]
    return struct.pack("=8B13I", *u8, *u32) + bytes(44)


def test_tcp_info_fields_are_read_from_their_offsets():
    """unacked, probes and last_ack_recv are decoded from where Linux puts them."""
    progress = TcpProgress.parse(tcp_info(unacked=3, probes=1, last_ack_recv_ms=4500))
    assert progress == TcpProgress(unacked=3, probes=1, since_last_ack_ms=4500)


@pytest.mark.parametrize(
    ("unacked", "probes", "since_ms", "waited"),
    [(0, 0, 9000, 0.0), (2, 0, 9000, 9.0), (0, 1, 2500, 2.5)],
    ids=["nothing outstanding", "bytes unacknowledged", "probe unanswered"],
)
def test_time_unacknowledged_counts_only_with_something_outstanding(
    unacked, probes, since_ms, waited
):
    """A quiet healthy connection has waited for nothing; outstanding bytes or a
    zero-window probe have waited since the last acknowledgement."""
    assert TcpProgress(unacked, probes, since_ms).unacknowledged_for() == waited


@pytest.fixture
def child():
    """A sleeping child process, stopped by pid at the end (continued first)."""
    process = subprocess.Popen(["sleep", "60"])
    try:
        yield process
    finally:
        process.send_signal(signal.SIGCONT)
        stop_process(process, 5)


def test_a_stopped_process_is_lost_and_a_sleeping_one_busy(child):
    """why_lost says a SIGSTOPped local process is stopped (and how to resume it); a
    sleeping one is busy."""
    wait_for(lambda: liveness.process_state(child.pid) == "S", timeout=10)
    assert liveness.why_lost(child.pid, None, 1.0) is None
    child.send_signal(signal.SIGSTOP)
    wait_for(lambda: liveness.process_state(child.pid) == "T", timeout=10)
    reason = liveness.why_lost(child.pid, None, 1.0)
    assert (
        reason == f"its process (pid {child.pid}) is stopped; resume it with kill -CONT {child.pid}"
    )


def test_a_process_that_is_gone_has_exited(child):
    """A local pid with no process behind it (or a zombie) is a kernel that has exited."""
    child.kill()
    wait_for(lambda: liveness.process_state(child.pid) in ("Z", "X"), timeout=10)
    assert liveness.why_lost(child.pid, None, 1.0) == f"its process (pid {child.pid}) has exited"
    child.wait(10)
    assert liveness.process_state(child.pid) == ""


def test_without_any_way_to_ask_silence_means_lost():
    """With neither a local pid nor a socket, silence alone decides, as it used to."""
    assert "stopped, overloaded or unreachable" in liveness.why_lost(None, None, 1.0)
