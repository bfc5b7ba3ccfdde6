"""Kernels in a Grid Engine job: ``qsub``, ``qstat``, ``qdel``.

``ipk-cluster start -n 4 --launcher sge`` submits one job of 4 slots in a parallel
environment (``--pe``, default ``smp``, which must give all its slots on one host) whose
script starts the 4 kernels side by side and waits for them; ``--mpi`` starts them with
``mpiexec -n $NSLOTS`` instead (Open MPI reads the job's hosts from Grid Engine).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from traitlets import Unicode

from .base import one_line
from .batch import BatchLauncher, JobState


class SGELauncher(BatchLauncher):
    """Kernels started by ``qsub``: one job, ``N`` slots of a parallel environment."""

    name = "sge"
    scheduler = "Grid Engine"
    directive_prefix = "#$"
    aliases = {"pe": "SGELauncher.pe"}

    pe = Unicode("smp", help="The parallel environment whose slots the kernels take.").tag(
        config=True
    )

    def directives(self, n: int, job_log: Path) -> list[str]:
        """Name, N slots, bash, the submitter's environment, one absolute output file."""
        return [
            f"-N {self.job_name}",
            f"-pe {self.pe} {n}",
            "-S /bin/bash",
            "-V",
            f"-o {job_log}",
            "-j y",
        ]

    def launch(self, n: int, first: int) -> str:
        """The N kernels in the background, then wait: the job lasts as long as they do."""
        if self.mpi:
            return f"mpiexec -n $NSLOTS bash -c 'ipk_kernel $(({first} + OMPI_COMM_WORLD_RANK))'"
        return f"for task in $(seq 0 {n - 1}); do ipk_kernel $(({first} + task)) & done\nwait"

    def submit_command(self, script: Path) -> list[str]:
        """``qsub -terse`` prints only the job id."""
        return ["qsub", "-terse", str(script)]

    def parse_job_id(self, output: str) -> str:
        """The number ``qsub -terse`` printed."""
        job_id = output.strip()
        if not job_id.isdigit():
            raise ValueError(f"no job id in {output!r}")
        return job_id

    def job_state(self, job_id: str) -> JobState:
        """From ``qstat``'s line for the job (``qw``, ``r``, ``Eqw``...); a job in error
        gives the reason ``qstat -j`` tells, and a job qstat no longer lists is over."""
        done = self.run_command(["qstat", "-u", "*"])
        if done.returncode != 0:
            return JobState("UNKNOWN", f"qstat: {one_line(done.stderr)}")
        for line in done.stdout.splitlines()[2:]:
            fields = line.split()
            if fields and fields[0] == job_id:
                state = fields[4]
                if "E" in state:
                    return JobState(state, self._error_reason(job_id), ended=True)
                # qw, or hqw for a job on hold.
                return JobState(state, queued=state.endswith("qw"))
        return JobState("ENDED", "qstat no longer lists it", ended=True)

    def _error_reason(self, job_id: str) -> str:
        details = self.run_command(["qstat", "-j", job_id]).stdout
        reasons = [
            line.split(":", 2)[-1].strip()
            for line in details.splitlines()
            if "error reason" in line
        ]
        return reasons[0] if reasons else "in error"

    def cancel_command(self, job_ids: Sequence[str]) -> list[str]:
        """``qdel`` ends the job, and the kernels in it."""
        return ["qdel", *job_ids]
