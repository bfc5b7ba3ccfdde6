"""Kernels as the tasks of one batch job: what every scheduler's launcher shares.

A ``BatchLauncher`` renders a job script from a template, submits it, and then waits
for the kernels the job starts to write their connection files into the profile's
``security/`` (a directory the compute nodes share with this machine, as the home
directory usually is). A scheduler is a subclass that says how to submit, query and
cancel a job, which directives ask for N tasks, and how the job runs its N kernels;
``SlurmLauncher`` and ``SGELauncher`` are a few dozen lines each. The default script::

    #!/bin/bash
    #SBATCH --job-name=ipk-default         <- {directives}: the scheduler's, then extra
    #SBATCH --ntasks=4                        ones from the profile
    ...
    ipk_kernel() {                         <- kernel $1: its connection file and log
        IPK_INDEX=$1                          are named after its number
        exec python -m ipython_parallel_kernel.apps.kernel --port 0 --connection-file ...
    }
    export -f ipk_kernel
    srun --kill-on-bad-exit=1 bash -c 'ipk_kernel $((0 + SLURM_PROCID))'   <- {launch}

While it waits, a progress bar on stderr shows how many kernels are ready and the
job's state (PENDING with the scheduler's reason, RUNNING); a job that ends first (it
failed, was cancelled, or its kernels could not start) or a submission the scheduler
refuses ends the wait at once with a one-line LaunchError quoting the scheduler or the
kernel's log. ``stop`` cancels the job, waits until the scheduler has ended it, and
then makes sure that no kernel of this machine outlived it.
"""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from traitlets import Bool, List, Unicode

from ..core.clusterfile import PREFIX
from ..core.connection import ConnectionInfo, read_connection_file
from ..errors import LaunchError, LaunchTimeout
from .base import (
    POLL_INTERVAL,
    LaunchedKernel,
    Launcher,
    Stoppable,
    final_line,
    one_line,
    remove_file,
)
from .local import KERNEL_MODULE, LocalLauncher

#: How often the scheduler is asked for the job's state while kernels start.
STATE_INTERVAL = 0.5
#: How long submitting, querying or cancelling a job may take.
COMMAND_TIMEOUT = 30.0

# Stands for the kernel's number in a path while it is rendered into the script, where
# the shell puts in $IPK_INDEX.
_INDEX_MARK = 987654321

DEFAULT_TEMPLATE = """\
#!/bin/bash
{directives}

# Kernel number $1: it writes its connection file and its log under its own number.
ipk_kernel() {{
    IPK_INDEX=$1
    exec {kernel}
}}
export -f ipk_kernel

{launch}
"""


@dataclass
class BatchKernel(LaunchedKernel):
    """A kernel that a job will start; its pid is known once it has written its file."""

    job_id: str = ""
    #: The job script's own output: what the scheduler or the script printed.
    job_log: Path | None = None


@dataclass(frozen=True)
class JobState:
    """A job as the scheduler reports it."""

    #: The scheduler's word for it (``PENDING``, ``RUNNING``, ``qw``, ``FAILED``...).
    state: str
    #: Why, when the scheduler says (``Priority``, ``NonZeroExitCode``...).
    reason: str = ""
    #: The job is over, or the scheduler no longer knows it.
    ended: bool = False
    #: The job waits in the queue: the scheduler has not started it yet.
    queued: bool = False

    def __str__(self) -> str:
        return f"{self.state} ({self.reason})" if self.reason else self.state


def last_line(path: Path | None) -> str | None:
    """The last non-empty line of a file; None if it is empty or absent."""
    try:
        return final_line(path.read_text(errors="replace")) if path is not None else None
    except OSError:
        return None


def what_it_said(kernel: LaunchedKernel) -> str:
    """The last line the kernel logged or, when it logged nothing (it never started),
    the last line of its job's own output, where the scheduler's errors go."""
    if (line := last_line(kernel.log_path)) is not None:
        return f"its log {kernel.log_path} ends: {line}"
    job_log = kernel.job_log if isinstance(kernel, BatchKernel) else None
    if (line := last_line(job_log)) is not None:
        return f"it logged nothing, and the job's output {job_log} ends: {line}"
    return f"neither it nor its job logged anything ({kernel.log_path})"


