"""IPython magics for driving kernels: ``%kernel``, ``%px``, ``%%px``, ``%autopx``, ``%pxresult``.

Load them with ``%load_ext ipython_parallel_kernel``. Settings go in an IPython
profile's ``ipython_config.py``, for example::

    c.KernelMagics.progress_after = 5.0  # seconds before %px shows a progress bar
    c.KernelMagics.stream = False  # show output when commands end, grouped

A session::

    In [1]: %load_ext ipython_parallel_kernel
    In [2]: %kernel start -n 2
    started 2 kernels: 127.0.0.1:41023, 127.0.0.1:41025 (active)
    In [3]: %px import os; print(os.getpid())
    [stdout:0] 4242
    [stdout:1] 4243
    In [4]: %px a = 5
    In [5]: %px a * 2
    Out[0:3]: 10
    Out[1:3]: 10

Kernels started by a session are stopped when it exits or the extension is unloaded.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import queue
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, Enum, Float

from ..client import display
from ..client.cluster import InteractiveCluster, parse_targets
from ..client.gatherer import ResultGatherer
from ..client.kernel import RemoteKernel
from ..core.connection import format_address
from ..errors import CompositeError, KernelError

CLUSTER_APP = [sys.executable, "-m", "ipython_parallel_kernel.apps.cluster"]
DEFAULT_GATHER_PORT = 10104


class _KernelArgumentParser(argparse.ArgumentParser):
    """argparse that reports mistakes as UsageError (a clean message, no traceback)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}\n{self.format_usage()}")


