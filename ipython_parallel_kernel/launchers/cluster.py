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

import asyncio
import atexit
import contextlib
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from traitlets import Bool, Enum, Float, Int, List, Unicode, default
from traitlets.config import Config, LoggingConfigurable
from traitlets.config.loader import PyFileConfigLoader

from ..core.clusterfile import (
    check_cluster_id,
    cluster_file_path,
    cluster_id_of,
    read_cluster_file,
    write_cluster_file,
)
from ..core.connection import ConnectionInfo, format_address, profile_dir
from ..core.profiles import install_shipped
from ..core.toolkits import GUI_CHOICES
from ..errors import ClusterRunning, KernelError, KernelTimeout, LaunchError, LaunchTimeout
from . import LAUNCHERS, get_launcher
from .base import LaunchedKernel, Launcher, Stoppable
from .local import is_kernel_process

if TYPE_CHECKING:
    from ..client.client import Client
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
    return RemoteKernel(
        info.reachable_address, key=info.key, timeout=timeout, connect_timeout=timeout
    )


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
            outcomes.append(
                KernelTimeout(f"{format_address(info.reachable_address)} did not answer")
            )
        except (KernelError, OSError, ValueError) as e:
            outcomes.append(e)
    return outcomes


def kernel_alive(info: ConnectionInfo) -> bool:
    """Whether the kernel a cluster file lists is still running."""
    if info.hostname == socket.gethostname() and info.pid:
        return is_kernel_process(info.pid)
    return not isinstance(for_each(kernel_status, [info], PROBE_TIMEOUT)[0], BaseException)


def _signal_number(signum: int | str) -> int:
    if isinstance(signum, str):
        name = signum.upper() if signum.upper().startswith("SIG") else f"SIG{signum.upper()}"
        try:
            return int(signal.Signals[name])
        except KeyError:
            raise ValueError(f"no signal called {signum!r}") from None
    return int(signal.Signals(signum))


