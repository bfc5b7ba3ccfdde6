"""Kernels as the tasks of a Slurm job: ``sbatch``, ``squeue``, ``scancel``.

``ipk-cluster start -n 4 --launcher slurm`` submits one job of 4 tasks whose script runs
``srun``, one kernel per task, each numbered by its ``SLURM_PROCID``; ``--mpi`` makes
them the ranks of one MPI program (``srun --mpi=pmix``, which Open MPI needs). The
job's state and reason come from ``squeue``, and from ``sacct`` once squeue has
forgotten the job (where accounting is enabled).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from traitlets import Unicode

from .base import one_line
from .batch import BatchLauncher, JobState

#: The states of a job that is over (squeue's long names).
ENDED_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "SPECIAL_EXIT",
        "TIMEOUT",
    }
)


class SlurmLauncher(BatchLauncher):
    """Kernels started by ``sbatch``: one job, ``srun`` one kernel per task."""

    name = "slurm"
    scheduler = "Slurm"
    directive_prefix = "#SBATCH"
    aliases = {
        "partition": "SlurmLauncher.partition",
        "time": "SlurmLauncher.time",
        "account": "SlurmLauncher.account",
    }

    partition = Unicode("", help="The partition (queue) to submit to; empty: the default.").tag(
        config=True
    )
    time = Unicode("", help="The job's time limit (e.g. 1:00:00); empty: the partition's.").tag(
        config=True
    )
    account = Unicode("", help="The account to charge; empty: the user's default.").tag(config=True)

    def directives(self, n: int, job_log: Path) -> list[str]:
        """Name, N tasks, the job's own output file, and what the traits ask for."""
        options = [f"--job-name={self.job_name}", f"--ntasks={n}", f"--output={job_log}"]
        for option, value in [
            ("partition", self.partition),
            ("time", self.time),
            ("account", self.account),
        ]:
            if value:
                options.append(f"--{option}={value}")
        return options

    def launch(self, n: int, first: int) -> str:
        """``srun`` one kernel per task; one that fails ends the job, and with it the wait."""
        mpi = " --mpi=pmix" if self.mpi else ""
        return f"srun --kill-on-bad-exit=1{mpi} bash -c 'ipk_kernel $(({first} + SLURM_PROCID))'"

    def submit_command(self, script: Path) -> list[str]:
        """``sbatch --parsable`` prints only the job id."""
        return ["sbatch", "--parsable", str(script)]

    def parse_job_id(self, output: str) -> str:
        """``123``, or ``123;cluster`` on a federation."""
        job_id = output.strip().split(";")[0]
        if not job_id.isdigit():
            raise ValueError(f"no job id in {output!r}")
        return job_id

    def job_state(self, job_id: str) -> JobState:
        """From ``squeue``; from ``sacct`` once squeue no longer lists the job."""
        done = self.run_command(["squeue", "-h", "-j", job_id, "-t", "all", "-o", "%T|%r"])
        if done.returncode == 0 and done.stdout.strip():
            return _state(done.stdout)
        if done.returncode != 0 and "Invalid job id" not in done.stderr:
            return JobState("UNKNOWN", f"squeue: {one_line(done.stderr)}")
        accounted = self.run_command(
            ["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State,Reason"]
        )
        if accounted.returncode == 0 and accounted.stdout.strip():
            return _state(accounted.stdout)
        return JobState("GONE", "Slurm no longer knows the job", ended=True)

    def cancel_command(self, job_ids: Sequence[str]) -> list[str]:
        """``scancel`` ends the job's steps, and every kernel of it."""
        return ["scancel", *job_ids]


def _state(output: str) -> JobState:
    state, _, reason = output.strip().splitlines()[0].partition("|")
    # sacct says "CANCELLED by 0"; squeue's reason for a job without one is "None".
    state = state.split()[0]
    return JobState(
        state,
        "" if reason == "None" else reason,
        ended=state in ENDED_STATES,
        queued=state == "PENDING",
    )
