"""``--launcher slurm``: kernels as the tasks of a real Slurm job on this machine.

One Slurm (munged, slurmctld, slurmd) serves the whole module; each test has its own
IPYTHONDIR, and whatever kernel is left with it is killed by pid when the test ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import skip_or_fail
from schedulers import (
    SlurmCluster,
    check_held_job_times_out,
    check_missing_kernel_command_fails_fast,
    check_ranks,
    check_start_use_list_stop,
    error_line,
    kernel_rows,
    missing_commands,
    require_mpi,
    running,
)
from test_cluster_app import ipk_cluster, kill_leftovers, wait_gone

from ipython_parallel_kernel.core.clusterfile import read_cluster_file
from ipython_parallel_kernel.launchers.cluster import Cluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A one-node Slurm, up for the module's tests."""
    missing = missing_commands("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel")
    if missing:
        skip_or_fail(f"Slurm is not installed (no {', '.join(missing)}; apt install slurm-wlm)")
    with running(SlurmCluster(tmp_path_factory.mktemp("slurm"))) as cluster:
        yield cluster


@pytest.fixture
def profile(
    slurm: SlurmCluster, ipython_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """The default profile's directory, with Slurm's clients pointed at the module's
    Slurm; after the test, no job of it is left and no kernel of it runs."""
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    directory = ipython_dir / "profile_default"
    try:
        yield directory
    finally:
        left = slurm.jobs()
        assert kill_leftovers(ipython_dir) == []
        assert left == []


def test_start_use_list_stop(slurm, profile):
    """Two kernels start in one job, run code there (SLURM_JOB_ID, one task each),
    ``list`` shows the job, ``stop`` ends the job and every kernel."""
    code = "import os; os.environ['SLURM_JOB_ID'], os.environ['SLURM_PROCID']"
    expected = ["('{job}', '0')", "('{job}', '1')"]
    check_start_use_list_stop(slurm.jobs, "slurm", profile, code, expected)


def test_stop_cancels_the_job_of_kernels_that_were_not_asked(slurm, profile):
    """The launcher's own stop is scancel: it ends a job whose kernels still serve."""
    cluster = Cluster.from_profile(n=2, cluster_id="cancel", engines="slurm")
    infos = cluster.start()
    launcher = cluster.make_launcher("slurm")
    assert launcher.stop(cluster.kernels(), timeout=10) == []
    assert wait_gone([i.pid for i in infos]) == []
    assert launcher.job_state(infos[0].job_id).state in {"CANCELLED", "GONE"}
    assert not any((profile / "security").glob("ipk-cluster-cancel-kernel-*.json"))
    cluster.path.unlink()


def test_a_partition_sbatch_refuses_is_one_line_quoting_it(slurm, profile):
    """sbatch's refusal comes back at once as ipk-cluster's error, in its words."""
    started = ipk_cluster("start", "-n", "2", "--launcher", "slurm", "--partition", "nope")
    assert started.returncode == 1
    message = error_line(started.stderr)
    assert message.startswith("ipk-cluster start: sbatch --parsable "), started.stderr
    assert "invalid partition specified: nope" in message
    assert not (profile / "security" / "ipk-cluster-default.json").exists()


def test_a_kernel_command_that_does_not_exist_fails_the_job_fast(slurm, profile):
    """The job fails (the kernels cannot start); the error says so and quotes the
    kernel's log, long before the timeout."""
    check_missing_kernel_command_fails_fast("slurm", profile, r"Slurm job \d+ is FAILED")


def test_a_job_still_queued_at_the_timeout_is_cancelled_and_says_so(slurm, profile):
    """A job held in the queue (sbatch --hold) past --timeout is cancelled; the error
    names its state and says how to wait longer."""
    hold = "c.SlurmLauncher.extra_directives = ['--hold']"
    check_held_job_times_out("slurm", profile, hold, r"Slurm job \d+ is PENDING \(JobHeldUser\)")


def test_mpi_kernels_are_the_ranks_of_one_program(slurm, profile):
    """--mpi: srun --mpi=pmix makes the kernels the ranks of one MPI program."""
    require_mpi()
    started = ipk_cluster("start", "-n", "2", "--launcher", "slurm", "--mpi")
    assert started.returncode == 0, started.stderr
    check_ranks(profile / "security" / "ipk-cluster-default.json")
    assert ipk_cluster("stop").returncode == 0


def test_kernels_that_died_with_their_job_are_listed_dead_and_stop_cleans_up(slurm, profile):
    """A job cancelled from outside takes its kernels along: ``list`` names each dead
    kernel, and ``stop`` still removes the files."""
    started = ipk_cluster("start", "-n", "2", "--launcher", "slurm")
    assert started.returncode == 0, started.stderr
    infos = read_cluster_file(profile / "security" / "ipk-cluster-default.json")
    slurm.cancel(infos[0].job_id)
    assert wait_gone([i.pid for i in infos]) == []
    listed = ipk_cluster("list")
    rows = kernel_rows(listed.stdout)
    assert [(row[0], row[6]) for row in rows] == [("0", "dead"), ("1", "dead")], listed.stdout
    assert "every kernel is dead" in listed.stdout
    stopped = ipk_cluster("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not any((profile / "security").glob("ipk-cluster-default*.json"))


def test_the_shipped_slurm_profile_starts_a_slurm_cluster(slurm, profile, ipython_dir):
    """``--profile slurm`` as shipped: the kernels run in a Slurm job, and stop ends it."""
    started = ipk_cluster("start", "-n", "1", "--profile", "slurm")
    assert started.returncode == 0, started.stderr
    path = ipython_dir / "profile_slurm" / "security" / "ipk-cluster-default.json"
    [info] = read_cluster_file(path)
    assert (info.launcher, slurm.jobs()) == ("slurm", [info.job_id])
    assert ipk_cluster("stop", "--profile", "slurm").returncode == 0
    assert wait_gone([info.pid]) == []
