"""Kernels as local processes, each in its own session so they outlive ``ipk-cluster``.

Each kernel is ``python -m ipython_parallel_kernel.apps.kernel --port 0 ...`` with its
output in a log file and no terminal, started with ``start_new_session`` so that
neither the exit of ``ipk-cluster start`` nor a Ctrl-C in its terminal reaches it.
They are stopped by pid; a pid is signalled only while ``/proc/<pid>/cmdline`` still
names a kernel, so a pid reused by another process after a kernel died is left alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .base import LaunchedKernel, Launcher, LaunchError, Stoppable, remove_file

KERNEL_MODULE = "ipython_parallel_kernel.apps.kernel"
# What a kernel's command line contains, whether started by us or as ``ipk-kernel``.
KERNEL_MARKERS = (KERNEL_MODULE, "ipk-kernel")
POLL_INTERVAL = 0.02


def _command_line(pid: int) -> str | None:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except FileNotFoundError:
        if Path("/proc/self/cmdline").exists():
            return None  # /proc works here, so the process is gone
    except OSError:
        return None
    # No /proc (macOS, the BSDs): ask ps.
    try:
        out = subprocess.run(
            ["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def is_kernel_process(pid: int) -> bool:
    """Whether ``pid`` is a live process whose command line names a kernel.

    A zombie has an empty command line, so a kernel that exited but was not yet
    reaped counts as gone.
    """
    command = _command_line(pid)
    return command is not None and any(marker in command for marker in KERNEL_MARKERS)


class StopTarget:
    """One process to stop: our own child (signalled and reaped through its Popen), or
    a kernel known by pid (signalled only while its command line names a kernel)."""

    def __init__(
        self,
        pid: int | None,
        process: subprocess.Popen | None = None,
        connection_file: str | Path | None = None,
    ) -> None:
        self.pid = pid
        self.process = process
        #: Removed once the process is gone: a killed kernel cannot remove it itself.
        self.connection_file = connection_file

    @classmethod
    def of(cls, kernel: Stoppable) -> StopTarget:
        """The target for a kernel just launched, or one a cluster file lists."""
        if isinstance(kernel, LaunchedKernel):
            return cls(kernel.pid, kernel.process, kernel.connection_file)
        return cls(kernel.pid, None, kernel.path)

    def alive(self) -> bool:
        """Whether the process is still there (a zombie counts as gone)."""
        if self.process is not None:
            # poll() also reaps our child, so it never lingers as a zombie.
            return self.process.poll() is None
        return self.pid is not None and is_kernel_process(self.pid)

    def signal(self, signum: int) -> None:
        """Send ``signum``, unless the process is gone (or its pid is another's now)."""
        with contextlib.suppress(ProcessLookupError):
            if self.process is not None:
                self.process.send_signal(signum)
            elif self.pid is not None and is_kernel_process(self.pid):
                os.kill(self.pid, signum)


def _wait_gone(targets: list[StopTarget], timeout: float) -> list[StopTarget]:
    deadline = time.monotonic() + timeout
    while True:
        alive = [t for t in targets if t.alive()]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(POLL_INTERVAL)


def terminate(targets: list[StopTarget], timeout: float, grace: float = 0.0) -> list[int]:
    """Let the targets exit for ``grace`` s, SIGTERM them, wait up to ``timeout``, then
    SIGKILL; remove the connection files of those gone. The pids still alive."""
    alive = _wait_gone(targets, grace)
    for target in alive:
        target.signal(signal.SIGTERM)
    alive = _wait_gone(alive, timeout)
    for target in alive:
        target.signal(signal.SIGKILL)
    alive = _wait_gone(alive, timeout)
    # A kernel that exits in order removes its own file; a killed one cannot.
    for target in targets:
        if target not in alive:
            remove_file(target.connection_file)
    return [target.pid for target in alive if target.pid is not None]


def _private(path: str, flags: int) -> int:
    # Logs may hold user output: readable by their owner only, like the keys.
    return os.open(path, flags, 0o600)


def spawn_logged(
    command: list[str], log_path: Path, what: str, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start ``command`` in a session of its own, no terminal, its output in a new
    private log; LaunchError names ``what`` if it cannot start."""
    try:
        with open(log_path, "w", opener=_private) as log:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
    except OSError as e:
        raise LaunchError(f"cannot start {what}: {e}") from None


class LocalLauncher(Launcher):
    """Kernels as processes on this machine."""

    name = "local"

    def command(self, index: int, kernel_args: list[str]) -> list[str]:
        """The command line of kernel ``index``."""
        return [
            sys.executable,
            "-m",
            KERNEL_MODULE,
            "--port",
            "0",
            "--connection-file",
            str(self.connection_file(index)),
            "--profile",
            self.profile,
            *kernel_args,
        ]

    def start(
        self, n: int, kernel_args: list[str], log_dir: Path, first: int = 0
    ) -> list[LaunchedKernel]:
        """Start ``n`` kernels at once, each logging to its own file in ``log_dir``."""
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        kernels: list[LaunchedKernel] = []
        try:
            for index in range(first, first + n):
                kernels.append(self._start_one(index, kernel_args, log_dir))
        except BaseException:
            self.stop(kernels, timeout=5.0)
            raise
        return kernels

    def _start_one(self, index: int, kernel_args: list[str], log_dir: Path) -> LaunchedKernel:
        log_path = self.log_path(log_dir, index)
        command = self.command(index, kernel_args)
        process = spawn_logged(command, log_path, f"kernel {index} ({command[0]})")
        return LaunchedKernel(index, process.pid, log_path, self.connection_file(index), process)

    def is_running(self, kernel: LaunchedKernel) -> bool:
        """Whether the kernel's process is still there (reaping it if it exited)."""
        return StopTarget.of(kernel).alive()

    def stop(self, kernels: Sequence[Stoppable], timeout: float, grace: float = 0.0) -> list[int]:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; remove the connection files.

        Returns the pids still alive after all that (normally none).
        """
        return terminate([StopTarget.of(kernel) for kernel in kernels], timeout, grace)
