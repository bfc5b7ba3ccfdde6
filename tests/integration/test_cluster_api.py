"""``launchers.cluster.Cluster``: the Python side of ``ipk-cluster`` and ``%kernel start``,
with real kernel processes; whatever a test leaves running is killed by pid."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cluster_app import ipk_cluster, kill_leftovers, wait_gone

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
