"""Is a silent kernel busy or gone? What a client can tell without the kernel's help.

A kernel running one long C call that holds the GIL answers nothing, not even a ping
(its network thread needs the GIL too), yet it is alive and answers once the call
returns. A kernel whose process dies is no question: its OS closes the connection at
once. Silence on an open connection leaves two cases that must count as lost: a
kernel that cannot run (stopped by SIGSTOP or a debugger) and a host that vanished.
Pings cannot tell either from a busy kernel; the operating system can:

- a kernel on this machine: its process state (``/proc/<pid>/stat``). Stopped or gone
  is lost; running or sleeping is busy.
- a kernel elsewhere: ``TCP_INFO`` on the connection. While the peer's OS acknowledges
  the pings the client keeps sending, its host is up and the kernel, still connected,
  is busy; bytes left unacknowledged for a whole heartbeat mean the host is unreachable.
  A stopped kernel on another machine cannot be told from a busy one this way (its OS
  still acknowledges): it counts as busy, and the client's timeout bounds the wait.
- neither available (no ``/proc``, no ``TCP_INFO``): silence alone means lost.

Answering pings from somewhere the GIL cannot block would need native code or a
second process per kernel; these checks need neither.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from pathlib import Path

#: ``/proc/<pid>/stat`` states of a process that cannot answer: stopped, traced, dead.
STOPPED = {"T": "stopped", "t": "stopped by a debugger"}
GONE = {"Z", "X"}

# The head of Linux's ``struct tcp_info``: eight u8 fields, then u32 fields up to
# ``tcpi_last_ack_recv`` (see linux/tcp.h).
_TCP_INFO = struct.Struct("=8B13I")


@dataclass(frozen=True)
class TcpProgress:
    """What ``TCP_INFO`` says about the bytes sent on a connection."""

    #: Segments sent and not yet acknowledged by the peer's OS.
    unacked: int
    #: Zero-window probes sent and not yet answered.
    probes: int
    #: Milliseconds since the peer's OS last acknowledged anything.
    since_last_ack_ms: int

    @classmethod
    def parse(cls, info: bytes) -> TcpProgress:
        """Decode the bytes of ``getsockopt(IPPROTO_TCP, TCP_INFO)``."""
        fields = _TCP_INFO.unpack_from(info)
        return cls(unacked=fields[12], probes=fields[3], since_last_ack_ms=fields[20])

    def unacknowledged_for(self) -> float:
        """Seconds our bytes have waited for the peer's OS in vain (0 if none wait)."""
        if not self.unacked and not self.probes:
            return 0.0
        return self.since_last_ack_ms / 1000


def process_state(pid: int) -> str | None:
    """The state letter of process ``pid`` on this machine ("" if there is no such
    process), or None where the system does not say (no ``/proc``)."""
    if not Path("/proc/self/stat").exists():
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""
    except OSError:
        return None
    # "pid (command) S ...": the command may hold spaces and parentheses of its own.
    return stat.rpartition(")")[2].split()[0]


def tcp_progress(sock: socket.socket) -> TcpProgress | None:
    """``TCP_INFO`` of a connected TCP socket, or None where the system has none."""
    option = getattr(socket, "TCP_INFO", None)
    if option is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, option, 104)
    except OSError:
        return None
    if len(info) < _TCP_INFO.size:
        return None
    return TcpProgress.parse(info)


def why_lost(pid: int | None, sock: socket.socket | None, heartbeat: float) -> str | None:
    """Why a kernel silent for ``heartbeat`` seconds is lost, or None if it is busy.

    ``pid`` is given only for a kernel on this machine; ``sock`` is the connection's
    TCP socket, if there is one to ask.
    """
    if pid is not None:
        state = process_state(pid)
        if state in STOPPED:
            return f"its process (pid {pid}) is {STOPPED[state]}; resume it with kill -CONT {pid}"
        if state == "" or state in GONE:
            return f"its process (pid {pid}) has exited"
        if state is not None:
            return None
    progress = tcp_progress(sock) if sock is not None else None
    if progress is None:
        return "the kernel is stopped, overloaded or unreachable"
    waited = progress.unacknowledged_for()
    if waited >= heartbeat:
        return (
            f"its host has acknowledged nothing for {waited:.1f} s: "
            "it is unreachable (network down or machine off)"
        )
    return None