def signal_kernels(infos: Sequence[ConnectionInfo], signum: int | str) -> None:
    """Send a signal (a number, or a name such as ``"SIGINT"`` or ``"INT"``) to each of
    these kernels that runs on this machine (checked by pid and command line)."""
    number = _signal_number(signum)
    for info in infos:
        if info.pid and info.hostname == socket.gethostname() and is_kernel_process(info.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(info.pid, number)


def profile_config(profile: str) -> Config:
    """The settings in the profile's ``ipk_cluster_config.py`` (a shipped profile's, on
    its first use); empty if it has none."""
    directory = install_shipped(profile)
    if not (directory / CONFIG_FILE).exists():
        return Config()
    return PyFileConfigLoader(CONFIG_FILE, path=str(directory)).load_config()


class Cluster(LoggingConfigurable):
    """The kernels of cluster ``cluster_id`` in ``profile``, started and stopped as one.

    It speaks ipyparallel's ``Cluster`` too: ``start_cluster``, ``start_and_connect``,
    ``connect_client``, ``stop_cluster``, ``start_engines``, ``stop_engines``,
    ``restart_engines`` and ``signal_engines``, each a coroutine with a blocking
    ``_sync`` twin, and ``with``/``async with``, which start the kernels and give a
    ``Client``::

        >>> with Cluster(n=4) as rc:
        ...     rc[:].apply_sync(os.getpid)

    There is no controller: "engines" are the kernels. ``engines=`` is ``launcher``.
    """

    profile = Unicode("default", help="IPython profile: its security/ holds the cluster file.")
    cluster_id = Unicode(help="Name of the cluster, so several can run side by side.")
    n = Int(2, help="How many kernels to start.").tag(config=True)
    launcher = Enum(
        sorted(LAUNCHERS),
        "local",
        help="How kernels are started and stopped (each launcher's settings are its own "
        "section: c.SSHLauncher.hosts, c.SlurmLauncher.partition...).",
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
    shutdown_atexit = Bool(
        True,
        help="Stop the kernels this object started when Python exits "
        "(ipk-cluster's kernels outlive it: there, False).",
    )

    def __init__(self, *, engines: str | None = None, **kwargs: Any) -> None:
        if engines is not None:
            kwargs["launcher"] = engines
        super().__init__(**kwargs)
        # The kernels this object started, so that ``stop`` reaps its own child processes.
        self._launched: list[LaunchedKernel] = []
        self._context_client: Any = None

    @default("cluster_id")
    def _fresh_cluster_id(self) -> str:
        # As ipyparallel: a Cluster made in Python does not take over ipk-cluster's default.
        return f"{int(time.time())}-{secrets.token_hex(2)}"

    @classmethod
    def from_profile(cls, profile: str = "default", **settings: Any) -> Cluster:
        """A cluster configured by ``profile``'s ``ipk_cluster_config.py``, then by
        ``settings`` (``n=``, ``cluster_id=``, ``gui=``...), which win."""
        return cls(config=profile_config(profile), profile=profile, **settings)

    @classmethod
    def from_file(
        cls,
        cluster_file: str | Path | None = None,
        *,
        profile: str = "default",
        cluster_id: str = "default",
    ) -> Cluster:
        """The running cluster of a cluster file (default: ``ipk-cluster start``'s), to
        connect to or stop; its kernels are not stopped when Python exits."""
        if cluster_file is not None:
            path = Path(cluster_file).expanduser()
            cluster_id = cluster_id_of(path)
            profile = path.parent.parent.name.removeprefix("profile_")
        cluster = cls.from_profile(profile, cluster_id=cluster_id, shutdown_atexit=False)
        cluster.n = len(cluster.kernels())
        return cluster

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
        self._clear_stale(self.path)
        infos = self._launch(self.n, 0, extra_args)
        write_cluster_file(infos, self.path)
        if self.shutdown_atexit:
            atexit.register(self._stop_at_exit)
        return infos

    def add_kernels(self, n: int, extra_args: Sequence[str] = ()) -> list[ConnectionInfo]:
        """Start ``n`` more kernels into the running cluster (numbered after the others)
        and add them to its cluster file; their infos."""
        running = self.kernels()
        infos = self._launch(n, len(running), extra_args)
        write_cluster_file(running + infos, self.path)
        return infos

    def _launch(self, n: int, first: int, extra_args: Sequence[str]) -> list[ConnectionInfo]:
        """Start kernels ``first``...``first + n - 1``, wait until each answers; stop them
        all if any fails (or on Ctrl-C) before the error propagates."""
        if n < 1:
            raise ValueError(f"n={n}: a cluster needs at least one kernel")
        launcher = self.make_launcher(self.launcher)
        deadline = time.monotonic() + self.timeout
        gui = ["--gui", self.gui] if self.gui != "none" else []
        args = [*gui, *self.kernel_args, *extra_args]
        kernels: list[LaunchedKernel] = []
        try:
            kernels = launcher.start(n, args, profile_dir(self.profile) / "log", first)
            infos = launcher.wait_ready(kernels, max(0.0, deadline - time.monotonic()))
            for info in infos:
                info.launcher = launcher.name
            self._check_answers(infos, max(0.001, deadline - time.monotonic()))
        except KeyboardInterrupt:
            launcher.stop(kernels, timeout=5.0)
            raise
        except (KernelError, OSError, ValueError) as e:
            launcher.stop(kernels, timeout=5.0)
            error = LaunchTimeout if isinstance(e, LaunchTimeout) else LaunchError
            raise error(f"{e}\nThe kernels it had started are stopped.") from None
        self._launched += kernels
        return infos

    def stop(self, timeout: float = 10.0) -> list[ConnectionInfo]:
        """Ask each kernel to shut down, signal those that do not (SIGTERM, then SIGKILL
        after ``timeout`` s), remove the cluster file; return the kernels it listed.

        ValueError if there is no readable cluster file; LaunchError (file kept) if
        some process would not go.
        """
        infos = self.kernels()
        for_each(shut_down, infos, PROBE_TIMEOUT)
        left = self._stop_each_way(infos, timeout, SHUTDOWN_GRACE)
        self._launched = []
        atexit.unregister(self._stop_at_exit)
        if left:
            raise LaunchError(
                f"cluster {self.cluster_id}: pids {', '.join(map(str, left))} are still "
                f"running after SIGKILL; cluster file {self.path} kept"
            )
        self.path.unlink(missing_ok=True)
        return infos

    def make_launcher(self, name: str) -> Launcher:
        """The launcher called ``name``, configured from this cluster's config."""
        return get_launcher(name)(self.profile, self.cluster_id, parent=self)

    def _stop_each_way(
        self, infos: list[ConnectionInfo], timeout: float, grace: float
    ) -> list[int]:
        """Stop each kernel through the launcher that started it; the pids left alive."""
        # Our own children are stopped through their Popen, which also reaps them.
        ours = {k.pid: k for k in self._launched}
        left: list[int] = []
        for name in dict.fromkeys(info.launcher for info in infos):
            targets: list[Stoppable] = [
                ours.get(info.pid or -1, info) for info in infos if info.launcher == name
            ]
            left += self.make_launcher(name).stop(targets, timeout=timeout, grace=grace)
        return left

    def _stop_at_exit(self) -> None:
        with contextlib.suppress(LaunchError, ValueError):
            self.stop(timeout=5.0)

    def signal(self, signum: int | str) -> None:
        """Send a signal (a number, or a name such as ``"SIGINT"`` or ``"INT"``) to
        every kernel of the cluster on this machine."""
        number = _signal_number(signum)  # a bad name is refused before anything is read
        signal_kernels(self.kernels(), number)

    # -- ipyparallel's Cluster ------------------------------------------------------------

    def start_cluster_sync(self, n: int | None = None) -> Cluster:
        """Start the kernels (``n`` of them, default ``self.n``); returns self."""
        if n is not None:
            self.n = n
        self.start()
        return self

    def connect_client_sync(self) -> Client:
        """A ``Client`` of the cluster's kernels."""
        from ..client.client import Client

        return Client(self.path, profile=self.profile)

    def start_and_connect_sync(self, n: int | None = None, activate: bool = False) -> Client:
        """Start the kernels and connect a ``Client``; ``activate`` makes a blocking view
        of all of them the target of ``%px``."""
        self.start_cluster_sync(n)
        client = self.connect_client_sync()
        if activate:
            view = client[:]
            view.block = True
            view.activate()
        return client

    def stop_cluster_sync(self) -> None:
        """Stop every kernel and remove the cluster file."""
        self.stop()

    def start_engines_sync(self, n: int | None = None) -> list[ConnectionInfo]:
        """Start ``n`` kernels (default ``self.n``): the cluster, or more of it if it runs."""
        count = self.n if n is None else n
        if self.path.exists():
            return self.add_kernels(count)
        self.n = count
        return self.start()

    def stop_engines_sync(self) -> None:
        """Stop every kernel (with no controller, the same as ``stop_cluster``)."""
        self.stop()

    def restart_engines_sync(self) -> None:
        """Stop the kernels and start as many fresh ones (new namespaces and addresses)."""
        self.n = len(self.kernels())
        self.stop()
        self.start()

    def signal_engines_sync(self, signum: int | str) -> None:
        """``signal``. A SIGINT from outside stops an ipk kernel: to interrupt what
        runs, use ``rc[:].interrupt()`` (or Ctrl-C during ``%px``)."""
        self.signal(signum)

    async def start_cluster(self, n: int | None = None) -> Cluster:
        """``start_cluster_sync``, awaitable."""
        return await asyncio.to_thread(self.start_cluster_sync, n)

    async def connect_client(self) -> Client:
        """``connect_client_sync``, awaitable."""
        return await asyncio.to_thread(self.connect_client_sync)

    async def start_and_connect(self, n: int | None = None, activate: bool = False) -> Client:
        """``start_and_connect_sync``, awaitable."""
        return await asyncio.to_thread(self.start_and_connect_sync, n, activate)

    async def stop_cluster(self) -> None:
        """``stop_cluster_sync``, awaitable."""
        await asyncio.to_thread(self.stop_cluster_sync)

    async def start_engines(self, n: int | None = None) -> list[ConnectionInfo]:
        """``start_engines_sync``, awaitable."""
        return await asyncio.to_thread(self.start_engines_sync, n)

    async def stop_engines(self) -> None:
        """``stop_engines_sync``, awaitable."""
        await asyncio.to_thread(self.stop_engines_sync)

    async def restart_engines(self) -> None:
        """``restart_engines_sync``, awaitable."""
        await asyncio.to_thread(self.restart_engines_sync)

    async def signal_engines(self, signum: int | str) -> None:
        """``signal_engines_sync``, awaitable."""
        await asyncio.to_thread(self.signal_engines_sync, signum)

    def __enter__(self) -> Client:
        self._context_client = self.start_and_connect_sync()
        return self._context_client

    def __exit__(self, *exc_info: object) -> None:
        self._context_client.close()
        self.stop_cluster_sync()

    async def __aenter__(self) -> Client:
        self._context_client = await self.start_and_connect()
        return self._context_client

    async def __aexit__(self, *exc_info: object) -> None:
        self._context_client.close()
        await self.stop_cluster()

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
        self._stop_each_way(infos, timeout=1.0, grace=0.0)

    def _check_answers(self, infos: list[ConnectionInfo], timeout: float) -> None:
        """Raise LaunchError unless every kernel answers ``status()`` as itself."""
        outcomes = for_each(kernel_status, infos, timeout)
        for index, (info, outcome) in enumerate(zip(infos, outcomes, strict=True)):
            where = f"kernel {index} ({format_address(info.reachable_address)}, pid {info.pid})"
            if isinstance(outcome, BaseException):
                raise LaunchError(f"{where} is ready but does not answer: {outcome}")
            if outcome.get("pid") != info.pid:
                raise LaunchError(f"{where} is answered by pid {outcome.get('pid')} instead")

    def __repr__(self) -> str:
        return (
            f"<Cluster {self.cluster_id!r} profile {self.profile!r}: "
            f"{self.n} {self.launcher} kernels>"
        )
