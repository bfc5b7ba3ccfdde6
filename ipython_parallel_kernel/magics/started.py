"""Clusters ``%kernel start`` makes: started with ``ipk-cluster``, stopped with the session.

Each gets a cluster id of its own (``session-<pid>-<n>``), so stopping one leaves other
sessions' clusters, and this session's others, alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from itertools import count

from IPython.core.error import UsageError

from ..client.cluster import InteractiveCluster
from ..core.clusterfile import cluster_file_path

CLUSTER_APP = [sys.executable, "-m", "ipython_parallel_kernel.apps.cluster"]
#: Bounds on ``ipk-cluster start`` and ``stop``, so a stuck one cannot hang the session.
START_TIMEOUT = 120
STOP_TIMEOUT = 60


@dataclass
class StartedCluster:
    """A cluster ``%kernel start`` made, and the addresses of its kernels not yet stopped."""

    cluster_id: str
    profile: str
    running: set[str]

    def stop(self) -> None:
        """``ipk-cluster stop`` it: what still runs is shut down, its cluster file removed."""
        subprocess.run(
            [*CLUSTER_APP, "stop", "--cluster-id", self.cluster_id, "--profile", self.profile],
            capture_output=True,
            timeout=STOP_TIMEOUT,
            check=False,
        )


@dataclass
class StartedClusters:
    """The clusters one session started, stopped when their kernels are or it ends."""

    clusters: list[StartedCluster] = field(default_factory=list)
    _numbers: count = field(default_factory=lambda: count(1))

    def start(self, n: int, gui: str, profile: str) -> InteractiveCluster:
        """Start ``n`` kernels with ``ipk-cluster start``; a cluster connected to them."""
        if n < 1:
            raise UsageError("-n takes a number of kernels, 1 or more")
        cluster_id = f"session-{os.getpid()}-{next(self._numbers)}"
        command = [*CLUSTER_APP, "start", "-n", str(n), "--cluster-id", cluster_id]
        command += ["--profile", profile, "--gui", gui]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise UsageError(f"could not start kernels:\n{done.stdout}{done.stderr}".rstrip())
        # Where ipk-cluster writes it follows from the id and profile: no need to read its output.
        cluster = InteractiveCluster.from_file(cluster_file_path(cluster_id, profile))
        self.clusters.append(StartedCluster(cluster_id, profile, {k.name for k in cluster}))
        return cluster

    def stopped(self, names: list[str]) -> None:
        """Note that the kernels called ``names`` were shut down; a cluster none of whose
        kernels runs is stopped (its cluster file goes)."""
        for started in list(self.clusters):
            started.running.difference_update(names)
            if not started.running:
                self.clusters.remove(started)
                started.stop()

    def stop_all(self) -> None:
        """Stop every cluster this session started."""
        while self.clusters:
            self.clusters.pop().stop()
