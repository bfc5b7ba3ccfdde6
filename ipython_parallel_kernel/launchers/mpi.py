"""Kernels as the ranks of one MPI world: one ``mpiexec`` runs them all.

``ipk-cluster start -n 4 --launcher mpi`` runs one command per rank (MPMD), so that
kernel ``first + r`` is rank ``r`` and has its own connection file and log::

    mpiexec [mpi_args] -n 1 sh -c 'exec "$0" "$@" > .../ipk-cluster-<id>-kernel-0.log 2>&1' \
        python -m ipython_parallel_kernel.apps.kernel --port 0 \
        --connection-file .../ipk-cluster-<id>-kernel-0.json ... : -n 1 sh -c ... kernel-1 ...

(``sh`` execs the kernel, so the rank's pid is the kernel's; ``mpiexec`` would mix the
ranks' output, ready lines included, in its own.) What ``mpiexec`` itself says goes to
``ipk-cluster-<id>-mpiexec-<first>.log``. On one machine it works as shipped: as root
the launcher allows Open MPI to run as root, it lets more ranks than cores share them
(and then has idle ranks yield), and Open MPI's ranks talk over shared memory only
(``btl self,vader``), opening no TCP ports. All of these are environment defaults:
what the environment or ``mpi_args`` says wins.

Stopping signals each rank by pid (SIGTERM, then SIGKILL), as the cluster file lists
them, and the ``mpiexec`` too when this process started it; an ``mpiexec`` whose ranks
are gone exits by itself. A rank finalizes MPI only once every rank stops (see
``kernel.mpi``), so a cluster stops as one.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from traitlets import Unicode

from ..core.clusterfile import PREFIX
from ..core.connection import ConnectionInfo, read_connection_file
from .base import LaunchedKernel, LaunchError, ShellWords, Stoppable, log_tail
from .local import LocalLauncher, StopTarget, _private, spawn_logged, terminate

#: Open MPI refuses to run as root unless told twice.
ROOT_VARIABLES = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
#: Ranks over shared memory only: no TCP listener per rank on every interface.
LOOPBACK_VARIABLES = {"OMPI_MCA_btl": "self,vader"}
#: More ranks than cores: Open MPI 4 (rmaps) and 5 (PRRTE) allow it, and idle ranks yield.
OVERSUBSCRIBE_VARIABLES = {
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    "PRTE_MCA_rmaps_default_mapping_policy": ":oversubscribe",
    "OMPI_MCA_mpi_yield_when_idle": "1",
}


class MPILauncher(LocalLauncher):
    """Kernels as the ranks of one ``mpiexec``: ``mpi4py``'s ``MPI.COMM_WORLD`` in
    ``%px`` code, rank 0 first."""

    name = "mpi"
    aliases = {"mpi-args": "MPILauncher.mpi_args", "mpiexec": "MPILauncher.mpiexec"}

    mpiexec = Unicode(
        "mpiexec", help="The MPI launcher command (mpiexec, mpirun, or a path to one)."
    ).tag(config=True)
    mpi_args = ShellWords(
        Unicode(),
        help="Arguments for mpiexec before the ranks' commands, e.g. "
        "['--hostfile', 'hosts'] or, on the command line, --mpi-args \"--hostfile hosts\".",
    ).tag(config=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The log of each mpiexec this launcher started, by pid, for error messages.
        self._mpiexec_logs: dict[int, Path] = {}

    def command_line(
        self, n: int, kernel_args: list[str], log_dir: Path, first: int = 0
    ) -> list[str]:
        """The ``mpiexec`` command that starts kernels ``first``...``first + n - 1``."""
        line = [self.mpiexec, *self.mpi_args]
        for index in range(first, first + n):
            log = shlex.quote(str(self.log_path(log_dir, index)))
            line += [":"] if index > first else []
            line += ["-n", "1", "sh", "-c", f'exec "$0" "$@" > {log} 2>&1']
            line += self.command(index, kernel_args)
        return line

    def environment(self, n: int) -> dict[str, str]:
        """The environment of ``mpiexec`` and its ranks: ours, plus the defaults that
        make ``n`` ranks work on this machine where nothing says otherwise."""
        defaults = dict(LOOPBACK_VARIABLES)
        if os.geteuid() == 0:
            defaults.update(ROOT_VARIABLES)
        if n > (os.cpu_count() or 1):
            defaults.update(OVERSUBSCRIBE_VARIABLES)
        return {**defaults, **os.environ}

    def mpiexec_log_path(self, log_dir: Path, first: int) -> Path:
        """Where the ``mpiexec`` that starts kernels from ``first`` on writes what it says."""
        return log_dir / f"{PREFIX}{self.cluster_id}-mpiexec-{first}.log"

    def start(
        self, n: int, kernel_args: list[str], log_dir: Path, first: int = 0
    ) -> list[LaunchedKernel]:
        """Start one ``mpiexec`` running ``n`` kernels; return at once.

        Each LaunchedKernel carries the pid of ``mpiexec`` until its ready line is
        read, then its own (see ``_connection_info``).
        """
        if shutil.which(self.mpiexec) is None:
            raise LaunchError(
                f"cannot start {n} MPI kernels: {self.mpiexec!r} is not on PATH (install "
                "Open MPI or MPICH, or set c.MPILauncher.mpiexec to its path)"
            )
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        mpiexec_log = self.mpiexec_log_path(log_dir, first)
        command = self.command_line(n, kernel_args, log_dir, first)
        for index in range(first, first + n):
            # Made here, private: the rank's shell would make it with the umask's mode.
            open(self.log_path(log_dir, index), "w", opener=_private).close()
        process = spawn_logged(command, mpiexec_log, self.mpiexec, self.environment(n))
        self._mpiexec_logs[process.pid] = mpiexec_log
        return [
            LaunchedKernel(
                index,
                process.pid,
                self.log_path(log_dir, index),
                self.connection_file(index),
                process,
            )
            for index in range(first, first + n)
        ]

    def is_running(self, kernel: LaunchedKernel) -> bool:
        """Whether the ``mpiexec`` that runs the kernel is still there."""
        return kernel.process is not None and kernel.process.poll() is None

    def stop(self, kernels: Sequence[Stoppable], timeout: float, grace: float = 0.0) -> list[int]:
        """Stop every rank by pid and the ``mpiexec`` this process started (SIGTERM, then
        SIGKILL after ``timeout``); the pids still alive."""
        targets: list[StopTarget] = []
        started: dict[int, StopTarget] = {}
        for kernel in kernels:
            if isinstance(kernel, ConnectionInfo):
                targets.append(StopTarget.of(kernel))
                continue
            if kernel.process is not None and kernel.process.pid not in started:
                started[kernel.process.pid] = StopTarget(kernel.process.pid, kernel.process)
            rank_pid = self._rank_pid(kernel)
            if rank_pid is not None:
                targets.append(StopTarget(rank_pid, connection_file=kernel.connection_file))
        return terminate([*targets, *started.values()], timeout, grace)

    @staticmethod
    def _rank_pid(kernel: LaunchedKernel) -> int | None:
        """The kernel's own pid, when known: from its ready line, or its connection
        file if it got that far."""
        if kernel.process is None or kernel.pid != kernel.process.pid:
            return kernel.pid
        try:
            return read_connection_file(kernel.connection_file).pid
        except (OSError, ValueError):
            return None

    def _connection_info(self, kernel: LaunchedKernel) -> ConnectionInfo:
        info = super()._connection_info(kernel)
        # From now on the kernel is its rank's process, not mpiexec: what Cluster
        # matches against the cluster file, and what stop signals.
        if info.pid is not None:
            kernel.pid = info.pid
        return info

    def _failure(self, kernel: LaunchedKernel, what: str) -> str:
        mpiexec = kernel.process.pid if kernel.process else kernel.pid
        said = self._mpiexec_logs.get(mpiexec)
        return f"{self.mpiexec} (pid {mpiexec}): {super()._failure(kernel, what)}" + (
            f"\n{self.mpiexec} said, in {said}:\n{log_tail(said)}" if said else ""
        )
