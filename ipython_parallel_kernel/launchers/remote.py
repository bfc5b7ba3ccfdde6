"""The shell scripts the ``ssh`` launcher runs on each host, and the reading of their output.

Each script is given to ``sh -s`` on the host's standard input: whatever the user's
login shell is (bash, zsh, fish), plain POSIX sh runs it, and ssh adds no level of
quoting. One script per host does all the work of one step for every kernel there,
so a step costs one ssh connection per host, whatever the number of kernels.

What they print, one line each, prefixed so that whatever else a login shell prints
(a chatty ``.bashrc``) is ignored::

    ipk-pid 0 4242           start: kernel 0 runs as pid 4242
    ipk-file 0               wait: kernel 0 is ready; its connection file follows,
    {"ip": ..., ...}               up to
    ipk-end 0
    ipk-exited 1             wait: kernel 1 exited before it was ready; the last
    Traceback ...                  lines of its log (LOG_TAIL_LINES) follow, to the end
    ipk-timeout 1            wait: the same, for a kernel still not ready at the deadline
    ipk-left 4243            stop: the pids still alive after SIGKILL (none: empty)

A kernel is started with ``nohup CMD > log 2>&1 < /dev/null &``: with all three streams
taken from ssh, the session ends as soon as the script does (a child holding ssh's
stdout keeps ssh waiting), and the kernel lives on without it. Processes are signalled
only while ``ps`` shows a kernel's command line under that pid, so a pid reused by
another process after a kernel died is left alone.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from ..core.connection import KERNEL_READY
from .base import LOG_TAIL_LINES
from .local import KERNEL_MARKERS

# Shell functions the scripts share. `sleep 0.05` is not POSIX: where it fails, whole
# seconds. Deadlines are whole seconds too (`date +%s`), rounded up.
_MARKERS = " ".join(f"-e {shlex.quote(marker)}" for marker in KERNEL_MARKERS)
_COMMON = f"""
pause() {{ sleep 0.05 2>/dev/null || sleep 1; }}
alive() {{ ps -p "$1" -o args= 2>/dev/null | grep -q {_MARKERS}; }}
"""


@dataclass(frozen=True)
class Launch:
    """One kernel to start on a host: its number, shell command line and log."""

    index: int
    command: str
    log: str


@dataclass(frozen=True)
class Waiting:
    """One started kernel to wait for on a host."""

    index: int
    pid: int
    log: str
    connection_file: str


@dataclass(frozen=True)
class Outcome:
    """What ``wait`` reported for one kernel: ``file`` (then ``text`` is its connection
    file), ``exited`` or ``timeout`` (then ``text`` is the end of its log)."""

    index: int
    kind: str
    text: str


def _seconds(timeout: float) -> int:
    return max(0, math.ceil(timeout))


def start_script(directory: str, launches: Sequence[Launch]) -> str:
    """Make ``directory`` (mode 0700) and private logs, start each kernel, print its pid."""
    logs = " && ".join(f": > {shlex.quote(launch.log)}" for launch in launches)
    lines = [f"(umask 077 && mkdir -p {shlex.quote(directory)} && {logs}) || exit 1"]
    for launch in launches:
        lines.append(
            f"nohup {launch.command} > {shlex.quote(launch.log)} 2>&1 < /dev/null & "
            f'echo "ipk-pid {launch.index} $!"'
        )
    return "\n".join(lines) + "\n"


def wait_script(timeout: float, kernels: Sequence[Waiting]) -> str:
    """Wait (at most ``timeout`` s) until each kernel's log has its ready line, then
    print its connection file; stop at the first that exits or is late."""
    ready_line = shlex.quote(f"^{KERNEL_READY}")
    lines = [
        _COMMON,
        f"end=$(( $(date +%s) + {_seconds(timeout)} ))",
        f'ready() {{ grep -q {ready_line} "$1" 2>/dev/null; }}',
        'failed() { echo "ipk-$1 $2"; tail -n ' + str(LOG_TAIL_LINES) + ' "$3"; exit 0; }',
        "await() {",
        '  until ready "$3"; do',
        '    kill -0 "$2" 2>/dev/null || ready "$3" || failed exited "$1" "$3"',
        '    [ "$(date +%s)" -lt "$end" ] || failed timeout "$1" "$3"',
        "    pause",
        "  done",
        '  echo "ipk-file $1"; cat "$4"; echo; echo "ipk-end $1"',
        "}",
    ]
    for kernel in kernels:
        args = [str(kernel.index), str(kernel.pid), kernel.log, kernel.connection_file]
        lines.append("await " + shlex.join(args))
    return "\n".join(lines) + "\n"


def stop_script(grace: float, timeout: float, kernels: Sequence[tuple[int, Sequence[str]]]) -> str:
    """For ``(pid, files)`` pairs: wait ``grace`` s for the kernels to exit, SIGTERM,
    wait ``timeout``, SIGKILL, wait ``timeout``; remove the files of those gone; print
    the pids still alive."""
    lines = [
        _COMMON,
        "within() {",
        "  end=$(( $(date +%s) + $1 )); shift",
        "  while :; do",
        '    left=""; for p in "$@"; do alive "$p" && left="$left $p"; done',
        '    if [ -z "$left" ] || [ "$(date +%s)" -ge "$end" ]; then echo $left; return; fi',
        "    pause",
        "  done",
        "}",
        f"left=$(within {_seconds(grace)} {' '.join(str(pid) for pid, _ in kernels)})",
        f'[ -z "$left" ] || kill -TERM $left 2>/dev/null; left=$(within {_seconds(timeout)} $left)',
        f'[ -z "$left" ] || kill -KILL $left 2>/dev/null; left=$(within {_seconds(timeout)} $left)',
    ]
    for pid, files in kernels:
        if files:
            lines.append(f'case " $left " in *" {pid} "*) ;; *) rm -f {shlex.join(files)} ;; esac')
    lines.append('echo "ipk-left $left"')
    return "\n".join(lines) + "\n"


def read_pids(output: str) -> dict[int, int]:
    """``{index: pid}`` from what ``start_script`` printed."""
    return {int(m[1]): int(m[2]) for m in re.finditer(r"^ipk-pid (\d+) (\d+)$", output, re.M)}


def read_outcomes(output: str) -> list[Outcome]:
    """What ``wait_script`` printed, one Outcome per kernel it got to."""
    outcomes = []
    lines = iter(output.splitlines())
    for line in lines:
        match = re.fullmatch(r"ipk-(file|exited|timeout) (\d+)", line)
        if match is None:
            continue
        kind, index = match[1], int(match[2])
        if kind == "file":
            end = f"ipk-end {index}"
            body = []
            for part in lines:
                if part == end:
                    break
                body.append(part)
            outcomes.append(Outcome(index, kind, "\n".join(body)))
        else:
            outcomes.append(Outcome(index, kind, "\n".join(lines)))
    return outcomes


def read_left(output: str) -> list[int] | None:
    """The pids ``stop_script`` found still alive; None if it did not get to the end."""
    match = re.search(r"^ipk-left ?(.*)$", output, re.M)
    return None if match is None else [int(pid) for pid in match[1].split()]