class BatchLauncher(Launcher):
    """Kernels started by one batch job per ``start``; subclasses name the scheduler."""

    #: The scheduler's name, for messages.
    scheduler: ClassVar[str]
    #: What starts each directive line of the job script.
    directive_prefix: ClassVar[str]

    flags = {
        "mpi": (
            {"BatchLauncher": {"mpi": True}},
            "Start the job's kernels as the ranks of one MPI program (slurm, sge).",
        )
    }

    job_template = Unicode(
        DEFAULT_TEMPLATE,
        help="The job script, with {directives}, {kernel} (the command of kernel "
        "$IPK_INDEX), {launch} (what starts the N kernels), {n}, {first} and {job_name}.",
    ).tag(config=True)
    extra_directives = List(
        Unicode(),
        help="More options for the scheduler, one directive line each "
        "(e.g. ['--mem=2G'] for Slurm, ['-l h_vmem=2G'] for Grid Engine).",
    ).tag(config=True)
    mpi = Bool(False, help="Start the kernels as the ranks of one MPI program.").tag(config=True)
    kernel_command = List(
        Unicode(),
        [sys.executable, "-m", KERNEL_MODULE],
        help="How a compute node runs a kernel (the same Python as here by default; "
        "name the cluster's own if the nodes have it elsewhere).",
    ).tag(config=True)

    @property
    def job_name(self) -> str:
        """The job's name in the queue."""
        return f"ipk-{self.cluster_id}"

    # -- what a scheduler's subclass says ---------------------------------------------

    def directives(self, n: int, job_log: Path) -> list[str]:
        """The scheduler's options for a job of ``n`` kernels, writing to ``job_log``."""
        raise NotImplementedError

    def launch(self, n: int, first: int) -> str:
        """The script's command that runs ``ipk_kernel first`` ... ``first + n - 1``."""
        raise NotImplementedError

    def submit_command(self, script: Path) -> list[str]:
        """The command that submits ``script`` and prints the job id."""
        raise NotImplementedError

    def parse_job_id(self, output: str) -> str:
        """The job id in the submit command's output; ValueError if there is none."""
        raise NotImplementedError

    def job_state(self, job_id: str) -> JobState:
        """The job's state as the scheduler reports it now."""
        raise NotImplementedError

    def cancel_command(self, job_ids: Sequence[str]) -> list[str]:
        """The command that cancels these jobs."""
        raise NotImplementedError

    # -- the shared machinery ---------------------------------------------------------

    def run_command(self, command: list[str]) -> subprocess.CompletedProcess:
        """Run a scheduler command, bounded; LaunchError if it cannot be run at all."""
        try:
            return subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise LaunchError(f"{shlex.join(command)}: {e}") from None

    def kernel_line(self, kernel_args: list[str], log_dir: Path) -> str:
        """The shell command of kernel ``$IPK_INDEX``, its output into its log."""

        def per_kernel(path_of: Callable[[int], Path]) -> str:
            before, after = str(path_of(_INDEX_MARK)).split(str(_INDEX_MARK))
            return f'{shlex.quote(before)}"$IPK_INDEX"{shlex.quote(after)}'

        command = [
            *map(shlex.quote, self.kernel_command),
            "--port 0 --connection-file",
            per_kernel(self.connection_file),
            "--profile",
            shlex.quote(self.profile),
            *map(shlex.quote, kernel_args),
        ]
        log = per_kernel(lambda index: self.log_path(log_dir, index))
        return f"{' '.join(command)} > {log} 2>&1"

    def job_log(self, log_dir: Path, first: int) -> Path:
        """Where the job that starts kernels from ``first`` on writes its own output."""
        return log_dir / f"{PREFIX}{self.cluster_id}-job-{first}.out"

    def job_script(self, n: int, kernel_args: list[str], log_dir: Path, first: int) -> str:
        """The job script that starts kernels ``first`` ... ``first + n - 1``."""
        job_log = self.job_log(log_dir, first)
        options = [*self.directives(n, job_log), *self.extra_directives]
        return self.job_template.format(
            directives="\n".join(f"{self.directive_prefix} {option}" for option in options),
            kernel=self.kernel_line(kernel_args, log_dir),
            launch=self.launch(n, first),
            n=n,
            first=first,
            job_name=self.job_name,
        )

    def start(
        self, n: int, kernel_args: list[str], log_dir: Path, first: int = 0
    ) -> list[LaunchedKernel]:
        """Submit one job that starts ``n`` kernels; LaunchError quotes a refusal."""
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        indices = range(first, first + n)
        # What an earlier cluster of this name left would look like a ready kernel.
        for index in indices:
            remove_file(self.log_path(log_dir, index))
            remove_file(self.connection_file(index))
        remove_file(self.job_log(log_dir, first))
        script = log_dir / f"{PREFIX}{self.cluster_id}-job-{first}.sh"
        script.write_text(self.job_script(n, kernel_args, log_dir, first))
        command = self.submit_command(script)
        done = self.run_command(command)
        output = one_line(done.stdout + done.stderr)
        try:
            if done.returncode != 0:
                raise ValueError(f"exit status {done.returncode}")
            job_id = self.parse_job_id(done.stdout)
        except ValueError:
            raise LaunchError(f"{shlex.join(command)} refused the job: {output}") from None
        self.log.info("%s job %s: %d kernels", self.scheduler, job_id, n)
        return [
            BatchKernel(
                index,
                0,  # its pid: in its connection file, once it has started
                self.log_path(log_dir, index),
                self.connection_file(index),
                job_id=job_id,
                job_log=self.job_log(log_dir, first),
            )
            for index in indices
        ]

    def wait_ready(self, kernels: Sequence[LaunchedKernel], timeout: float) -> list[ConnectionInfo]:
        """Wait until every kernel has written its connection file, showing the job's
        state; LaunchError as soon as the job ends first, LaunchTimeout at the deadline.

        Every kernel is stopped (its job cancelled) before the error propagates.
        """
        from tqdm import tqdm

        jobs = sorted({k.job_id for k in kernels if isinstance(k, BatchKernel)})
        deadline = time.monotonic() + timeout
        infos: dict[int, ConnectionInfo] = {}
        bar = tqdm(
            total=len(kernels),
            desc=f"{self.scheduler} job {', '.join(jobs)}",
            unit="kernel",
            file=sys.stderr,
            leave=False,
        )
        asked = 0.0
        states: dict[str, JobState] = {}
        said = ""
        try:
            while True:
                for kernel in kernels:
                    if kernel.index not in infos and self._ready(kernel):
                        infos[kernel.index] = self._batch_info(kernel, kernels[0].index)
                        bar.update()
                waiting = [k for k in kernels if k.index not in infos]
                if not waiting:
                    return [infos[k.index] for k in kernels]
                if time.monotonic() - asked >= STATE_INTERVAL:
                    asked = time.monotonic()
                    states = {job: self.job_state(job) for job in jobs}
                    said, shown = "; ".join(map(str, states.values())), said
                    bar.set_postfix_str(said, refresh=said != shown)
                    self._check_not_ended(waiting, states)
                if time.monotonic() >= deadline:
                    raise LaunchTimeout(self._not_ready(waiting, states, f"after {timeout:.0f} s"))
                time.sleep(POLL_INTERVAL)
        except BaseException:
            self.stop(kernels, timeout=5.0)
            raise
        finally:
            bar.close()

    def _batch_info(self, kernel: LaunchedKernel, first: int) -> ConnectionInfo:
        info = self._connection_info(kernel)
        if isinstance(kernel, BatchKernel):
            info.job_id = kernel.job_id
        if self.mpi and info.rank is None:
            # The job starts its kernels as ranks 0..n-1 in the order of their numbers.
            info.rank = kernel.index - first
        return info

    def _check_not_ended(self, waiting: list[LaunchedKernel], states: dict[str, JobState]) -> None:
        for kernel in waiting:
            job = kernel.job_id if isinstance(kernel, BatchKernel) else ""
            # Look once more: the kernel may have become ready just before the job ended.
            if job in states and states[job].ended and not self._ready(kernel):
                raise LaunchError(self._not_ready([kernel], states, "when its job ended"))

    def _not_ready(
        self, waiting: list[LaunchedKernel], states: dict[str, JobState], when: str
    ) -> str:
        kernel = waiting[0]
        job = kernel.job_id if isinstance(kernel, BatchKernel) else "?"
        state = states.get(job, JobState("not yet asked"))
        others = f" ({len(waiting) - 1} more)" if len(waiting) > 1 else ""
        said = (
            f"{self.scheduler} has not started the job yet: on a busy cluster, allow it "
            "longer with --timeout SECONDS (Cluster.timeout)"
            if state.queued
            else what_it_said(kernel)
        )
        return (
            f"{self.scheduler} job {job} is {state}: kernel {kernel.index}{others} "
            f"was not ready {when}; {said}"
        )

    def stop(self, kernels: Sequence[Stoppable], timeout: float, grace: float = 0.0) -> list[int]:
        """Cancel the kernels' jobs, wait (``grace`` + ``timeout``) until the scheduler has
        ended them, then stop any kernel of this machine that outlived its job; remove
        the connection files. Returns the pids still alive."""
        jobs = sorted({job for kernel in kernels if (job := _job_of(kernel))})
        # Kernels asked to shut down end their job by themselves: cancel the others.
        running = self._wait_ended(jobs, grace)
        if running:
            command = self.cancel_command(running)
            done = self.run_command(command)
            if done.returncode != 0:
                # It fails too for a job that ended just now: say it, and wait as for the rest.
                self.log.info("%s: %s", shlex.join(command), one_line(done.stdout + done.stderr))
        left = self._wait_ended(running, timeout)
        if left:
            self.log.warning("%s jobs %s were not ended in time", self.scheduler, left)
        infos = [info for kernel in kernels if (info := _info_of(kernel)) is not None]
        here = [info for info in infos if info.hostname == socket.gethostname()]
        # Ours do not daemonize, but a kernel that did would survive its job.
        alive = LocalLauncher(self.profile, self.cluster_id, parent=self.parent).stop(
            here, timeout, grace=timeout
        )
        for info in infos:
            if info.pid not in alive:
                remove_file(info.path)
        return alive

    def _wait_ended(self, jobs: list[str], timeout: float) -> list[str]:
        """Wait (bounded) until the scheduler has ended these jobs; those it has not."""
        deadline = time.monotonic() + timeout
        while True:
            left = [job for job in jobs if not self.job_state(job).ended]
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(STATE_INTERVAL / 5)


def _job_of(kernel: Stoppable) -> str | None:
    return kernel.job_id if isinstance(kernel, BatchKernel | ConnectionInfo) else None


def _info_of(kernel: Stoppable) -> ConnectionInfo | None:
    """A kernel's connection info: given, or from the file it wrote (if it did)."""
    if isinstance(kernel, ConnectionInfo):
        return kernel
    try:
        return read_connection_file(kernel.connection_file)
    except ValueError:
        return None
