"""``--launcher sge``: kernels in a real Grid Engine job on this machine.

One Grid Engine cell (sge_qmaster, sge_execd) serves the whole module; each test has
its own IPYTHONDIR, and whatever kernel is left with it is killed by pid at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import skip_or_fail
from schedulers import (
    SGE_ROOT,
    GridEngine,
    check_held_job_times_out,
    check_missing_kernel_command_fails_fast,
    check_ranks,
    check_start_use_list_stop,
    error_line,
    missing_commands,
    require_mpi,
    running,
)
from test_cluster_app import ipk_cluster, kill_leftovers, wait_gone

from ipython_parallel_kernel.launchers.cluster import Cluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GridEngine]:
    """A one-host Grid Engine cell with PE smp, up for the module's tests."""
    missing = missing_commands("sge_qmaster", "sge_execd", "qsub", "qstat", "qdel", "qconf")
    if missing or not (SGE_ROOT / "default").is_dir():
        skip_or_fail(
            "Grid Engine is not installed (apt install gridengine-master gridengine-exec "
            "gridengine-client)"
        )
    with running(GridEngine(tmp_path_factory.mktemp("sge"))) as engine:
        yield engine


@pytest.fixture
def profile(sge: GridEngine, ipython_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The default profile's directory, with Grid Engine's clients pointed at the cell;
    after the test, no job of it is left and no kernel of it runs."""
    for name, value in sge.env.items():
        if name.startswith("SGE_"):
            monkeypatch.setenv(name, value)
    directory = ipython_dir / "profile_default"
    try:
        yield directory
    finally:
        left = sge.jobs()
        assert kill_leftovers(ipython_dir) == []
        assert left == []


def test_start_use_list_stop(sge, profile):
    """Two kernels start in one job of 2 smp slots, run code there (JOB_ID), ``list``
    shows the job, ``stop`` ends the job and every kernel."""
    code = "import os; os.environ['JOB_ID'], os.environ['NSLOTS']"
    check_start_use_list_stop(sge.jobs, "sge", profile, code, ["('{job}', '2')"] * 2)


def test_stop_is_qdel_of_kernels_that_were_not_asked(sge, profile):
    """The launcher's own stop is qdel: it ends a job whose kernels still serve."""
    cluster = Cluster.from_profile(n=2, cluster_id="qdel", engines="sge")
    infos = cluster.start()
    launcher = cluster.make_launcher("sge")
    assert launcher.stop(cluster.kernels(), timeout=10) == []
    assert wait_gone([i.pid for i in infos]) == []
    assert sge.jobs() == []
    assert not any((profile / "security").glob("ipk-cluster-qdel-kernel-*.json"))
    cluster.path.unlink()


def test_a_parallel_environment_qsub_refuses_is_one_line_quoting_it(sge, profile):
    """qsub's refusal comes back at once as ipk-cluster's error, in its words."""
    started = ipk_cluster("start", "-n", "2", "--launcher", "sge", "--pe", "nope")
    assert started.returncode == 1
    message = error_line(started.stderr)
    assert message.startswith("ipk-cluster start: qsub -terse "), started.stderr
    assert 'the requested parallel environment "nope" does not exist' in message
    assert not (profile / "security" / "ipk-cluster-default.json").exists()


def test_a_kernel_command_that_does_not_exist_ends_the_job_fast(sge, profile):
    """The job ends at once (its kernels cannot start); the error says so and quotes
    the kernel's log, long before the timeout."""
    check_missing_kernel_command_fails_fast("sge", profile, r"Grid Engine job \d+ is ENDED")


def test_a_job_still_queued_at_the_timeout_is_cancelled_and_says_so(sge, profile):
    """A job held in the queue (qsub -h) past --timeout is cancelled; the error names
    its state and says how to wait longer."""
    hold = "c.SGELauncher.extra_directives = ['-h']"
    check_held_job_times_out("sge", profile, hold, r"Grid Engine job \d+ is hqw")


def test_mpi_kernels_are_the_ranks_of_one_program(sge, profile, monkeypatch):
    """--mpi: mpiexec -n $NSLOTS inside the job makes the kernels the ranks of one MPI
    program (Open MPI takes its slots from Grid Engine)."""
    require_mpi()
    if os.getuid() == 0:
        # Open MPI refuses root without these; the job gets them through qsub -V.
        monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT", "1")
        monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    started = ipk_cluster("start", "-n", "2", "--launcher", "sge", "--mpi")
    assert started.returncode == 0, started.stderr
    check_ranks(profile / "security" / "ipk-cluster-default.json")
    assert ipk_cluster("stop").returncode == 0
