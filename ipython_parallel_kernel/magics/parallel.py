"""``ParallelMagics``: ``%px``, ``%%px``, ``%pxconfig``, ``%pxresult`` and ``%autopx``.

One instance drives one target: an ``InteractiveCluster`` (``ic.activate()``, ``%kernel
use``), or a ``DirectView`` (``rc[::2].activate()``), whose targets and ``block`` flag
are then the magics' defaults, as in ipyparallel. The session's own instance is the
``KernelMagics`` subclass, which adds ``%kernel``; a target activated with a suffix gets
an instance of its own, whose magics carry the suffix::

    In [1]: rc.activate(targets=[0, 2], suffix="_even")
    In [2]: %px_even print(rank)
    [stdout:0] 0
    [stdout:2] 2
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, Enum, Float, Unicode

from ..client import display
from ..client.cluster import ClusterResult, InteractiveCluster, parse_targets
from .autopx import AutoPx
from .runner import PxRunner

if TYPE_CHECKING:
    from ..client.views import DirectView

#: What a suffix may be made of: it ends the magics' names.
SUFFIX = re.compile(r"\w*")


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
            help="return the ClusterResult at once (%%pxresult waits for it and shows it)",
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


def output_options(magic: Any) -> Any:
    """The options ``%%px`` and ``%pxresult`` share: grouping, and where to keep the result."""
    options = [
        argument(
            "-r",
            dest="group_outputs",
            action="store_const",
            const="order",
            help="show output in order (same as --group-outputs order)",
        ),
        argument(
            "-e",
            dest="group_outputs",
            action="store_const",
            const="engine",
            help="group output by kernel (same as --group-outputs engine)",
        ),
        argument(
            "--group-outputs",
            choices=display.GROUPINGS,
            default=None,
            help="engine: each kernel's output together (the default); type: all stdout, "
            "then all stderr; order: as the kernels finished",
        ),
        argument(
            "-o", "--out", dest="out", help="store the results (or ClusterResult) in this name"
        ),
    ]
    for option in reversed(options):
        magic = option(magic)
    return magic


@dataclass
class _LastPx:
    """The last ``%px``: where it ran, and its ClusterResult, for ``%pxresult``."""

    targets: list[int]
    result: ClusterResult
    runner: PxRunner


@magics_class
class ParallelMagics(Magics):
    """``%px<suffix>`` and its family, bound to one cluster or DirectView.

    Settings (``c.ParallelMagics.<name>`` in ``ipython_config.py``, or
    ``c.KernelMagics.<name>`` for the session's own magics) are the defaults
    ``%pxconfig`` changes.
    """

    progress_after = Float(2.0, help="Seconds a %px waits before it shows a progress bar.").tag(
        config=True
    )
    stream = Bool(True, help="Show kernels' output while %px runs (else when it ends).").tag(
        config=True
    )
    group_outputs = Enum(
        display.GROUPINGS, "engine", help="How %px groups output shown when commands end."
    ).tag(config=True)
    block = Bool(
        True,
        help="Whether %px waits for the kernels (else returns at once); an active "
        "DirectView's own block flag wins.",
    ).tag(config=True)
    verbose = Bool(False, help="Whether %px says where it runs each command.").tag(config=True)
    signal_on_interrupt = Unicode(
        "SIGINT",
        help="What Ctrl-C during %px does: SIGINT interrupts the commands; another signal "
        "(name or number) is sent to the kernels' processes; 0 does nothing.",
    ).tag(config=True)
    targets = Unicode(
        None,
        allow_none=True,
        help="The kernels %px runs on (None: all, or an active DirectView's).",
    ).tag(config=True)

    def __init__(self, shell: Any = None, suffix: str = "", **kwargs: Any) -> None:
        if not SUFFIX.fullmatch(suffix):
            raise ValueError(
                f"suffix {suffix!r}: use letters, digits and '_' (it ends the magics' "
                "names, as in %px_even)"
            )
        super().__init__(shell=shell, **kwargs)
        self.suffix = suffix
        # A magics table holds only the magics of the class it decorates: gather the
        # bases' too, named with the suffix.
        tables: dict[str, dict[str, Any]] = {kind: {} for kind in self.magics}
        for cls in reversed(type(self).__mro__):
            for kind, names in vars(cls).get("magics", {}).items():
                for name, method in names.items():
                    tables[kind][f"{name}{suffix}"] = getattr(self, method)
        self.magics = tables
        #: The cluster %px runs on (an active view's whole client, targets aside).
        self.active: InteractiveCluster | None = None
        #: The DirectView whose targets and block flag %px follows, if one is active.
        self.view: DirectView | None = None
        self.last: _LastPx | None = None
        self.autopx_mode = AutoPx(shell, suffix)

    def bind(self, target: InteractiveCluster | DirectView | None) -> None:
        """Make ``target`` (a cluster, a DirectView, or nothing) what these magics run on."""
        if target is None or isinstance(target, InteractiveCluster):
            self.view, self.active = None, target
        else:
            self.view, self.active = target, target._cluster

    def _require_active(self) -> InteractiveCluster:
        if self.active is None or not len(self.active):
            raise UsageError(
                "no active kernels: start some with %kernel start -n 2, connect with "
                "%kernel connect HOST:PORT, or activate a view: rc[:].activate()"
            )
        return self.active

    # -- %px and %%px ------------------------------------------------------------------------

    @magic_arguments()
    @execution_options
    @output_options
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
        interrupts the kernels. ``--noblock`` returns at once: ``%pxresult`` shows it.

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
            typed_targets(args.targets, len(self._require_active()))  # refuse a bad one now
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
        chosen = self._chosen(options.targets, len(cluster))
        block = options.block
        if block is None:
            block = self.view.block if self.view is not None else self.block
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
            self.last = _LastPx(chosen, pending, runner)
            if options.out:
                self._namespace()[options.out] = pending
            return pending
        outcomes = runner.run(code, chosen)
        assert runner.result is not None  # run() sets it
        self.last = _LastPx(chosen, runner.result, runner)
        if options.out:
            self._namespace()[options.out] = outcomes
        # Raised, not printed: IPython shows each remote traceback through
        # CompositeError._render_traceback_, and the cell counts as failed.
        runner.raise_failures(chosen, outcomes)
        return None

    def _chosen(self, spec: str | None, count: int) -> list[int]:
        """The targets of one %px: ``-t``, else %pxconfig's, else the view's, else all."""
        spec = spec or self.targets
        if spec is None and self.view is not None:
            return self.view._ids(None)
        return typed_targets(spec, count)

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
        name = f"%autopx{self.suffix}"
        if self.autopx_mode.enabled:
            self.autopx_mode.disable()
            print(f"{name} disabled")
            return
        self._require_active()
        self.autopx_mode.enable()
        print(f"{name} enabled: every cell runs on the active kernels (type {name} to stop)")

    @magic_arguments()
    @output_options
    @argument(
        "number",
        nargs="?",
        type=int,
        help="show command NUMBER of each kernel (Out[0:NUMBER]) instead",
    )
    @line_magic
    def pxresult(self, line: str = "") -> None:
        """Show the last %px result again; after ``%px --noblock``, wait for it first.

        ``%pxresult 3`` shows command 3 of each kernel instead; ``-e``/``-r``/
        ``--group-outputs`` group the output; ``-o NAME`` stores the result in NAME
        without showing it.

        Example::

            In [1]: %%px --noblock
               ...: import time; time.sleep(1); 6 * 7
            In [2]: %pxresult
            Out[0:1]: 42
            Out[1:1]: 42
        """
        args = parse_argstring(self.pxresult, line)
        group = args.group_outputs or self.group_outputs
        if args.number is not None:
            cluster = self._require_active()
            chosen = self._chosen(None, len(cluster))
            outcomes = cluster.result(args.number, targets=chosen, block=True)
            runner = PxRunner(cluster, stream=False, group=group, colour=self._colour())
        elif self.last is None:
            raise UsageError("no %px has run yet in this session")
        else:
            chosen, runner = self.last.targets, self.last.runner
            if args.out:
                self._namespace()[args.out] = self.last.result
                return
            outcomes = runner.wait(self.last.result, chosen)
        display.show_outputs(
            chosen, outcomes, streamed=False, group=group, colour=self._colour(), errors=False
        )
        runner.raise_failures(chosen, outcomes)

    def close(self) -> None:
        """Stop sending cells to the kernels and forget them."""
        self.autopx_mode.disable()
        self.bind(None)


def typed_targets(spec: str | None, count: int) -> list[int]:
    """The targets typed after ``-t`` or ``%kernel stop``; a mistake is a UsageError."""
    try:
        return parse_targets(None if spec is None else spec.strip("'\""), count)
    except (ValueError, IndexError, TypeError) as e:
        raise UsageError(str(e)) from None
