"""Kernels as MPI ranks: real ``mpiexec`` (Open MPI), real mpi4py, real kernels.

One cluster of four ranks, started with ``ipk-cluster start --launcher mpi``, serves
the module's tests in order; the last one stops it. Every process left with a test's
IPYTHONDIR on its command line (ranks, and the ``mpiexec`` whose command line names
them) is killed by pid at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import skip_or_fail
from IPython.core.interactiveshell import InteractiveShell
from test_cluster_app import kill_leftovers, wait_gone

import ipython_parallel_kernel as ipp
from ipython_parallel_kernel import InteractiveCluster
from ipython_parallel_kernel.client.cluster import mpi_ranks
from ipython_parallel_kernel.core.clusterfile import read_cluster_file

CLUSTER = [sys.executable, "-m", "ipython_parallel_kernel.apps.cluster"]
N = 4


def require_mpi() -> None:
    """Skip (fail in CI) without mpiexec or mpi4py."""
    if shutil.which("mpiexec") is None:
        skip_or_fail("mpiexec is not installed (apt install openmpi-bin)")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        skip_or_fail("mpi4py is not installed (pip install mpi4py)")


def ipk_cluster(ipython_dir: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``ipk-cluster ARGS`` with ``ipython_dir`` as IPYTHONDIR, bounded."""
    return subprocess.run(
        [*CLUSTER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "IPYTHONDIR": str(ipython_dir)},
        stdin=subprocess.DEVNULL,
    )


def cpu_seconds(pids: list[int]) -> list[float]:
    """User plus system CPU time of each process so far."""
    return [sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids]


class Ranks:
    """The module's MPI cluster: its IPYTHONDIR, cluster file and a client of it."""

    def __init__(self, ipython_dir: Path) -> None:
        self.ipython_dir = ipython_dir
        self.path = ipython_dir / "profile_default" / "security" / "ipk-cluster-default.json"
        self.ic = InteractiveCluster.from_file(self.path, timeout=30)
        self.pids = [k.kernel_info["pid"] for k in self.ic.kernels]
        self.mpiexec = psutil.Process(self.pids[0]).ppid()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ranks]:
    """Four kernels as the ranks of one mpiexec, started by ``ipk-cluster``."""
    require_mpi()
    ipython_dir = tmp_path_factory.mktemp("ipython")
    started = time.monotonic()
    done = ipk_cluster(ipython_dir, "start", "-n", str(N), "--launcher", "mpi")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 20
    try:
        cluster = Ranks(ipython_dir)
        yield cluster
        cluster.ic.disconnect()
    finally:
        kill_leftovers(ipython_dir)


