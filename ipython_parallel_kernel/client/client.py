"""``Client``: ipyparallel's entry point, connected to a cluster of ipk kernels.

``Client()`` connects to every kernel of the default cluster of the default profile
(what ``ipk-cluster start`` writes); ``Client(path)`` to those of a cluster file, or to
the one kernel of a connection file; ``profile=`` and ``cluster_id=`` pick another
cluster. Kernels are numbered from 0 in the cluster file's order (``ids``), and
indexing gives a ``DirectView``::

    >>> rc = Client()                       # after: ipk-cluster start -n 4
    >>> rc.ids
    [0, 1, 2, 3]
    >>> dview = rc[:]                       # all; rc[0], rc[::2], rc[[1, 3]] ...
    >>> rc[0].apply_sync(lambda: 6 * 7)     # an int target gives its value, not a list
    42

There is no controller: requests go straight from this client to each kernel.
"""

from __future__ import annotations

import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any

from ..core.clusterfile import cluster_file_path, read_kernels
from ..errors import KernelTimeout
from . import display
from .balancer import LoadBalancedView
from .bridges import ViewExecutor
from .cluster import InteractiveCluster, Targets, activate, parse_targets
from .futures import FutureResult
from .kernel import RemoteKernel
from .views import BroadcastView, DirectView


