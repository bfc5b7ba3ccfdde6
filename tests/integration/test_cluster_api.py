"""``launchers.cluster.Cluster``: the Python side of ``ipk-cluster`` and ``%kernel start``,
with real kernel processes; whatever a test leaves running is killed by pid."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from test_cluster_app import ipk_cluster, kill_leftovers, wait_gone

import ipython_parallel_kernel as ipp
from ipython_parallel_kernel import InteractiveCluster
from ipython_parallel_kernel.errors import ClusterRunning, LaunchError
from ipython_parallel_kernel.launchers.cluster import Cluster


@pytest.fixture
def profile(ipython_dir: Path) -> Iterator[Path]:
    """The default profile's directory; every kernel left with this IPYTHONDIR is killed."""
    directory = ipython_dir / "profile_default"
    directory.mkdir(parents=True, exist_ok=True)
    try:
        yield directory
    finally:
        assert kill_leftovers(ipython_dir) == []


def test_start_connect_stop(profile):
    """start() writes the cluster file of answering kernels; a second start of the same
    cluster is refused naming the stop command; stop() ends every process and the file."""
    cluster = Cluster.from_profile(n=2, cluster_id="api")
    infos = cluster.start()
    assert cluster.path == profile / "security" / "ipk-cluster-api.json"
    ic = InteractiveCluster.from_file(cluster.path)
    try:
        assert [r.text for r in ic.execute("import os; os.getpid()")] == [str(i.pid) for i in infos]
    finally:
        ic.disconnect()
    with pytest.raises(ClusterRunning, match="ipk-cluster stop --cluster-id api"):
        Cluster.from_profile(n=1, cluster_id="api").start()
    assert [i.pid for i in cluster.stop()] == [i.pid for i in infos]
    assert wait_gone([i.pid for i in infos]) == []
    assert not cluster.path.exists()


def test_the_profile_sets_the_defaults_and_the_caller_wins(profile):
    """c.Cluster settings in ipk_cluster_config.py apply, to ipk-cluster too; keyword
    arguments override them."""
    (profile / "ipk_cluster_config.py").write_text("c.Cluster.n = 3\nc.Cluster.timeout = 45.0\n")
    assert (Cluster.from_profile().n, Cluster.from_profile().timeout) == (3, 45.0)
    assert Cluster.from_profile(n=1).n == 1
    result = ipk_cluster("start", "--cluster-id", "p")
    try:
        assert result.returncode == 0, result.stderr
        assert "ipk-cluster ready: 3 kernels" in result.stdout
    finally:
        ipk_cluster("stop", "--cluster-id", "p")


def test_a_kernel_that_cannot_start_stops_the_others(profile):
    """A bad kernel argument fails start() with the kernel's own words; nothing stays."""
    cluster = Cluster.from_profile(n=2, cluster_id="bad", kernel_args=["--no-such-option"])
    with pytest.raises(LaunchError, match="kernels it had started are stopped"):
        cluster.start()
    assert not cluster.path.exists()


def test_ipyparallel_cluster_with_statement(profile):
    """`with ipp.Cluster(n=2) as rc` starts kernels and gives a Client; leaving the block
    stops them; the id is fresh, so ipk-cluster's default cluster is left alone."""
    cluster = ipp.Cluster(n=2)
    assert cluster.cluster_id != "default"
    with cluster as rc:
        assert rc.ids == [0, 1]
        pids = rc[:].apply_sync(os.getpid)
        assert cluster.path.exists()
    assert wait_gone(pids) == []
    assert not cluster.path.exists()


def test_ipyparallel_cluster_async_and_engines(profile):
    """The coroutines, start_engines into a running cluster (numbered after the others),
    restart_engines, signal_engines by name, and from_file."""

    async def session() -> list[int]:
        cluster = ipp.Cluster(n=1, engines="local")
        rc = await cluster.start_and_connect()
        assert rc.ids == [0]
        rc.close()
        added = await cluster.start_engines(1)
        assert len(added) == 1 and len(cluster.kernels()) == 2
        again = ipp.Cluster.from_file(cluster.path)
        assert (again.cluster_id, again.n) == (cluster.cluster_id, 2)
        with again.connect_client_sync() as rc2:
            assert len(rc2[:].apply_sync(lambda: 1)) == 2
        before = [i.pid for i in cluster.kernels()]
        await cluster.restart_engines()
        after = [i.pid for i in cluster.kernels()]
        assert len(after) == 2 and not set(before) & set(after)
        await cluster.signal_engines("TERM")
        assert all(exited(pid) for pid in after)
        await cluster.stop_cluster()  # reaps them
        assert wait_gone([p for p in after if p is not None]) == []
        return after

    asyncio.run(session())


def exited(pid: int | None, timeout: float = 10.0) -> bool:
    """Whether ``pid`` exits within ``timeout`` s (a zombie not yet reaped has exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_signal_names_are_checked(profile):
    """An unknown signal name is a ValueError naming it."""
    with pytest.raises(ValueError, match="SIGNOPE"):
        ipp.Cluster(n=1).signal_engines_sync("SIGNOPE")


def test_wait_for_engines_connects_kernels_added_later(profile):
    """rc.wait_for_engines(n) connects the kernels start_engines adds; a wait for more
    than will come times out naming the count; send_signal reaches the processes."""
    cluster = ipp.Cluster(n=1)
    with cluster as rc:
        threading.Timer(0.2, cluster.start_engines_sync, (1,)).start()
        assert rc.wait_for_engines(2, timeout=60) == [0, 1]
        assert len(set(rc[:].apply_sync(os.getpid))) == 2
        with pytest.raises(TimeoutError, match="2 of 3 kernels"):
            rc.wait_for_engines(3, timeout=0.5)
        pid = rc.kernels[1].kernel_info["pid"]
        rc.send_signal("SIGTERM", targets=1)
        assert exited(pid)
