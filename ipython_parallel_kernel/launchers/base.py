"""The interface every launcher implements, and the parts they share.

A launcher starts the kernels of one cluster and stops them again; ``ipk-cluster``
does everything else (checking they answer, the cluster file, the report). Starting
is split in two so that N kernels start side by side: ``start`` launches all of them
and returns at once, ``wait_ready`` then waits (bounded) until each has printed its
ready line into its log::

    kernels = launcher.start(8, ["--gui", "wx"], log_dir)
    infos = launcher.wait_ready(kernels, timeout=30)  # list[ConnectionInfo]
    ...
    launcher.stop(infos, timeout=5)

Each kernel is told where to write its connection file
(``ipk-cluster-<id>-kernel-<i>.json`` in the profile's ``security/``), so once its
ready line is there, its address and key are read from a known place.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from traitlets import List
from traitlets.config import LoggingConfigurable

from ..core.clusterfile import PREFIX, check_cluster_id, kernel_connection_file_path
from ..core.connection import KERNEL_READY, ConnectionInfo, read_connection_file
from ..errors import LaunchError, LaunchTimeout

# How often wait_ready looks at the logs: short, because start-up time is measured
# in tenths of a second, and cheap, because a log holds a few lines by then.
POLL_INTERVAL = 0.01
LOG_TAIL_LINES = 10


@dataclass
class LaunchedKernel:
    """One kernel a launcher started, before it is known to be ready."""

    index: int
    pid: int
    log_path: Path
    connection_file: Path
    process: subprocess.Popen | None = field(default=None, repr=False, compare=False)


#: What ``stop`` accepts: kernels just launched, or the infos of a cluster file.
Stoppable = LaunchedKernel | ConnectionInfo


class ShellWords(List):
    """A list of strings that is also given as one shell-quoted string, on the command
    line (``--mpi-args "--hostfile hosts --mca btl self,tcp"``) or in a profile."""

    def set(self, obj: Any, value: Any) -> None:
        """Set the words; a string is split into them as a POSIX shell would."""
        super().set(obj, shlex.split(value) if isinstance(value, str) else value)

    def from_string_list(self, s_list: list[str]) -> Any:
        """Each command-line value split into words as a POSIX shell would."""
        return [word for s in s_list for word in shlex.split(s)]


def one_line(text: str) -> str:
    """A command's output as one line: its non-empty lines joined by ``; ``."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip()) or "(nothing)"


def final_line(text: str) -> str | None:
    """The last non-empty line of ``text``, stripped; None if it has none."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else None


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log, indented, or a note that there are none."""
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"    (cannot read {path}: {e.strerror})"
    tail = text.splitlines()[-lines:]
    if not tail:
        return "    (the log is empty)"
    return "\n".join(f"    {line}" for line in tail)


class Launcher(LoggingConfigurable):
    """Starts and stops the kernels of cluster ``cluster_id`` in ``profile``.

    A configurable: made with ``parent=`` a ``Cluster``, it reads its own section of
    the profile's ``ipk_cluster_config.py`` (``c.SSHLauncher.hosts = ...``).
    """

    #: The ``--launcher`` value that selects this launcher.
    name: ClassVar[str]
    #: The options it adds to ``ipk-cluster start`` (``"hosts": "SSHLauncher.hosts"``).
    aliases: ClassVar[dict[str, str]] = {}
    #: Its on/off options for ``ipk-cluster start``, as ``Application.flags``.
    flags: ClassVar[dict[str, tuple[dict[str, Any], str]]] = {}

    def __init__(self, profile: str = "default", cluster_id: str = "default", **kwargs: Any):
        super().__init__(**kwargs)
        self.profile = profile
        self.cluster_id = check_cluster_id(cluster_id)

    def connection_file(self, index: int) -> Path:
        """Where kernel ``index`` is told to write its connection file."""
        return kernel_connection_file_path(self.cluster_id, index, self.profile)

    def log_path(self, log_dir: Path, index: int) -> Path:
        """Where kernel ``index`` writes its output."""
        return log_dir / f"{PREFIX}{self.cluster_id}-kernel-{index}.log"

    def start(
        self, n: int, kernel_args: list[str], log_dir: Path, first: int = 0
    ) -> list[LaunchedKernel]:
        """Start ``n`` kernels with ``kernel_args``, numbered from ``first`` (a cluster
        that grows numbers its new kernels after the others); return at once."""
        raise NotImplementedError

    def is_running(self, kernel: LaunchedKernel) -> bool:
        """Whether a launched kernel's process is still there (for this ``wait_ready``,
        which tells a kernel that exited from one still starting)."""
        raise NotImplementedError

    def stop(self, kernels: Sequence[Stoppable], timeout: float, grace: float = 0.0) -> list[int]:
        """Stop kernels and remove their connection files; return the pids still alive.

        ``grace``: seconds to let kernels already asked to shut down exit by
        themselves before they are signalled. ``timeout`` bounds the wait after that.
        """
        raise NotImplementedError

    def wait_ready(self, kernels: Sequence[LaunchedKernel], timeout: float) -> list[ConnectionInfo]:
        """Wait until every kernel has printed its ready line; their connection infos.

        On a deadline or a kernel that exits first, every kernel is stopped and
        LaunchError names the kernel and quotes the end of its log.
        """
        started = time.monotonic()
        deadline = started + timeout
        infos: dict[int, ConnectionInfo] = {}
        try:
            while True:
                for kernel in kernels:
                    if kernel.index not in infos and self._ready(kernel):
                        infos[kernel.index] = self._connection_info(kernel)
                waiting = [k for k in kernels if k.index not in infos]
                if not waiting:
                    return [infos[k.index] for k in kernels]
                for kernel in waiting:
                    # Read the log once more: it may have become ready just before exiting.
                    if not self.is_running(kernel) and not self._ready(kernel):
                        raise LaunchError(
                            self._failure(
                                kernel, f"exited{self._status(kernel)} before it was ready"
                            )
                        )
                now = time.monotonic()
                if now >= deadline:
                    others = f" ({len(waiting) - 1} more not ready)" if len(waiting) > 1 else ""
                    raise LaunchTimeout(
                        self._failure(
                            waiting[0], f"was not ready after {now - started:.2f} s{others}"
                        )
                    )
                time.sleep(POLL_INTERVAL)
        except BaseException:
            self.stop(kernels, timeout=5.0)
            raise

    def _ready(self, kernel: LaunchedKernel) -> bool:
        try:
            with open(kernel.log_path, errors="replace") as log:
                return any(line.startswith(KERNEL_READY) for line in log)
        except FileNotFoundError:
            return False

    def _connection_info(self, kernel: LaunchedKernel) -> ConnectionInfo:
        try:
            return read_connection_file(kernel.connection_file)
        except ValueError as e:
            raise LaunchError(self._failure(kernel, f"printed its ready line, but {e}")) from None

    @staticmethod
    def _status(kernel: LaunchedKernel) -> str:
        if kernel.process is not None and kernel.process.returncode is not None:
            return f" with status {kernel.process.returncode}"
        return ""

    def _failure(self, kernel: LaunchedKernel, what: str) -> str:
        return (
            f"kernel {kernel.index} (pid {kernel.pid}) {what}; "
            f"last lines of {kernel.log_path}:\n{log_tail(kernel.log_path)}"
        )


def remove_file(path: str | Path | None) -> None:
    """Remove a file that may already be gone."""
    if path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