class Client:
    """The kernels of one cluster, ready to be divided into views."""

    def __init__(
        self,
        url_file: str | Path | None = None,
        profile: str | None = None,
        cluster_id: str | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        self.profile = profile or "default"
        if url_file is None:
            path = cluster_file_path(cluster_id or "default", self.profile)
            if not path.exists():
                raise FileNotFoundError(
                    f"no cluster {cluster_id or 'default'!r} in profile {self.profile!r} "
                    f"(no {path}): start one with 'ipk-cluster start -n 4"
                    f"{'' if cluster_id is None else f' --cluster-id {cluster_id}'}"
                    f"{'' if profile is None else f' --profile {profile}'}', or give "
                    "Client() a cluster or connection file"
                )
        else:
            path = Path(url_file).expanduser()
        #: Seconds any blocking call of this client or its views waits (None: no limit).
        self.timeout = timeout
        #: Every kernel, in ``ids`` order.
        connected = InteractiveCluster(read_kernels(path), timeout=timeout, profile=self.profile)
        self.kernels: list[RemoteKernel] = connected.kernels
        self.path = path
        #: The results of load-balanced tasks still referred to, so that a task's
        #: ``after``/``follow`` can name another by its msg_id.
        self.task_results: weakref.WeakSet[FutureResult] = weakref.WeakSet()
        # As ipyparallel's: the first client of an IPython session gives it %px.
        activate(self.direct_view(), replace=False, required=False)

    @property
    def ids(self) -> list[int]:
        """The kernels' numbers, as views take them."""
        return list(range(len(self.kernels)))

    def __len__(self) -> int:
        return len(self.kernels)

    def __getitem__(self, targets: Targets) -> DirectView:
        """``rc[0]``, ``rc[:]``, ``rc[::2]``, ``rc[[0, 2]]``, ``rc['all']``: a DirectView."""
        if targets is None:
            raise TypeError("rc[...] takes an int, a slice, a list of ids or 'all'")
        return DirectView(self, targets)

    def direct_view(self, targets: Targets = "all") -> DirectView:
        """A DirectView of ``targets``."""
        return DirectView(self, targets)

    def broadcast_view(
        self, targets: Targets = "all", is_coalescing: bool = False
    ) -> BroadcastView:
        """A BroadcastView of ``targets``: a DirectView (this client sends to each kernel
        itself, so there is no scheduler to broadcast through)."""
        return BroadcastView(self, targets, is_coalescing=is_coalescing)

    def activate(self, targets: Targets = "all", suffix: str = "") -> DirectView:
        """A blocking DirectView of ``targets``, made what ``%px<suffix>``, ``%%px<suffix>``,
        ``%pxresult<suffix>`` and ``%autopx<suffix>`` run on in this IPython session::

            In [1]: rc.activate(targets=0, suffix="0")
            In [2]: %px0 import os; os.getpid()
            Out[0:1]: 4242
        """
        view = self.direct_view(targets)
        view.block = True
        return view.activate(suffix)

    def load_balanced_view(self, targets: Targets = None) -> LoadBalancedView:
        """A LoadBalancedView: tasks to whichever of ``targets`` (default: all) is free."""
        return LoadBalancedView(self, targets)

    def executor(self, targets: Targets = None) -> ViewExecutor:
        """A ``concurrent.futures.Executor`` load balancing over ``targets`` (default: all)."""
        return self.load_balanced_view(targets).executor

    def wait(self, jobs: Any = None, timeout: float | None = None) -> bool:
        """Wait until ``jobs`` (a result, or a list of them; default: every request
        outstanding now) are done; False if ``timeout`` seconds passed first."""
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        for job in self._jobs(jobs):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not job.wait(left):
                return False
        return True

    def wait_interactive(
        self, jobs: Any = None, interval: float = 1.0, timeout: float | None = None
    ) -> None:
        """``wait``, with a progress bar of the jobs done (a widget in a notebook where
        ipywidgets is installed); KernelTimeout after ``timeout`` seconds."""
        pending = self._jobs(jobs)
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        bar = display.progress_bar(len(pending), "wait", "jobs")
        try:
            while not self.wait(pending, interval):
                bar.update(sum(job.done() for job in pending) - bar.n)
                if deadline is not None and time.monotonic() >= deadline:
                    left = sum(not job.done() for job in pending)
                    raise KernelTimeout(f"{left} of {len(pending)} jobs still running")
            bar.update(len(pending) - bar.n)
        finally:
            bar.close()

    def _jobs(self, jobs: Any) -> list[FutureResult]:
        if jobs is None:
            return [r for k in self.kernels for r in list(k._protocol.pending.values())]
        if isinstance(jobs, FutureResult):
            return [jobs]
        return list(jobs)

    def wait_for_engines(self, n: int, timeout: float = 60.0) -> list[int]:
        """Wait until ``n`` kernels are connected, connecting those the cluster file
        gains meanwhile (``Cluster.start_engines``); the ids. TimeoutError after
        ``timeout`` seconds names how many there are."""
        deadline = time.monotonic() + timeout
        while len(self.kernels) < n:
            known = {k.address for k in self.kernels}
            new = [info for info in read_kernels(self.path) if info.reachable_address not in known]
            if new:
                added = InteractiveCluster(new, timeout=self.timeout, profile=self.profile)
                self.kernels += added.kernels
                continue
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{len(self.kernels)} of {n} kernels after {timeout:g} s "
                    f"(cluster file {self.path})"
                )
            time.sleep(0.1)
        return self.ids

    def send_signal(self, signum: int | str, targets: Targets = "all") -> None:
        """Send a signal (a number or a name) to the targets' kernel processes on this
        machine. A SIGINT from outside stops an ipk kernel: ``interrupt`` what runs."""
        from ..launchers.cluster import signal_kernels

        chosen = parse_targets(targets, len(self.kernels))
        signal_kernels([self.kernels[i].info for i in chosen], signum)

    def abort(self, targets: Targets = "all", block: bool | None = None) -> Any:
        """Drop what is queued on the targets behind their running requests."""
        return self.direct_view(targets).abort(block=block)

    def clear(self, targets: Targets = "all", block: bool | None = None) -> Any:
        """Empty the targets' namespaces."""
        view = self.direct_view(targets)
        return view._run(None, block, lambda ids: view._cluster.reset(targets=ids, block=False))

    def shutdown(self, targets: Targets = "all", block: bool | None = None) -> Any:
        """Shut the targets' kernels down."""
        return self.direct_view(targets).shutdown(block=block)

    def close(self) -> None:
        """Close every connection; the kernels keep running."""
        for kernel in self.kernels:
            kernel.disconnect()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client: {len(self)} kernels, cluster file {self.path}>"
