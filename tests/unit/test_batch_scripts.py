"""The job scripts of the batch launchers, rendered and run by bash without a scheduler."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from traitlets.config import Config

from ipython_parallel_kernel.launchers.sge import SGELauncher
from ipython_parallel_kernel.launchers.slurm import SlurmLauncher


@pytest.fixture
def awkward_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An IPYTHONDIR whose path needs quoting in a shell script."""
    path = tmp_path / "it's a $dir"
    path.mkdir()
    monkeypatch.setenv("IPYTHONDIR", str(path))
    return path


def test_each_kernel_writes_the_files_of_its_own_number(awkward_dir):
    """Run as the job would (SGE's script starts its kernels itself), kernels 3 and 4
    get their own connection file and log, through quoting of an awkward path."""
    config = Config({"SGELauncher": {"kernel_command": ["echo", "kernel"]}})
    launcher = SGELauncher("default", "c1", config=config)
    log_dir = awkward_dir / "log"
    log_dir.mkdir()
    script = log_dir / "job.sh"
    script.write_text(launcher.job_script(2, ["--gui", "no ne"], log_dir, first=3))
    subprocess.run(["bash", str(script)], check=True, timeout=10)
    for index in (3, 4):
        log = (log_dir / f"ipk-cluster-c1-kernel-{index}.log").read_text()
        assert log.split() == [
            "kernel",
            "--port",
            "0",
            "--connection-file",
            *str(launcher.connection_file(index)).split(),
            "--profile",
            "default",
            "--gui",
            "no",
            "ne",
        ]
    assert sorted(p.name for p in log_dir.glob("*.log")) == [
        "ipk-cluster-c1-kernel-3.log",
        "ipk-cluster-c1-kernel-4.log",
    ]


def test_slurm_directives_come_from_the_traits(awkward_dir):
    """--partition, --time, --account and extra_directives become #SBATCH lines; --mpi
    runs srun with pmix; the script is valid bash."""
    config = Config(
        {
            "SlurmLauncher": {"partition": "short", "time": "0:10:00", "account": "lab"},
            "BatchLauncher": {"extra_directives": ["--mem=2G"], "mpi": True},
        }
    )
    script = SlurmLauncher("default", "c2", config=config).job_script(4, [], awkward_dir, 0)
    directives = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert directives == [
        "#SBATCH --job-name=ipk-c2",
        "#SBATCH --ntasks=4",
        f"#SBATCH --output={awkward_dir}/ipk-cluster-c2-job-0.out",
        "#SBATCH --partition=short",
        "#SBATCH --time=0:10:00",
        "#SBATCH --account=lab",
        "#SBATCH --mem=2G",
    ]
    assert "srun --kill-on-bad-exit=1 --mpi=pmix bash -c" in script
    subprocess.run(["bash", "-n"], input=script, text=True, check=True, timeout=10)


def test_sge_asks_for_the_slots_of_its_parallel_environment(awkward_dir):
    """-pe NAME N, bash, the submitter's environment, one absolute output file."""
    launcher = SGELauncher("default", "c3", config=Config({"SGELauncher": {"pe": "mpi"}}))
    script = launcher.job_script(3, [], awkward_dir, 0)
    assert [line for line in script.splitlines() if line.startswith("#$")][:4] == [
        "#$ -N ipk-c3",
        "#$ -pe mpi 3",
        "#$ -S /bin/bash",
        "#$ -V",
    ]


def test_a_profile_replaces_the_job_template(awkward_dir):
    """job_template: what a site needs around the kernels (modules, environments)."""
    template = "#!/bin/bash\n{directives}\nmodule load python\n{launch}\n"
    config = Config({"SlurmLauncher": {"job_template": template}})
    script = SlurmLauncher("default", "c4", config=config).job_script(2, [], awkward_dir, 0)
    assert script.splitlines()[-2:] == [
        "module load python",
        "srun --kill-on-bad-exit=1 bash -c 'ipk_kernel $((0 + SLURM_PROCID))'",
    ]


@pytest.mark.parametrize(
    ("launcher", "output", "job_id"),
    [(SlurmLauncher, "42\n", "42"), (SlurmLauncher, "42;other\n", "42"), (SGELauncher, "7\n", "7")],
)
def test_the_job_id_is_read_from_the_submit_command(launcher, output, job_id):
    """sbatch --parsable (also on a federation) and qsub -terse."""
    assert launcher().parse_job_id(output) == job_id


@pytest.mark.parametrize("launcher", [SlurmLauncher, SGELauncher])
def test_output_without_a_job_id_is_refused(launcher):
    """Whatever else a submit command printed is not taken for a job id."""
    with pytest.raises(ValueError, match="no job id"):
        launcher().parse_job_id("Submitted batch job\n")
