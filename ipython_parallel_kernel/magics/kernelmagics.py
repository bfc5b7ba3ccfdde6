"""``KernelMagics``: the session's magics class, a thin layer that parses and delegates.

``%px`` and its family come from ``parallel.ParallelMagics``; ``%kernel start`` runs
through ``started.StartedClusters``, ``%kernel gather`` and ``notify`` through
``gathering.SessionGatherer``. This module holds what is the session's: the clusters
it started, its gatherer, the magics of targets activated with a suffix, and their
lifetime.
"""

from __future__ import annotations

import argparse
import atexit
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..client import cluster as cluster_module
from ..client.cluster import InteractiveCluster
from ..client.kernel import RemoteKernel
from ..core.clusterfile import is_cluster_file
from ..core.toolkits import GUI_CHOICES
from ..errors import CompositeError, KernelError
from ..launchers import LAUNCHERS
from .arguments import subcommand, subcommands
from .gathering import DEFAULT_GATHER_PORT, SessionGatherer
from .parallel import ParallelMagics, typed_targets
from .started import StartedClusters

if TYPE_CHECKING:
    from ..client.views import DirectView

KERNEL_VERBS = "start | connect | list | use | stop | gather | notify | allow | deny"


@magics_class
class KernelMagics(ParallelMagics):
    """The magics of ``ipython_parallel_kernel``; one instance per IPython session.

    ``%kernel`` here, and ``%px`` and its family from ``ParallelMagics``, on the
    session's active kernels; targets activated with a suffix get magics of their own.
    """

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.started = StartedClusters()
        self.gathering = SessionGatherer()
        #: The magics of targets activated with a suffix, by suffix.
        self.suffixed: dict[str, ParallelMagics] = {}
        atexit.register(self.close)

    @property
    def gatherer(self) -> Any:
        """This session's ResultGatherer, or None when ``%kernel gather`` is not running."""
        return self.gathering.gatherer

    # -- %kernel -------------------------------------------------------------------------

    @magic_arguments()
    @subcommands()
    @subcommand(
        "start",
        "start local kernels and activate them",
        argument("-n", type=int, help="how many kernels (default: the profile's, else 2)"),
        argument("--gui", choices=GUI_CHOICES, help="(default: the profile's, else none)"),
        argument("--profile", default="default", help="its ipk_cluster_config.py applies"),
        argument(
            "--launcher",
            choices=sorted(LAUNCHERS),
            help="how kernels start (default: the profile's, else local)",
        ),
    )
    @subcommand(
        "connect",
        "connect to running kernels",
        argument("addresses", nargs="+", metavar="ADDR_OR_FILE"),
        argument("--name", help="bind the kernel (or cluster) to this variable"),
    )
    @subcommand("list", "the active kernels: address, state, queue, gui, MPI rank")
    @subcommand("use", "activate a RemoteKernel or InteractiveCluster", argument("variable"))
    @subcommand(
        "stop",
        "shut down the active kernels (or some)",
        argument("targets", nargs="?", default="all"),
    )
    @subcommand(
        "gather",
        "show the records of notifying kernels here",
        argument("port", nargs="?", type=int, default=DEFAULT_GATHER_PORT),
        argument("--ip", default="127.0.0.1"),
        argument("--stop", action="store_true", help="stop this session's gatherer"),
    )
    @subcommand(
        "notify",
        "make the active kernels report to a gatherer",
        argument("address", nargs="?", metavar="HOST:PORT"),
        argument("--stop", action="store_true", help="stop reporting to that gatherer"),
    )
    @subcommand("allow", "allow clients from an address or network", argument("network"))
    @subcommand("deny", "deny clients from an address or network", argument("network"))
    @line_magic
    def kernel(self, line: str) -> Any:
        """Start, connect to, list, activate and stop kernels.

        Usage::

            %kernel start [-n N] [--gui wx] [--profile P]   start N kernels, activate them
                          [--launcher mpi|ssh|...]      (the profile says where and how)
            %kernel connect ADDR_OR_FILE ... [--name VAR]   connect (host:port, connection or
                                                            cluster files), activate, bind VAR
            %kernel list                                    target, address, state, queue, gui, rank
            %kernel use VAR                                 activate a kernel or cluster in VAR
            %kernel stop [TARGETS]                          shut the active kernels down
            %kernel gather [PORT] [--ip IP] [--stop]        show here the records of kernels
                                                            that notify IP:PORT (default
                                                            127.0.0.1:10104; 0: a free port)
            %kernel notify [HOST:PORT] [--stop]             the active kernels report to that
                                                            gatherer (default: this session's)
            %kernel allow IP[/CIDR]   %kernel deny IP[/CIDR]

        Example::

            In [1]: %kernel connect 127.0.0.1:10105 --name rk
            In [2]: rk['b'] = 10
            In [3]: %px print(b)
            [stdout:0] 10
        """
        words = shlex.split(line)
        if not words:
            raise UsageError(f"say what to do: %kernel {KERNEL_VERBS} (see %kernel?)")
        # Split as a POSIX shell does (quotes removed), not as parse_argstring would.
        args = self.kernel.parser.parse_args(words)
        return getattr(self, f"_kernel_{args.command}")(args)

    def _kernel_start(self, args: argparse.Namespace) -> None:
        self.bind(self.started.start(args.profile, args.n, args.gui, args.launcher))
        started = self._require_active()
        names = ", ".join(k.name for k in started)
        count = len(started)
        print(f"started {count} kernel{'s' if count != 1 else ''}: {names} (active)")

    def _kernel_connect(self, args: argparse.Namespace) -> None:
        kernels: list[RemoteKernel] = []
        for address in args.addresses:
            try:
                if Path(address).expanduser().is_file() and is_cluster_file(address):
                    kernels += InteractiveCluster.from_file(address).kernels
                else:
                    kernels.append(RemoteKernel(address))
            except (KernelError, ValueError, OSError) as e:
                raise UsageError(f"cannot connect to {address}: {e}") from None
        cluster = InteractiveCluster()
        cluster.kernels = kernels
        self.bind(cluster)
        if args.name:
            self._namespace()[args.name] = kernels[0] if len(kernels) == 1 else cluster
        bound = f", bound to {args.name}" if args.name else ""
        print(f"connected to {', '.join(k.name for k in kernels)} (active{bound})")

    def _kernel_list(self, args: argparse.Namespace) -> None:
        cluster = self._require_active()
        rows = [("target", "address", "state", "queue", "gui", "rank")]
        for target, kernel in enumerate(cluster):
            try:
                status = kernel.status(block=True)
                state, queued, gui = status["state"], str(status["queued"]), status["gui"]
                rank = str(status.get("rank", "-"))
                rows.append((str(target), kernel.name, state, queued, gui, rank))
            except KernelError as e:
                dead = ("dead", "-", f"({type(e).__name__})", "-")
                rows.append((str(target), kernel.name, *dead))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            print("  ".join(cells).rstrip())

    def _kernel_use(self, args: argparse.Namespace) -> None:
        value = self._namespace().get(args.variable)
        if isinstance(value, RemoteKernel):
            cluster = InteractiveCluster()
            cluster.kernels = [value]
            value = cluster
        if not isinstance(value, InteractiveCluster):
            raise UsageError(
                f"{args.variable!r} is not a RemoteKernel or InteractiveCluster in this session"
            )
        self.bind(value)
        print(f"active: {', '.join(k.name for k in value)}")

    def _kernel_stop(self, args: argparse.Namespace) -> None:
        cluster = self._require_active()
        chosen = typed_targets(args.targets, len(cluster))
        names = [cluster[i].name for i in chosen]
        try:
            cluster.kill(chosen, block=True)
        except CompositeError as e:
            print(e.render_traceback(), file=sys.stderr)
        print(f"stopped {', '.join(names)}")
        if not len(cluster):
            self.bind(None)
        # A started cluster whose kernels are all gone is stopped: its cluster file goes.
        self.started.stopped(names)

    def _kernel_gather(self, args: argparse.Namespace) -> None:
        if args.stop:
            print(f"stopped gathering on {self.gathering.stop()}")
        else:
            print(f"gathering on {self.gathering.start(args.ip, args.port, self.active)}")

    def _kernel_notify(self, args: argparse.Namespace) -> None:
        address = args.address or self.gathering.address()
        cluster = self._require_active()
        self.gathering.notify(cluster, address, not args.stop)
        names = ", ".join(k.name for k in cluster)
        print(f"{names} {'no longer notify' if args.stop else 'now notify'} {address}")

    def _kernel_allow(self, args: argparse.Namespace) -> None:
        self._access("allow", args.network)

    def _kernel_deny(self, args: argparse.Namespace) -> None:
        self._access("deny", args.network)

    def _access(self, verb: str, network: str) -> None:
        cluster = self._require_active()
        try:
            getattr(cluster, verb)(network)
        except CompositeError as e:
            raise UsageError(f"{verb} {network}: {e.errors[0][2]}") from None
        print(f"{verb}ed {network} on {len(cluster)} kernels")

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop this session's gatherer, disconnect, and stop the kernels it started.

        Run by ``%unload_ext`` or when the interpreter exits, whichever comes first.
        """
        atexit.unregister(self.close)
        self.gathering.close()
        if self.active is not None:
            self.active.disconnect()
        for magics in self.suffixed.values():
            magics.close()
        super().close()
        self.started.stop_all()

    def activate(self, target: InteractiveCluster | DirectView, suffix: str = "") -> None:
        """Make ``target`` what ``%px<suffix>`` and its family run on, registering those
        magics first for a suffix not seen before."""
        if not suffix:
            self.bind(target)
            return
        if suffix not in self.suffixed:
            if self.shell is None:
                raise UsageError("activating a suffix needs an IPython shell")
            magics = ParallelMagics(shell=self.shell, suffix=suffix, parent=self)
            self.shell.register_magics(magics)
            self.suffixed[suffix] = magics
        self.suffixed[suffix].bind(target)


def session_magics(shell: Any) -> KernelMagics:
    """The KernelMagics of ``shell``, loading the extension first if it is not loaded.

    Found by type, never by name: ipykernel registers a magics class of its own called
    KernelMagics in every Jupyter kernel.
    """
    found = _our_magics(shell)
    if found is None:
        shell.extension_manager.load_extension("ipython_parallel_kernel")
        found = _our_magics(shell)
    if found is None:
        raise RuntimeError("the ipython_parallel_kernel extension did not register its magics")
    return found


def activate_in_session(
    shell: Any, target: InteractiveCluster | DirectView, suffix: str = "", replace: bool = True
) -> None:
    """Make ``target`` what ``%px<suffix>`` runs on in ``shell`` (``activate()`` of a
    cluster, client or view); ``replace=False`` leaves an active target alone."""
    magics = session_magics(shell)
    current = magics.suffixed.get(suffix) if suffix else magics
    if replace or current is None or current.active is None:
        magics.activate(target, suffix)


# The client sits below the magics and never imports them: they hand it the activator.
cluster_module.set_activator(activate_in_session)


def _our_magics(shell: Any) -> KernelMagics | None:
    return next((c for c in shell.configurables if isinstance(c, KernelMagics)), None)
