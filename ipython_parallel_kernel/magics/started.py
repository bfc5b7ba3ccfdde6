"""Clusters ``%kernel start`` makes: started in this process, stopped with the session.

Each is a ``launchers.cluster.Cluster`` with the profile's ``ipk_cluster_config.py``
settings, and a cluster id of its own (``session-<pid>-<n>``), so stopping one leaves
other sessions' clusters, and this session's others, alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from IPython.core.error import UsageError

from ..client.cluster import InteractiveCluster
from ..errors import LaunchError, LaunchTimeout
from ..launchers.cluster import CONFIG_FILE, Cluster


@dataclass
class StartedCluster:
    """A cluster ``%kernel start`` made, and the addresses of its kernels not yet stopped."""

    cluster: Cluster
    running: set[str]

    def stop(self) -> None:
        """Stop what still runs and remove the cluster file; a failure is only printed,
        as the session may be ending (at exit nothing else could be done about it)."""
        try:
            self.cluster.stop()
        except Exception as e:
            print(f"%kernel: could not stop cluster {self.cluster.cluster_id}: {e}")


@dataclass
class StartedClusters:
    """The clusters one session started, stopped when their kernels are or it ends."""

    clusters: list[StartedCluster] = field(default_factory=list)
    _numbers: count = field(default_factory=lambda: count(1))

    def start(
        self,
        profile: str,
        n: int | None = None,
        gui: str | None = None,
        launcher: str | None = None,
    ) -> InteractiveCluster:
        """Start kernels as the profile's cluster settings say, ``n``, ``gui`` and
        ``launcher`` (when given) winning; a cluster connected to them."""
        if n is not None and n < 1:
            raise UsageError("-n takes a number of kernels, 1 or more")
        given: dict[str, Any] = {"n": n, "gui": gui, "launcher": launcher}
        settings = {name: value for name, value in given.items() if value is not None}
        cluster_id = f"session-{os.getpid()}-{next(self._numbers)}"
        cluster = Cluster.from_profile(profile, cluster_id=cluster_id, **settings)
        try:
            cluster.start()
        except LaunchTimeout as e:
            raise UsageError(
                f"could not start kernels: {e} Gave up after {cluster.timeout:g} s; raise "
                f"c.Cluster.timeout in profile {profile}'s {CONFIG_FILE} if kernels are slow."
            ) from None
        except (LaunchError, ValueError) as e:
            raise UsageError(f"could not start kernels: {e}") from None
        connected = InteractiveCluster.from_file(cluster.path)
        self.clusters.append(StartedCluster(cluster, {k.name for k in connected}))
        return connected

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
