"""The ipk-cluster command: start, list and stop real kernel processes.

Every test runs with its own IPYTHONDIR; whatever kernel process is left with that
directory on its command line is killed by pid when the test ends, so a failing test
leaves nothing running.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from ipython_parallel_kernel import RemoteKernel
from ipython_parallel_kernel.core.clusterfile import read_cluster_file
from ipython_parallel_kernel.core.connection import ConnectionInfo

CLUSTER = [sys.executable, "-m", "ipython_parallel_kernel.apps.cluster"]


def ipk_cluster(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``ipk-cluster ARGS`` to completion, bounded."""
    return subprocess.run(
        [*CLUSTER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
    )


def alive(pid: int) -> bool:
    """Whether a process with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    """Wait (bounded) until none of ``pids`` exists; those that still do."""
    deadline = time.monotonic() + timeout
    while (left := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def kernels_using(ipython_dir: Path) -> list[int]:
    """Pids of processes whose command line names ``ipython_dir`` (this test's kernels)."""
    marker = str(ipython_dir)
    pids = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.pid != os.getpid() and any(marker in part for part in cmdline):
            pids.append(process.pid)
    return pids


def kill_leftovers(ipython_dir: Path) -> list[int]:
    """SIGKILL, by pid, every process still running for this test; their pids."""
    left = kernels_using(ipython_dir)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_gone(left, 10)
    return left


@pytest.fixture
def no_leftovers(ipython_dir: Path) -> Iterator[Path]:
    """This test's IPYTHONDIR; on the way out, stop every cluster and kill what is left."""
    try:
        yield ipython_dir
    finally:
        ipk_cluster("stop", "--all", "--timeout", "5")
        kill_leftovers(ipython_dir)


@dataclass
class Cluster:
    """What ``ipk-cluster start`` printed and the cluster file it wrote."""

    output: str
    path: Path
    infos: list[ConnectionInfo]

    @property
    def pids(self) -> list[int]:
        return [info.pid for info in self.infos if info.pid is not None]


@pytest.fixture
def cluster(no_leftovers: Path) -> Cluster:
    """Four kernels started by ``ipk-cluster start -n 4 --cluster-id t``."""
    result = ipk_cluster("start", "-n", "4", "--cluster-id", "t")
    assert result.returncode == 0, result.stderr
    match = re.search(r"^ipk-cluster ready: 4 kernels, cluster file (\S+)$", result.stdout, re.M)
    assert match, result.stdout
    path = Path(match[1])
    return Cluster(result.stdout, path, read_cluster_file(path))


def test_start_writes_a_cluster_of_answering_kernels(cluster, ipython_dir):
    """start -n 4: a cluster file of 4 live kernels, each running code, listed in order."""
    assert cluster.path == ipython_dir / "profile_default/security/ipk-cluster-t.json"
    assert len(cluster.infos) == 4
    assert all(alive(pid) for pid in cluster.pids)
    for index, info in enumerate(cluster.infos):
        assert f"[{index}] 127.0.0.1:{info.port} pid {info.pid}" in cluster.output
        rk = RemoteKernel(info.path, timeout=30)
        try:
            assert rk.execute(f"import os; os.getpid() * 0 + {index}").text == str(index)
            assert rk.status()["pid"] == info.pid
        finally:
            rk.disconnect()
    assert f"InteractiveCluster.from_file('{cluster.path}')" in cluster.output


def test_list_shows_idle_kernels(cluster):
    """list: one row per kernel: address, host, pid, rank and job (none here), state, queue."""
    result = ipk_cluster("list")
    assert result.returncode == 0, result.stderr
    assert f"cluster t: 4 kernels, cluster file {cluster.path}" in result.stdout
    for index, info in enumerate(cluster.infos):
        host = re.escape(socket.gethostname())
        row = rf"^\s+{index}\s+127\.0\.0\.1:{info.port}\s+{host}\s+{info.pid}\s+-\s+-\s+idle\s+0$"
        assert re.search(row, result.stdout, re.M), result.stdout


def test_stop_leaves_no_process_and_no_file(cluster, ipython_dir):
    """stop: every kernel process gone, cluster file and connection files removed."""
    result = ipk_cluster("stop", "--cluster-id", "t")
    assert result.returncode == 0, result.stderr
    assert "stopped cluster t: 4 kernels" in result.stdout
    assert wait_gone(cluster.pids) == []
    assert not cluster.path.exists()
    assert not [info.path for info in cluster.infos if Path(info.path).exists()]
    assert ipk_cluster("list").stdout.strip() == "no clusters running in profile default"


def test_second_start_with_the_same_id_refuses(cluster):
    """start refuses while the cluster runs, says how to stop it, and changes nothing."""
    result = ipk_cluster("start", "-n", "2", "--cluster-id", "t")
    assert result.returncode == 1
    assert "already running" in result.stderr
    assert "ipk-cluster stop --cluster-id t" in result.stderr
    assert read_cluster_file(cluster.path) == cluster.infos
    assert all(alive(pid) for pid in cluster.pids)


def test_stop_of_an_unknown_id_names_the_known_ones(cluster):
    """stop --cluster-id nope exits 1 and lists the clusters that exist."""
    result = ipk_cluster("stop", "--cluster-id", "nope")
    assert result.returncode == 1
    assert "no cluster 'nope'" in result.stderr and "clusters there: t" in result.stderr
    assert all(alive(pid) for pid in cluster.pids)


def test_killed_kernel_shows_as_dead_and_stop_cleans_up(cluster):
    """A kernel killed with SIGKILL is `dead` in list; stop still removes everything."""
    victim = cluster.infos[1]
    os.kill(victim.pid, signal.SIGKILL)
    assert wait_gone([victim.pid]) == []
    result = ipk_cluster("list")
    assert re.search(
        rf"^\s+1\s+127\.0\.0\.1:{victim.port}\s+\S+\s+{victim.pid}\s+-\s+-\s+dead\s",
        result.stdout,
        re.M,
    )
    assert len(re.findall(r"\sidle\s", result.stdout)) == 3
    assert ipk_cluster("stop", "--cluster-id", "t").returncode == 0
    assert wait_gone(cluster.pids) == []
    assert not Path(victim.path).exists()


def test_too_small_a_timeout_fails_cleanly(no_leftovers):
    """start --timeout 0.001 exits 1 with the reason and leaves no process or file."""
    result = ipk_cluster("start", "-n", "4", "--cluster-id", "t", "--timeout", "0.001")
    assert result.returncode == 1
    assert "was not ready" in result.stderr and "--timeout 0.001" in result.stderr
    assert "Traceback" not in result.stderr
    assert wait_gone(kernels_using(no_leftovers)) == []
    assert kernels_using(no_leftovers) == []
    assert not list((no_leftovers / "profile_default/security").glob("ipk-cluster-*"))


def test_a_kernel_that_exits_is_reported_with_its_log(no_leftovers):
    """Kernels that refuse their arguments: start names one and quotes its log."""
    result = ipk_cluster("start", "-n", "2", "--", "--allow", "not-an-address")
    assert result.returncode == 1
    assert "exited with status 2 before it was ready" in result.stderr
    assert "'not-an-address' is not an IP address or network" in result.stderr
    assert wait_gone(kernels_using(no_leftovers)) == []


def test_help_explains_the_subcommands(no_leftovers):
    """--help names each subcommand with examples; start --help lists its flags."""
    result = ipk_cluster("--help")
    assert result.returncode == 0
    for text in ("start", "list", "stop", "ipk-cluster start -n 4", "ipk-cluster stop --all"):
        assert text in result.stdout
    start = ipk_cluster("start", "--help").stdout
    for flag in ("-n", "--launcher", "--gui", "--profile", "--cluster-id", "--timeout"):
        assert flag in start
    assert "each launcher's settings are its own" in start
    assert "--all" in ipk_cluster("stop", "--help").stdout
