"""``KernelMagics``: the magics class, a thin layer that parses and delegates.

``%px`` runs through ``runner.PxRunner``, ``%kernel start`` through
``started.StartedClusters``, ``%kernel gather`` and ``notify`` through
``gathering.SessionGatherer``, ``%autopx`` through ``autopx.AutoPx``. This module
holds what is the session's: the active cluster, the last ``%px`` result, the options
(traitlets, set in ``ipython_config.py``), and their lifetime.
"""

from __future__ import annotations

import argparse
import atexit
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, Enum, Float, Unicode

from ..client import cluster as cluster_module
from ..client import display
from ..client.cluster import InteractiveCluster, parse_targets
from ..client.kernel import RemoteKernel
from ..core.clusterfile import is_cluster_file
from ..core.toolkits import GUI_CHOICES
from ..errors import CompositeError, KernelError
from ..launchers import LAUNCHERS
from .arguments import subcommand, subcommands
from .autopx import AutoPx
from .gathering import DEFAULT_GATHER_PORT, SessionGatherer
from .runner import PxRunner
from .started import StartedClusters

KERNEL_VERBS = "start | connect | list | use | stop | gather | notify | allow | deny"


def execution_options(magic: Any) -> Any:
    """The options ``%%px`` and ``%pxconfig`` share (as ipyparallel's)."""
    options = [
        argument("-t", "--targets", default=None, help="which kernels: 0 | 0,2 | 1:3 | ::2 | all"),
        argument(
            "-b",
            "--block",
            dest="block",
            action="store_const",
            const=True,
            help="wait for the kernels (the default)",
        ),
        argument(
            "-a",
            "--noblock",
            dest="block",
            action="store_const",
            const=False,
            help="return the ClusterResult at once",
        ),
        argument(
            "--stream",
            dest="stream",
            action="store_const",
            const=True,
            help="show output as it comes (the default)",
        ),
        argument(
            "--no-stream",
            dest="stream",
            action="store_const",
            const=False,
            help="show output at the end",
        ),
        argument(
            "--verbose",
            dest="verbose",
            action="store_const",
            const=True,
            help="say where each command runs",
        ),
        argument("--no-verbose", dest="verbose", action="store_const", const=False),
        argument(
            "--progress-after",
            dest="progress_after",
            type=float,
            default=None,
            help="seconds before a progress bar (-1: never, 0: at once)",
        ),
        argument(
            "--signal-on-interrupt",
            dest="signal_on_interrupt",
            default=None,
            help="what Ctrl-C sends: SIGINT interrupts; SIGKILL, 9, 0 (nothing)...",
        ),
    ]
    for option in reversed(options):
        magic = option(magic)
    return magic


@dataclass
class _PxOptions:
    """What one ``%px`` was told; None: the session's default (``%pxconfig``)."""

    targets: str | None = None
    block: bool | None = None
    stream: bool | None = None
    verbose: bool | None = None
    progress_after: float | None = None
    signal_on_interrupt: str | None = None
    group: str | None = None
    out: str | None = None

    @classmethod
    def parsed(cls, args: argparse.Namespace) -> _PxOptions:
        return cls(
            args.targets,
            args.block,
            args.stream,
            args.verbose,
            args.progress_after,
            args.signal_on_interrupt,
            args.group_outputs,
            args.out,
        )