def test_every_kernel_knows_its_rank(ranks):
    """Target i is rank i of a world of 4: in status(), the cluster file and ipk-cluster list."""
    statuses = ranks.ic.status()
    assert [s["rank"] for s in statuses] == list(range(N))
    assert {s["size"] for s in statuses} == {N}
    assert len({s["mpi_world"] for s in statuses}) == 1
    infos = read_cluster_file(ranks.path)
    assert [info.rank for info in infos] == list(range(N))
    assert {info.launcher for info in infos} == {"mpi"}
    assert mpi_ranks(ranks.ic.kernels) == list(range(N))
    listed = ipk_cluster(ranks.ipython_dir, "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert [row[header.index("rank")] for row in rows] == ["0", "1", "2", "3"]
    assert ranks.mpiexec not in ranks.pids
    assert "mpiexec" in psutil.Process(ranks.mpiexec).name()


def test_px_collectives_in_ipython(ranks, capsys):
    """%px in a real InteractiveShell: bcast, scatter and allreduce of mpi4py's COMM_WORLD,
    as in ipyparallel's "Using MPI" page."""
    shell = InteractiveShell.instance()
    shell.colors = "nocolor"
    shell.run_cell("%load_ext ipython_parallel_kernel")
    try:
        shell.run_cell(f"%kernel connect {ranks.path}")
        shell.run_cell("%px from mpi4py import MPI; comm = MPI.COMM_WORLD")
        shell.run_cell("%px data = comm.bcast({'key': 42} if comm.rank == 0 else None, root=0)")
        shell.run_cell("%px part = comm.scatter([i * 10 for i in range(comm.size)], root=0)")
        capsys.readouterr()
        shell.run_cell("%px print(comm.rank, data['key'], part, comm.allreduce(part))")
        out = sorted(line for line in capsys.readouterr().out.splitlines() if line.strip())
        assert out == [f"[stdout:{r}] {r} 42 {r * 10} 60" for r in range(N)]
        shell.run_cell("%kernel list")
        header, *rows = [line.split() for line in capsys.readouterr().out.splitlines()]
        assert [row[header.index("rank")] for row in rows] == ["0", "1", "2", "3"]
    finally:
        shell.run_cell("%unload_ext ipython_parallel_kernel")


def test_idle_ranks_waiting_in_a_collective_use_no_cpu(ranks):
    """Ranks 1-3 wait about 2 s in bcast while rank 0 sleeps: under 0.3 CPU-s each."""
    ranks.ic.execute("from mpi4py import MPI; comm = MPI.COMM_WORLD; import time")
    before = cpu_seconds(ranks.pids)
    started = time.monotonic()
    ranks.ic.execute("if comm.rank == 0: time.sleep(2)\nx = comm.bcast(comm.rank, root=0)")
    assert time.monotonic() - started >= 2
    used = [after - b for after, b in zip(cpu_seconds(ranks.pids), before, strict=True)]
    assert all(seconds < 0.3 for seconds in used[1:]), used
    assert ranks.ic["x"] == [0] * N


def test_interrupt_a_collective_that_a_rank_never_joins(ranks):
    """Ranks 0-2 wait in allreduce that rank 3 skips; interrupt() stops them, and the
    next collectives of all four work."""
    ranks.ic.execute("from mpi4py import MPI; comm = MPI.COMM_WORLD")
    waiting = ranks.ic.execute("total = comm.allreduce(1) if comm.rank != 3 else None", block=False)
    time.sleep(0.5)
    assert not waiting.done()
    assert ranks.ic.interrupt() == [True, True, True, False]
    outcomes = waiting.get(10, return_exceptions=True)
    assert [type(o).__name__ for o in outcomes[:3]] == ["RemoteError"] * 3
    assert all("KeyboardInterrupt" in str(o) for o in outcomes[:3])
    for _ in range(2):
        values = [r.result["text/plain"] for r in ranks.ic.execute("comm.allreduce(comm.rank)")]
        assert values == ["6"] * N


def test_ctrl_c_of_px_interrupts_a_collective(ranks, capsys):
    """Ctrl-C while %px waits in a barrier rank 0 never reaches interrupts the others."""
    shell = InteractiveShell.instance()
    shell.run_cell("%load_ext ipython_parallel_kernel")
    try:
        shell.run_cell(f"%kernel connect {ranks.path}")
        main = threading.main_thread().ident
        threading.Timer(0.5, signal.pthread_kill, (main, signal.SIGINT)).start()
        started = time.monotonic()
        shell.run_cell("%%px\nimport time\nif comm.rank == 0: time.sleep(30)\nelse: comm.barrier()")
        assert time.monotonic() - started < 20
        assert "interrupted kernels 0, 1, 2, 3" in capsys.readouterr().err
        capsys.readouterr()
        shell.run_cell("%px comm.allreduce(1)")
        assert [line.rsplit(" ", 1)[-1] for line in capsys.readouterr().out.splitlines()] == [
            "4"
        ] * N
    finally:
        shell.run_cell("%unload_ext ipython_parallel_kernel")


def test_move_goes_over_mpi_and_equals_the_source(ranks):
    """move() of a numpy array (strided on the source) from rank 1 lands equal on every
    rank, received by Bcast into an array of its own (``base is None``: pickle-5 over TCP
    would leave a view of the message); a dict goes pickled, to a subset of ranks too; a
    name the source lacks fails there and on the targets, which are not left waiting."""
    ic = ranks.ic
    ic.execute("import numpy as np", block=True)
    ic.execute("a = np.arange(2_000_000, dtype=np.float64).reshape(1000, 2000)[:, ::2]", 1)
    assert ic.move("a", 1) == [ic.kernels[i].name for i in (0, 2, 3)]
    checks = ic.execute("bool((a == np.arange(2_000_000.0).reshape(1000, 2000)[:, ::2]).all())")
    assert [c.result["text/plain"] for c in checks] == ["True"] * N
    bases = ic.execute("a.base is None", [0, 2, 3])
    assert [b.result["text/plain"] for b in bases] == ["True"] * 3
    ic.execute("d = {'rank': comm.rank, 'text': 'from two'}", 2)
    assert ic.move("d", 2, [0, 3]) == [ic.kernels[i].name for i in (0, 3)]
    assert ic.pull("d", [0, 3]) == [{"rank": 2, "text": "from two"}] * 2
    with pytest.raises(ipp.CompositeError, match="NameError") as failed:
        ic.move("d", 1, [0])
    assert "rank 1 has no 'd' to send" in str(failed.value)


def test_ipk_cluster_stop_leaves_no_rank_nor_mpiexec(ranks):
    """ipk-cluster stop: every rank and the mpiexec are gone, the cluster file too."""
    ranks.ic.disconnect()
    done = ipk_cluster(ranks.ipython_dir, "stop")
    assert done.returncode == 0, done.stderr
    assert wait_gone([*ranks.pids, ranks.mpiexec], 10) == []
    assert not ranks.path.exists()


@pytest.fixture
def profile(ipython_dir: Path) -> Iterator[Path]:
    """The default profile of a private IPYTHONDIR; what is left running there is killed."""
    require_mpi()
    directory = ipython_dir / "profile_default"
    directory.mkdir(parents=True)
    try:
        yield directory
    finally:
        assert kill_leftovers(ipython_dir) == []


def test_ipyparallel_cluster_engines_mpi(profile):
    """`with ipp.Cluster(engines='mpi', n=4) as rc`: engine i is rank i; leaving the block
    stops the ranks and reaps the mpiexec it started."""
    with ipp.Cluster(engines="mpi", n=N) as rc:

        def rank() -> int:
            from mpi4py import MPI

            return MPI.COMM_WORLD.Get_rank()

        assert rc[:].apply_sync(rank) == list(range(N))
        pids = rc[:].apply_sync(os.getpid)
        mpiexec = psutil.Process(pids[0]).ppid()
    assert wait_gone([*pids, mpiexec], 10) == []


def test_kernel_start_magic_takes_the_mpi_launcher(profile, capsys):
    """%kernel start -n 2 --launcher mpi in a real InteractiveShell: %px runs on the two
    ranks, %kernel list shows them, %kernel stop ends the ranks and their mpiexec."""
    shell = InteractiveShell.instance()
    shell.colors = "nocolor"
    shell.run_cell("%load_ext ipython_parallel_kernel")
    try:
        shell.run_cell("%kernel start -n 2 --launcher mpi")
        assert "started 2 kernels" in capsys.readouterr().out
        shell.run_cell("%px import os; from mpi4py import MPI")
        shell.run_cell("%px print(MPI.COMM_WORLD.rank, MPI.COMM_WORLD.size, os.getpid())")
        printed = sorted(line.split() for line in capsys.readouterr().out.splitlines() if line)
        assert [row[:3] for row in printed] == [["[stdout:0]", "0", "2"], ["[stdout:1]", "1", "2"]]
        pids = [int(row[3]) for row in printed]
        mpiexec = psutil.Process(pids[0]).ppid()
        shell.run_cell("%kernel list")
        header, *rows = [line.split() for line in capsys.readouterr().out.splitlines()]
        assert [row[header.index("rank")] for row in rows] == ["0", "1"]
        shell.run_cell("%kernel stop")
        assert wait_gone([*pids, mpiexec], 10) == []
    finally:
        shell.run_cell("%unload_ext ipython_parallel_kernel")


def test_the_shipped_mpi_profile_starts_ranks(profile):
    """ipk-cluster start --profile mpi, as shipped: its kernels are ranks (no --launcher)."""
    ipython_dir = profile.parent
    done = ipk_cluster(ipython_dir, "start", "--profile", "mpi", "-n", "2")
    assert done.returncode == 0, done.stderr
    assert (ipython_dir / "profile_mpi" / "ipk_cluster_config.py").exists()
    path = ipython_dir / "profile_mpi" / "security" / "ipk-cluster-default.json"
    infos = read_cluster_file(path)
    assert [(info.launcher, info.rank) for info in infos] == [("mpi", 0), ("mpi", 1)]
    done = ipk_cluster(ipython_dir, "stop", "--profile", "mpi")
    assert done.returncode == 0, done.stderr
    assert wait_gone([info.pid for info in infos if info.pid], 10) == []


def test_a_missing_mpiexec_is_named(ipython_dir):
    """No such mpiexec: ipk-cluster start fails at once, its first line naming it."""
    done = ipk_cluster(ipython_dir, "start", "--launcher", "mpi", "--mpiexec", "no-such-mpiexec")
    assert done.returncode != 0
    assert "'no-such-mpiexec' is not on PATH" in done.stderr.splitlines()[0]


def test_mpiexec_that_fails_is_quoted(profile):
    """mpiexec refusing its arguments: the error names mpiexec and quotes what it printed."""
    done = ipk_cluster(
        profile.parent, "start", "-n", "2", "--launcher", "mpi", "--mpi-args=--no-such-option"
    )
    assert done.returncode != 0
    first = done.stderr.splitlines()[0]
    assert "mpiexec (pid" in first and "exited with status" in first
    assert "no-such-option" in done.stderr
