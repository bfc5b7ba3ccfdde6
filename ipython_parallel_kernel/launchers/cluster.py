"""A cluster of kernels as one object: started, checked, written down, stopped.

``Cluster`` is what ``ipk-cluster start`` and ``stop`` and ``%kernel start`` all use.
Starting launches every kernel at once (through the ``Launcher`` its ``launcher``
names), waits until each has printed its ready line and answers ``status()`` as
itself, then writes the cluster file; if anything fails, or Ctrl-C arrives, the
kernels it had started are stopped before the error propagates::

    >>> cluster = Cluster.from_profile("default", n=4, cluster_id="mine")
    >>> infos = cluster.start()            # list[ConnectionInfo], one per kernel
    >>> cluster.path                       # InteractiveCluster.from_file(cluster.path)
    PosixPath('.../profile_default/security/ipk-cluster-mine.json')
    >>> cluster.stop()

Settings come from the profile's ``ipk_cluster_config.py`` (``c.Cluster.n = 4``,
``c.Cluster.kernel_args = [...]``), and what the caller passes wins over them: the
command line of ``ipk-cluster``, or the options of ``%kernel start``.

The probes (``kernel_status``, ``shut_down``) talk to kernels through a
``RemoteKernel`` each, run side by side by ``for_each``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from traitlets import Enum, Float, Int, List, Unicode
from traitlets.config import Config, LoggingConfigurable
from traitlets.config.loader import PyFileConfigLoader

from ..core.clusterfile import (
    check_cluster_id,
    cluster_file_path,
    read_cluster_file,
    write_cluster_file,
)
from ..core.connection import ConnectionInfo, format_address, profile_dir
from ..core.toolkits import GUI_CHOICES
from ..errors import ClusterRunning, KernelError, KernelTimeout, LaunchError, LaunchTimeout
from . import LAUNCHERS, PLANNED, get_launcher
from .base import LaunchedKernel, Stoppable
from .local import is_kernel_process

if TYPE_CHECKING:
    from ..client.kernel import RemoteKernel

#: The profile's file of cluster settings.
CONFIG_FILE = "ipk_cluster_config.py"
#: How long a probe waits for a kernel before calling it dead.
PROBE_TIMEOUT = 2.0
#: Kernels probed at once by ``for_each``.
PROBES_AT_ONCE = 64
#: How long ``stop`` lets kernels that were asked to shut down exit by themselves.
SHUTDOWN_GRACE = 2.0

T = TypeVar("T")


def connect(info: ConnectionInfo, timeout: float) -> RemoteKernel:
    """A client for a cluster's kernel, every wait bounded by ``timeout``."""
    from ..client.kernel import RemoteKernel

    if info.path and os.path.exists(info.path):
        # The kernel's own file also carries its TLS certificate, if it serves TLS.
        return RemoteKernel(info.path, timeout=timeout, connect_timeout=timeout)
    return RemoteKernel(info.address, key=info.key, timeout=timeout, connect_timeout=timeout)


def kernel_status(info: ConnectionInfo, timeout: float) -> dict[str, Any]:
    """The kernel's ``status()``, from a connection opened and closed for it."""
    client = connect(info, timeout)
    try:
        return client.status(block=True)
    finally:
        client.disconnect()


def shut_down(info: ConnectionInfo, timeout: float) -> None:
    """Ask a kernel to shut down (it tells its other clients first)."""
    client = connect(info, timeout)
    try:
        client.kill(block=True)
    finally:
        client.disconnect()


def for_each(
    func: Callable[[ConnectionInfo, float], T], infos: Sequence[ConnectionInfo], timeout: float
) -> list[T | BaseException]:
    """``func(info, timeout)`` for every kernel at once; each result or exception.

    A call still running after ``timeout`` (plus a margin for the connection) counts
    as a KernelTimeout rather than holding up the others. Errors other than failing
    to reach a kernel are bugs, and propagate. Threads of its own, not an executor:
    ``%kernel start``'s clusters are stopped at exit, when executors take no more work.
    """
    room = threading.BoundedSemaphore(PROBES_AT_ONCE)

    def probe(info: ConnectionInfo, future: Future[T]) -> None:
        with room:
            try:
                future.set_result(func(info, timeout))
            except BaseException as e:
                future.set_exception(e)

    futures: list[Future[T]] = []
    for info in infos:
        future: Future[T] = Future()
        threading.Thread(target=probe, args=(info, future), name="ipk-probe", daemon=True).start()
        futures.append(future)
    deadline = time.monotonic() + 2 * timeout + 1.0
    outcomes: list[T | BaseException] = []
    for info, future in zip(infos, futures, strict=True):
        try:
            outcomes.append(future.result(max(0.0, deadline - time.monotonic())))
        except FutureTimeout:
            outcomes.append(KernelTimeout(f"{format_address(info.address)} did not answer"))
        except (KernelError, OSError, ValueError) as e:
            outcomes.append(e)
    return outcomes


def kernel_alive(info: ConnectionInfo) -> bool:
    """Whether the kernel a cluster file lists is still running."""
    if info.hostname == socket.gethostname() and info.pid:
        return is_kernel_process(info.pid)
    return not isinstance(for_each(kernel_status, [info], PROBE_TIMEOUT)[0], BaseException)


def profile_config(profile: str) -> Config:
    """The settings in the profile's ``ipk_cluster_config.py``; empty if it has none."""
    directory = profile_dir(profile)
    if not (directory / CONFIG_FILE).exists():
        return Config()
    return PyFileConfigLoader(CONFIG_FILE, path=str(directory)).load_config()