@magics_class
class KernelMagics(Magics):
    """The magics of ``ipython_parallel_kernel``; one instance per IPython session."""

    progress_after = Float(2.0, help="Seconds a %px waits before it shows a progress bar.").tag(
        config=True
    )
    stream = Bool(True, help="Show kernels' output while %px runs (else when it ends).").tag(
        config=True
    )
    group_outputs = Enum(
        display.GROUPINGS, "engine", help="How %px groups output shown when commands end."
    ).tag(config=True)
    block = Bool(True, help="Whether %px waits for the kernels (else returns at once).").tag(
        config=True
    )
    verbose = Bool(False, help="Whether %px says where it runs each command.").tag(config=True)
    signal_on_interrupt = Unicode(
        "SIGINT",
        help="What Ctrl-C during %px does: SIGINT interrupts the commands; another signal "
        "(name or number) is sent to the kernels' processes; 0 does nothing.",
    ).tag(config=True)
    targets = Unicode(None, allow_none=True, help="The kernels %px runs on (None: all).").tag(
        config=True
    )

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.active: InteractiveCluster | None = None
        self.started = StartedClusters()
        self.last: tuple[list[int], list[Any]] | None = None
        self.gathering = SessionGatherer()
        self.autopx_mode = AutoPx(shell)
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
    @subcommand("list", "the active kernels: address, state, queue, gui")
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
            %kernel list                                    target, address, state, queue, gui
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
        self.active = self.started.start(args.profile, args.n, args.gui, args.launcher)
        names = ", ".join(k.name for k in self.active)
        count = len(self.active)
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
        self.active = cluster
        if args.name:
            self._namespace()[args.name] = kernels[0] if len(kernels) == 1 else cluster
        bound = f", bound to {args.name}" if args.name else ""
        print(f"connected to {', '.join(k.name for k in kernels)} (active{bound})")

    def _kernel_list(self, args: argparse.Namespace) -> None:
        cluster = self._require_active()
        rows = [("target", "address", "state", "queue", "gui")]
        for target, kernel in enumerate(cluster):
            try:
                status = kernel.status(block=True)
                state, queued, gui = status["state"], str(status["queued"]), status["gui"]
                rows.append((str(target), kernel.name, state, queued, gui))
            except KernelError as e:
                rows.append((str(target), kernel.name, "dead", "-", f"({type(e).__name__})"))
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
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
        self.active = value
        print(f"active: {', '.join(k.name for k in value)}")

    def _kernel_stop(self, args: argparse.Namespace) -> None:
        cluster = self._require_active()
        chosen = _parse_targets(args.targets, len(cluster))
        names = [cluster[i].name for i in chosen]
        try:
            cluster.kill(chosen, block=True)
        except CompositeError as e:
            print(e.render_traceback(), file=sys.stderr)
        print(f"stopped {', '.join(names)}")
        if not len(cluster):
            self.active = None
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

    def _require_active(self) -> InteractiveCluster:
        if self.active is None or not len(self.active):
            raise UsageError(
                "no active kernels: start some with %kernel start -n 2, or connect with "
                "%kernel connect HOST:PORT"
            )
        return self.active

    # -- %px and %%px ------------------------------------------------------------------------

    @magic_arguments()
    @execution_options
    @argument(
        "-r",
        dest="group_outputs",
        action="store_const",
        const="order",
        help="show output in order (same as --group-outputs order)",
    )
    @argument(
        "-e",
        dest="group_outputs",
        action="store_const",
        const="engine",
        help="group output by kernel (same as --group-outputs engine)",
    )
    @argument("--group-outputs", choices=display.GROUPINGS, default=None)
    @argument("-o", "--out", dest="out", help="store the results (or ClusterResult) in this name")
    @argument("--local", action="store_true", help="also run the cell in this session")
    @line_cell_magic
    # The code is the kernels' to read: IPython must not fill in {name} or $name from here.
    @no_var_expand
    def px(self, line: str, cell: str | None = None) -> Any:
        """Run code on the active kernels and show what each one did.

        ``%px CODE`` runs one line; ``%%px [options]`` runs the cell (``%pxconfig``
        sets the options' defaults). Output is labelled by kernel: ``[stdout:0]``,
        ``[stderr:1]``, ``Out[0:3]``, and a failure as ``[0:execute]`` with the remote
        traceback. Long commands stream their output and show a progress bar; Ctrl-C
        interrupts the kernels.

        Example::

            In [1]: %%px -t ::2 -o results
               ...: import os
               ...: os.getpid()
            Out[0:1]: 4242
            Out[2:1]: 4244
        """
        if cell is None:
            return self._run(line, _PxOptions())
        args = parse_argstring(self.px, line)
        if args.local and self.shell is not None:
            self.shell.run_cell(cell)
        return self._run(cell, _PxOptions.parsed(args))

    @magic_arguments()
    @execution_options
    @argument("--group-outputs", choices=display.GROUPINGS, default=None)
    @line_magic
    def pxconfig(self, line: str) -> None:
        """Set the defaults of ``%px`` and ``%%px``: ``%pxconfig --noblock -t ::2``.

        Each option given changes its default for this session; the others stay.
        """
        args = parse_argstring(self.pxconfig, line)
        if args.targets is not None:
            _parse_targets(args.targets, len(self._require_active()))  # refuse a bad one now
            self.targets = args.targets
        for option in (
            "block",
            "stream",
            "verbose",
            "progress_after",
            "signal_on_interrupt",
            "group_outputs",
        ):
            value = getattr(args, option)
            if value is not None:
                setattr(self, option, value)

    def _run(self, code: str, options: _PxOptions) -> Any:
        cluster = self._require_active()
        if not code.strip():
            raise UsageError("nothing to run: %px CODE, or %%px with a cell")
        chosen = _parse_targets(options.targets or self.targets, len(cluster))
        block = self.block if options.block is None else options.block
        if self.verbose if options.verbose is None else options.verbose:
            mode = "Parallel" if block else "Async parallel"
            print(f"{mode} execution on kernels {', '.join(map(str, chosen))}")
        runner = PxRunner(
            cluster,
            stream=self.stream if options.stream is None else options.stream,
            group=options.group or self.group_outputs,
            colour=self._colour(),
            progress_after=(
                self.progress_after if options.progress_after is None else options.progress_after
            ),
            signal_on_interrupt=options.signal_on_interrupt or self.signal_on_interrupt,
        )
        if not block:
            pending = runner.start(code, chosen)
            if options.out:
                self._namespace()[options.out] = pending
            return pending
        outcomes = runner.run(code, chosen)
        self.last = (chosen, outcomes)
        if options.out:
            self._namespace()[options.out] = outcomes
        # Raised, not printed: IPython shows each remote traceback through
        # CompositeError._render_traceback_, and the cell counts as failed.
        runner.raise_failures(chosen, outcomes)
        return None

    def _namespace(self) -> dict[str, Any]:
        """The user's variables, where ``--name``, ``-o`` and ``%kernel use`` look."""
        if self.shell is None:
            raise UsageError("these magics need an IPython shell")
        return self.shell.user_ns

    def _colour(self) -> bool:
        return str(getattr(self.shell, "colors", "nocolor")).lower() != "nocolor"

    # -- %autopx, %pxresult -----------------------------------------------------------------

    @line_magic
    def autopx(self, line: str = "") -> None:
        """Toggle sending every cell to the active kernels, as if it began with %%px.

        Type ``%autopx`` again to stop.
        """
        if self.autopx_mode.enabled:
            self.autopx_mode.disable()
            print("%autopx disabled")
            return
        self._require_active()
        self.autopx_mode.enable()
        print("%autopx enabled: every cell runs on the active kernels (type %autopx to stop)")

    @line_magic
    def pxresult(self, line: str = "") -> None:
        """Show the last %px result again, or (``%pxresult N``) command N of each kernel."""
        if line.strip():
            try:
                number = int(line)
            except ValueError:
                raise UsageError("%pxresult takes a command number, e.g. %pxresult 3") from None
            cluster = self._require_active()
            chosen = list(range(len(cluster)))
            outcomes = cluster.result(number, block=True)
        elif self.last is None:
            raise UsageError("no %px has run yet in this session")
        else:
            chosen, outcomes = self.last
        display.show_outputs(
            chosen,
            outcomes,
            streamed=False,
            group=self.group_outputs,
            colour=self._colour(),
            errors=True,
        )

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop this session's gatherer, disconnect, and stop the kernels it started.

        Run by ``%unload_ext`` or when the interpreter exits, whichever comes first.
        """
        atexit.unregister(self.close)
        self.gathering.close()
        if self.active is not None:
            self.active.disconnect()
            self.active = None
        self.started.stop_all()
        self.autopx_mode.disable()


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


def activate_in_session(shell: Any, cluster: InteractiveCluster) -> None:
    """Make ``cluster`` the target of ``%px`` in ``shell`` (``InteractiveCluster.activate``)."""
    session_magics(shell).active = cluster


# The client sits below the magics and never imports them: they hand it the activator.
cluster_module.set_activator(activate_in_session)


def _our_magics(shell: Any) -> KernelMagics | None:
    return next((c for c in shell.configurables if isinstance(c, KernelMagics)), None)


def _parse_targets(spec: str | None, count: int) -> list[int]:
    """The targets typed after ``-t`` or ``%kernel stop``; a mistake is a UsageError."""
    try:
        return parse_targets(None if spec is None else spec.strip("'\""), count)
    except (ValueError, IndexError, TypeError) as e:
        raise UsageError(str(e)) from None
