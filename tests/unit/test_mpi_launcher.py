"""The MPI launcher's command line and environment, and how a kernel finds its rank,
without starting anything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from traitlets.config import Config

from ipython_parallel_kernel.apps.cluster import StartCommand
from ipython_parallel_kernel.kernel.mpi import rank_from_environment
from ipython_parallel_kernel.launchers import LAUNCHERS
from ipython_parallel_kernel.launchers.mpi import MPILauncher


def launcher(**settings: object) -> MPILauncher:
    return MPILauncher("default", "c1", config=Config({"MPILauncher": settings}))


def test_the_rank_comes_from_the_process_manager() -> None:
    """PMIx first, then Open MPI's own variable, then PMI; none outside MPI."""
    assert rank_from_environment({"PMIX_RANK": "3", "PMI_RANK": "1"}) == 3
    assert rank_from_environment({"OMPI_COMM_WORLD_RANK": "2"}) == 2
    assert rank_from_environment({"PMI_RANK": "0"}) == 0
    assert rank_from_environment({"PMIX_RANK": "", "SLURM_PROCID": "5"}) is None


def test_one_mpiexec_one_command_per_rank(tmp_path: Path) -> None:
    """mpi_args come first; then each rank has its own connection file and log, numbered
    from ``first``, behind ``sh -c 'exec ...'`` so the rank's pid is the kernel's."""
    command = launcher(mpi_args=["--hostfile", "h"]).command_line(2, ["--gui", "wx"], tmp_path, 4)
    assert command[:3] == ["mpiexec", "--hostfile", "h"]
    contexts = " ".join(command[3:]).split(" : ")
    assert len(contexts) == 2
    for index, context in zip((4, 5), contexts, strict=True):
        assert context.startswith(f'-n 1 sh -c exec "$0" "$@" > {tmp_path}/ipk-cluster-c1-kernel-')
        assert f"ipk-cluster-c1-kernel-{index}.log 2>&1" in context
        assert f"ipk-cluster-c1-kernel-{index}.json" in context
        assert context.endswith("--profile default --gui wx")


def test_environment_defaults_give_way_to_the_environment(monkeypatch) -> None:
    """Shared memory only by default, oversubscribing past the core count; what the
    environment already says wins."""
    monkeypatch.delenv("OMPI_MCA_btl", raising=False)
    monkeypatch.delenv("OMPI_MCA_rmaps_base_oversubscribe", raising=False)
    cores = os.cpu_count() or 1
    assert launcher().environment(1)["OMPI_MCA_btl"] == "self,vader"
    assert "OMPI_MCA_rmaps_base_oversubscribe" not in launcher().environment(cores)
    crowded = launcher().environment(cores + 1)
    assert crowded["OMPI_MCA_rmaps_base_oversubscribe"] == "1"
    assert crowded["OMPI_MCA_mpi_yield_when_idle"] == "1"
    monkeypatch.setenv("OMPI_MCA_btl", "self,tcp")
    assert launcher().environment(1)["OMPI_MCA_btl"] == "self,tcp"
    if os.geteuid() == 0:
        assert launcher().environment(1)["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] == "1"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--mpi-args", "--hostfile hosts --mca btl self,tcp"],
            ["--hostfile", "hosts", "--mca", "btl", "self,tcp"],
        ),
        (["--mpi-args=-x 'A B'"], ["-x", "A B"]),
    ],
)
def test_mpi_args_on_the_command_line_are_shell_words(argv: list[str], expected: list[str]) -> None:
    """ipk-cluster start --mpi-args "..." reaches MPILauncher.mpi_args split as a shell would."""
    app = StartCommand()
    app.parse_command_line(["--launcher", "mpi", *argv])
    assert app.config.MPILauncher.mpi_args == expected
    assert LAUNCHERS["mpi"] is MPILauncher