class Cluster(LoggingConfigurable):
    """The kernels of cluster ``cluster_id`` in ``profile``, started and stopped as one."""

    profile = Unicode("default", help="IPython profile: its security/ holds the cluster file.")
    cluster_id = Unicode("default", help="Name of the cluster, so several can run side by side.")
    n = Int(2, help="How many kernels to start.").tag(config=True)
    launcher = Enum(
        sorted(LAUNCHERS),
        "local",
        help=f"How kernels are started and stopped; {', '.join(PLANNED)} come later.",
    ).tag(config=True)
    gui = Enum(GUI_CHOICES, "none", help="GUI toolkit whose event loop each kernel runs.").tag(
        config=True
    )
    kernel_args = List(
        Unicode(), help="More arguments for every kernel, e.g. ['--allow', '10.0.0.0/8']."
    ).tag(config=True)
    timeout = Float(
        30.0, help="Seconds to wait until every kernel answers; then give up and stop them."
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # The kernels this object started, so that ``stop`` reaps its own child processes.
        self._launched: list[LaunchedKernel] = []

    @classmethod
    def from_profile(cls, profile: str = "default", **settings: Any) -> Cluster:
        """A cluster configured by ``profile``'s ``ipk_cluster_config.py``, then by
        ``settings`` (``n=``, ``cluster_id=``, ``gui=``...), which win."""
        return cls(config=profile_config(profile), profile=profile, **settings)

    @property
    def path(self) -> Path:
        """The cluster file: where ``start`` writes the kernels' addresses and keys."""
        return cluster_file_path(check_cluster_id(self.cluster_id), self.profile)

    def kernels(self) -> list[ConnectionInfo]:
        """The kernels the cluster file lists; ValueError if it is missing or unreadable."""
        return read_cluster_file(self.path)

    def start(self, extra_args: Sequence[str] = ()) -> list[ConnectionInfo]:
        """Start ``n`` kernels, wait until each answers, write the cluster file.

        ``extra_args`` go to every kernel after ``kernel_args``. Raises ClusterRunning
        if the cluster already runs, LaunchError (LaunchTimeout after ``timeout``) if a
        kernel fails to start; the kernels started so far are stopped first, also when
        interrupted.
        """
        if self.n < 1:
            raise ValueError(f"n={self.n}: a cluster needs at least one kernel")
        path = self.path
        self._clear_stale(path)
        launcher = get_launcher(self.launcher)(self.profile, self.cluster_id)
        deadline = time.monotonic() + self.timeout
        gui = ["--gui", self.gui] if self.gui != "none" else []
        kernels: list[LaunchedKernel] = []
        try:
            kernels = launcher.start(
                self.n, [*gui, *self.kernel_args, *extra_args], profile_dir(self.profile) / "log"
            )
            infos = launcher.wait_ready(kernels, max(0.0, deadline - time.monotonic()))
            self._check_answers(infos, max(0.001, deadline - time.monotonic()))
            write_cluster_file(infos, path)
            self._launched = kernels
        except KeyboardInterrupt:
            launcher.stop(kernels, timeout=5.0)
            raise
        except (KernelError, OSError, ValueError) as e:
            launcher.stop(kernels, timeout=5.0)
            error = LaunchTimeout if isinstance(e, LaunchTimeout) else LaunchError
            raise error(f"{e}\nThe kernels it had started are stopped.") from None
        return infos

    def stop(self, timeout: float = 10.0) -> list[ConnectionInfo]:
        """Ask each kernel to shut down, signal those that do not (SIGTERM, then SIGKILL
        after ``timeout`` s), remove the cluster file; return the kernels it listed.

        ValueError if there is no readable cluster file; LaunchError (file kept) if
        some process would not go.
        """
        infos = self.kernels()
        for_each(shut_down, infos, PROBE_TIMEOUT)
        launcher = get_launcher(self.launcher)(self.profile, self.cluster_id)
        targets: Sequence[Stoppable] = self._launched or infos
        left = launcher.stop(targets, timeout=timeout, grace=SHUTDOWN_GRACE)
        self._launched = []
        if left:
            raise LaunchError(
                f"cluster {self.cluster_id}: pids {', '.join(map(str, left))} are still "
                f"running after SIGKILL; cluster file {self.path} kept"
            )
        self.path.unlink(missing_ok=True)
        return infos

    def _clear_stale(self, path: Path) -> None:
        """Refuse to start if the cluster runs; clear what a dead one left behind."""
        if not path.exists():
            return
        try:
            infos = read_cluster_file(path)
        except ValueError as e:
            self.log.warning("%s; replacing it", e)
            return
        alive = [info for info in infos if kernel_alive(info)]
        if alive:
            profile = "" if self.profile == "default" else f" --profile {self.profile}"
            raise ClusterRunning(
                f"cluster {self.cluster_id!r} is already running ({len(alive)} of {len(infos)} "
                f"kernels alive, cluster file {path}); stop it with: "
                f"ipk-cluster stop --cluster-id {self.cluster_id}{profile}"
            )
        get_launcher(self.launcher)(self.profile, self.cluster_id).stop(infos, timeout=1.0)

    def _check_answers(self, infos: list[ConnectionInfo], timeout: float) -> None:
        """Raise LaunchError unless every kernel answers ``status()`` as itself."""
        outcomes = for_each(kernel_status, infos, timeout)
        for index, (info, outcome) in enumerate(zip(infos, outcomes, strict=True)):
            where = f"kernel {index} ({format_address(info.address)}, pid {info.pid})"
            if isinstance(outcome, BaseException):
                raise LaunchError(f"{where} is ready but does not answer: {outcome}")
            if outcome.get("pid") != info.pid:
                raise LaunchError(f"{where} is answered by pid {outcome.get('pid')} instead")

    def __repr__(self) -> str:
        return (
            f"<Cluster {self.cluster_id!r} profile {self.profile!r}: "
            f"{self.n} {self.launcher} kernels>"
        )