def _kernel_parser() -> argparse.ArgumentParser:
    parser = _KernelArgumentParser(prog="%kernel", add_help=False)
    commands = parser.add_subparsers(dest="command", parser_class=_KernelArgumentParser)
    start = commands.add_parser("start", help="start local kernels and activate them")
    start.add_argument("-n", type=int, default=2, help="how many kernels (default 2)")
    start.add_argument("--gui", default="none", choices=["none", "wx", "tk", "qt"])
    start.add_argument("--profile", default="default")
    connect = commands.add_parser("connect", help="connect to running kernels")
    connect.add_argument("addresses", nargs="+", metavar="ADDR_OR_FILE")
    connect.add_argument("--name", help="bind the kernel (or cluster) to this variable")
    commands.add_parser("list", help="the active kernels: address, state, queue, gui")
    use = commands.add_parser("use", help="activate a RemoteKernel or InteractiveCluster")
    use.add_argument("variable")
    stop = commands.add_parser("stop", help="shut down the active kernels (or some)")
    stop.add_argument("targets", nargs="?", default="all")
    gather = commands.add_parser("gather", help="show the records of notifying kernels here")
    gather.add_argument("port", nargs="?", type=int, default=DEFAULT_GATHER_PORT)
    gather.add_argument("--ip", default="127.0.0.1")
    gather.add_argument("--stop", action="store_true", help="stop this session's gatherer")
    notify = commands.add_parser("notify", help="make the active kernels report to a gatherer")
    notify.add_argument("address", nargs="?", metavar="HOST:PORT")
    notify.add_argument("--stop", action="store_true", help="stop reporting to that gatherer")
    for verb in ("allow", "deny"):
        access = commands.add_parser(verb, help=f"{verb} clients from an address or network")
        access.add_argument("network")
    return parser


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
            timeout=60,
            check=False,
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

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.active: InteractiveCluster | None = None
        self.started: list[StartedCluster] = []
        self.last: tuple[list[int], list[Any]] | None = None
        self.autopx = False
        self.gatherer: ResultGatherer | None = None
        self._parser = _kernel_parser()
        self._started_count = 0
        atexit.register(self.close)

    # -- %kernel -------------------------------------------------------------------------

    @line_magic
    def kernel(self, line: str) -> Any:
        """Start, connect to, list, activate and stop kernels.

        Usage::

            %kernel start [-n N] [--gui wx] [--profile P]   start N local kernels, activate them
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
            raise UsageError(
                "say what to do: %kernel start | connect | list | use | stop | gather | notify | "
                "allow | deny "
                "(see %kernel?)"
            )
        args = self._parser.parse_args(words)
        return getattr(self, f"_kernel_{args.command}")(args)

    def _kernel_start(self, args: argparse.Namespace) -> None:
        if args.n < 1:
            raise UsageError("-n takes a number of kernels, 1 or more")
        import os

        self._started_count += 1
        cluster_id = f"session-{os.getpid()}-{self._started_count}"
        command = [*CLUSTER_APP, "start", "-n", str(args.n), "--cluster-id", cluster_id]
        command += ["--profile", args.profile, "--gui", args.gui]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )
        if done.returncode != 0:
            raise UsageError(f"could not start kernels:\n{done.stdout}{done.stderr}".rstrip())
        ready = [line for line in done.stdout.splitlines() if line.startswith("ipk-cluster ready:")]
        path = ready[-1].rsplit("cluster file ", 1)[1].strip()
        self.active = InteractiveCluster.from_file(path)
        self.started.append(StartedCluster(cluster_id, args.profile, {k.name for k in self.active}))
        names = ", ".join(k.name for k in self.active)
        count = len(self.active)
        print(f"started {count} kernel{'s' if count != 1 else ''}: {names} (active)")

    def _kernel_connect(self, args: argparse.Namespace) -> None:
        kernels: list[RemoteKernel] = []
        for address in args.addresses:
            try:
                if Path(address).expanduser().is_file() and _is_cluster_file(address):
                    kernels += InteractiveCluster.from_file(address).kernels
                else:
                    kernels.append(RemoteKernel(address))
            except (KernelError, ValueError, OSError) as e:
                raise UsageError(f"cannot connect to {address}: {e}") from None
        cluster = InteractiveCluster()
        cluster.kernels = kernels
        self.active = cluster
        if args.name:
            self.shell.user_ns[args.name] = kernels[0] if len(kernels) == 1 else cluster
        bound = f", bound to {args.name}" if args.name else ""
        print(f"connected to {', '.join(k.name for k in kernels)} (active{bound})")

    def _kernel_list(self, args: argparse.Namespace) -> None:
        cluster = self._require_active()
        rows = [("target", "address", "state", "queue", "gui")]
        for target, kernel in enumerate(cluster):
            try:
                status = kernel.status(block=True)
                rows.append(
                    (
                        str(target),
                        kernel.name,
                        status["state"],
                        str(status["queued"]),
                        status["gui"],
                    )
                )
            except KernelError as e:
                rows.append((str(target), kernel.name, "dead", "-", f"({type(e).__name__})"))
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        for row in rows:
            print(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip()
            )

    def _kernel_use(self, args: argparse.Namespace) -> None:
        value = self.shell.user_ns.get(args.variable)
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
        try:
            chosen = parse_targets(_targets(args.targets), len(cluster))
        except (ValueError, IndexError, TypeError) as e:
            raise UsageError(str(e)) from None
        names = [cluster[i].name for i in chosen]
        try:
            cluster.kill(chosen, block=True)
        except CompositeError as e:
            print(e.render_traceback(), file=sys.stderr)
        print(f"stopped {', '.join(names)}")
        if not len(cluster):
            self.active = None
        for started in list(self.started):
            started.running.difference_update(names)
            if not started.running:
                # Its kernels are gone: the cluster file and the cluster go too.
                self.started.remove(started)
                started.stop()

    def _kernel_gather(self, args: argparse.Namespace) -> None:
        if args.stop:
            if self.gatherer is None:
                raise UsageError("no gatherer runs in this session")
            where = format_address(self.gatherer.address)
            self.gatherer.stop()
            self.gatherer = None
            print(f"stopped gathering on {where}")
            return
        if self.gatherer is not None:
            raise UsageError(
                f"already gathering on {format_address(self.gatherer.address)} "
                "(%kernel gather --stop first)"
            )
        try:
            gatherer = ResultGatherer((args.ip, args.port))
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot gather on {args.ip}:{args.port}: {e}") from None
        self.gatherer = gatherer.start()
        self._watch_active()
        print(f"gathering on {format_address(gatherer.address)}")

    def _kernel_notify(self, args: argparse.Namespace) -> None:
        if args.address is None and self.gatherer is None:
            raise UsageError(
                "notify where? give HOST:PORT, or run %kernel gather first to gather here"
            )
        cluster = self._require_active()
        address = args.address or format_address(self.gatherer.address)
        try:
            cluster.notify(address, not args.stop, block=True)
        except ValueError as e:
            raise UsageError(f"notify {address}: {e}") from None
        except CompositeError as e:
            raise UsageError(f"notify {address}: {e.errors[0][2]}") from None
        if self.gatherer is not None and args.address is None:
            self._watch_active()
        names = ", ".join(k.name for k in cluster)
        if args.stop:
            print(f"{names} no longer notify {address}")
        else:
            print(f"{names} now notify {address}")

    def _watch_active(self) -> None:
        """Let this session's gatherer accept the active kernels' records."""
        for kernel in self.active or []:
            path = getattr(kernel.info, "path", None)
            try:
                if path:
                    self.gatherer.watch(path)
                    continue
            except (OSError, ValueError, KeyError, TypeError):
                pass
            if kernel.info.key:
                self.gatherer.add_key(kernel.info.key)

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
    @argument("-t", "--targets", default=None, help="which kernels: 0 | 0,2 | 1:3 | ::2 | all")
    @argument("--noblock", action="store_true", help="return the ClusterResult at once")
    @argument("--stream", dest="stream", action="store_true", default=None)
    @argument("--no-stream", dest="stream", action="store_false", help="show output at the end")
    @argument("-o", "--out", dest="out", help="store the results (or ClusterResult) in this name")
    @argument("--group-outputs", choices=display.GROUPINGS, default=None)
    @line_cell_magic
    # The code is the kernels' to read: IPython must not fill in {name} or $name from here.
    @no_var_expand
    def px(self, line: str, cell: str | None = None) -> Any:
        """Run code on the active kernels and show what each one did.

        ``%px CODE`` runs one line; ``%%px [options]`` runs the cell. Output is
        labelled by kernel: ``[stdout:0]``, ``[stderr:1]``, ``Out[0:3]``, and a failure
        as ``[0:execute]`` with the remote traceback. Long commands stream their output
        and show a progress bar; Ctrl-C interrupts the kernels.

        Example::

            In [1]: %%px -t ::2 -o results
               ...: import os
               ...: os.getpid()
            Out[0:1]: 4242
            Out[2:1]: 4244
        """
        if cell is None:
            return self._run(line, None, block=True, stream=None, out=None, group=None)
        args = parse_argstring(self.px, line)
        return self._run(
            cell, args.targets, not args.noblock, args.stream, args.out, args.group_outputs
        )

    def _run(
        self,
        code: str,
        targets: str | None,
        block: bool,
        stream: bool | None,
        out: str | None,
        group: str | None,
    ) -> Any:
        cluster = self._require_active()
        if not code.strip():
            raise UsageError("nothing to run: %px CODE, or %%px with a cell")
        try:
            chosen = parse_targets(_targets(targets), len(cluster))
        except (ValueError, IndexError, TypeError) as e:
            raise UsageError(str(e)) from None
        stream = self.stream if stream is None else stream
        outputs: queue.SimpleQueue = queue.SimpleQueue()
        on_output = (lambda *chunk: outputs.put(chunk)) if stream else None
        pending = cluster.execute(code, chosen, block=False, on_output=on_output)
        if not block:
            if out:
                self.shell.user_ns[out] = pending
            return pending
        outcomes = self._wait(cluster, pending, chosen, outputs)
        self.last = (chosen, outcomes)
        if out:
            self.shell.user_ns[out] = outcomes
        self._show(chosen, outcomes, stream, group)
        failures = [
            (target, self.active[target].name, outcome)
            for target, outcome in zip(chosen, outcomes, strict=True)
            if isinstance(outcome, BaseException)
        ]
        if failures:
            # Raised, not printed: IPython shows each remote traceback through
            # CompositeError._render_traceback_, and the cell counts as failed.
            raise CompositeError("execute", failures, outcomes)
        return None

    def _wait(
        self, cluster: InteractiveCluster, pending: Any, chosen: list[int], outputs: Any
    ) -> list[Any]:
        """Wait for every kernel, printing streamed output from this (the shell's) thread."""
        bar = None
        started = time.monotonic()
        try:
            while not pending.wait(0.05):
                _drain(outputs)
                if bar is None and time.monotonic() - started > self.progress_after:
                    bar = _progress_bar(len(chosen))
                if bar is not None and pending.progress != bar.n:
                    bar.update(pending.progress - bar.n)
        except KeyboardInterrupt:
            cluster.interrupt(chosen, block=False)
            print(f"interrupted kernels {', '.join(map(str, chosen))}", file=sys.stderr)
            pending.wait(30)
        finally:
            if bar is not None:
                bar.close()
        _drain(outputs)
        error = pending.exception(0) if pending.done() else None
        if isinstance(error, CompositeError):
            return error.results
        if error is not None:
            raise error
        return pending.result(0) if pending.done() else []

    def _show(
        self,
        chosen: list[int],
        outcomes: list[Any],
        streamed: bool,
        group: str | None,
        errors: bool = False,
    ) -> None:
        colour = getattr(self.shell, "colors", "nocolor").lower() != "nocolor"
        group = group or self.group_outputs
        display.show_outputs(
            chosen, outcomes, streamed=streamed, group=group, colour=colour, errors=errors
        )

    # -- %autopx, %pxresult -----------------------------------------------------------------

    @line_magic
    def autopx(self, line: str = "") -> None:
        """Toggle sending every cell to the active kernels, as if it began with %%px.

        Type ``%autopx`` again to stop.
        """
        transformers = self.shell.input_transformers_post
        if self.autopx:
            if _autopx_transformer in transformers:
                transformers.remove(_autopx_transformer)
            self.autopx = False
            print("%autopx disabled")
            return
        self._require_active()
        transformers.append(_autopx_transformer)
        self.autopx = True
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
        self._show(chosen, outcomes, streamed=False, group=None, errors=True)

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop this session's gatherer, disconnect, and stop the kernels it started."""
        if self.gatherer is not None:
            self.gatherer.stop()
            self.gatherer = None
        if self.active is not None:
            self.active.disconnect()
            self.active = None
        while self.started:
            self.started.pop().stop()
        if _autopx_transformer in getattr(self.shell, "input_transformers_post", []):
            self.shell.input_transformers_post.remove(_autopx_transformer)


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


def _our_magics(shell: Any) -> KernelMagics | None:
    return next((c for c in shell.configurables if isinstance(c, KernelMagics)), None)


def _autopx_transformer(lines: list[str]) -> list[str]:
    """Rewrite a cell to run on the kernels, except the %autopx that turns it off."""
    source = "".join(lines)
    if not source.strip() or source.lstrip().startswith(
        ("%autopx", "get_ipython().run_line_magic('autopx'")
    ):
        return lines
    return [f"get_ipython().run_cell_magic('px', '', {source!r})\n"]


def _targets(spec: str | None) -> Any:
    return None if spec is None else spec.strip("'\"")


def _is_cluster_file(path: str) -> bool:
    import json

    try:
        return isinstance(json.loads(Path(path).expanduser().read_text()), list)
    except (OSError, ValueError):
        return False


def _progress_bar(total: int) -> Any:
    """tqdm's widget where ipywidgets can draw it (a notebook), else its text bar."""
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        # tqdm.auto would fall back to this too, but warn that ipywidgets is missing.
        from tqdm import tqdm
    return tqdm(total=total, desc="%px", unit="kernel", leave=False)


def _drain(outputs: Any) -> None:
    while True:
        try:
            target, name, text = outputs.get_nowait()
        except queue.Empty:
            return
        display.print_stream(target, name, text)
