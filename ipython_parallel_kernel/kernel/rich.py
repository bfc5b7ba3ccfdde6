"""Rich output of a command: ``display()`` calls and matplotlib figures, as display data.

A kernel runs plain Python, and IPython syntax only once a command uses it (see
``ipython_syntax``); it must start fast: this module imports neither IPython nor
matplotlib. It only notices when user code (or the engine, formatting a result) has
loaded them, and then makes their rich output land in the engine's
``RichOutput.displays``, which the engine empties into ``CommandRecord.displays``.

How ``display()`` is captured
-----------------------------
``IPython.display.display`` (and ``publish_display_data``, ``clear_output``) asks
``InteractiveShell.initialized()``. With no shell it just ``print``s its arguments.
With one, it formats each object with the shell's ``display_formatter`` and hands the
mimebundle to the shell's ``display_pub``. So all display needs is a shell singleton
whose ``display_pub`` records bundles: that is IPython's own extension point, the one
ipykernel uses (``display_pub_class``), not a patch of IPython's functions.

We do not build a real ``InteractiveShell`` for it: its ``__init__`` replaces
``sys.modules["__main__"]``, opens a history database with a writer thread, creates a
profile directory, adds builtins, an atexit hook and the magics -- none of which a
kernel wants, whose code runs in its own namespace. ``displayshell.DisplayShell`` is an
``InteractiveShell`` subclass (so ``InteractiveShell.instance()`` accepts it) that
skips that ``__init__`` and has only what display and the libraries that look for a
shell use: ``display_formatter``, ``display_pub``, ``events`` (pyplot registers a
callback there), ``showtraceback`` (a failing formatter calls it) and a no-op
``enable_gui`` (the kernel runs its own event loop, see ``--gui``). It costs about
0.1 ms to make, once.

IPython syntax (``%timeit``, ``!cmd``) needs a real shell, with magics and the
engine's namespace as its own: ``interactive_shell`` makes a ``KernelShell`` (an
``InteractiveShell`` without the parts listed above that a kernel does not want; a
few milliseconds, and IPython's magics loaded) the first time a command needs one. It
takes the ``DisplayShell``'s place, with the same formatter and publisher, so one
shell serves display and magics from then on.

When: the shell is the process's IPython singleton only while a command runs, like
the stream capture, so between commands ``get_ipython()`` stays None and an Engine
hosted inside a real IPython (tests) leaves that shell alone: a shell already there
is never replaced. If IPython is loaded when a command starts, the shell is attached
then. If not, a finder on ``sys.meta_path`` waits for
``IPython.core.interactiveshell``, the module display() asks, and attaches the shell
right after it has executed, before user code gets it back: the first command that
imports IPython can display at once, and a kernel whose user never imports IPython
pays one string comparison per import. (The engine loads IPython too, the first time
it formats a trailing expression's value other than a number or a string, after that
command's code has run.)

matplotlib figures
------------------
Only if user code imported ``matplotlib.pyplot`` (``sys.modules``; never imported
here). At the end of each command, as Jupyter's inline backend does, every open
pyplot figure with a non-interactive canvas (Agg, the default without a display) is
published as image/png (base64) with text/plain, in figure-number order, and closed.
Since each command's figures are closed at its end, the figures open then are those
the command created or drew on (or that code run outside a command, through
``apply``, left). A figure already shown during the command, by ``display(fig)`` or as
its result, is closed without being shown again. Figures on interactive canvases (a
GUI kernel's windows) are left alone. ``Engine.format`` and ``display`` render a
``Figure`` as PNG through a printer registered by type *name*, so registering it
imports nothing.
"""

from __future__ import annotations

import base64
import io
import sys
import threading
import traceback
import weakref
from types import ModuleType
from typing import Any

from .capture import DisplayCapture, jsonable
from .importhook import after_import

WATCHED = "IPython.core.interactiveshell"
#: Values of these types are formatted without IPython when nothing says otherwise
#: (see ``displayshell.PlainValues``).
_PLAIN_TYPES = frozenset((int, float, complex, bool, str, bytes))

#: Guards IPython's shell singleton slot, which every engine of the process shares.
_lock = threading.Lock()
_module: ModuleType | None = None  # ``displayshell``, once imported


def _displayshell() -> ModuleType:
    """The ``displayshell`` module, imported after IPython has finished loading.

    Importing IPython may run ``_on_ipython``, which needs ``displayshell``: letting
    that import complete first means ``displayshell`` is never found half-initialized.
    """
    global _module
    if _module is None:  # once only: every command attaches
        import IPython.core.interactiveshell  # noqa: F401

        from . import displayshell

        _module = displayshell
    return _module


class RichOutput:
    """One engine's rich output: the display data its commands publish, and the shell
    that makes ``display()`` reach it.

    Thread rules: ``begin_command``/``end_command`` run on the engine's thread, around
    each command; ``format_value`` on the same thread. ``_on_ipython`` runs on whatever
    thread imports IPython, so attaching and detaching take the module's ``_lock``.
    """

    def __init__(self) -> None:
        #: The command's display data, in order (``display()``, figures).
        self.displays = DisplayCapture()
        #: Our shell: a DisplayShell, made the first time it is attached, until
        #: ``interactive_shell`` replaces it with a KernelShell.
        self._shell: Any = None
        self._slots: tuple[Any, ...] = ()  # the singleton classes whose ``_instance`` it takes
        self._formatter: Any = None  # its DisplayFormatter, also used by format_value
        self._plain: Any = None  # displayshell.PlainValues of that formatter
        self._attached = False
        self._finder: Any = None
        self._shown_figures: weakref.WeakSet[Any] = weakref.WeakSet()

    def begin_command(self) -> None:
        """Start collecting a command's display data, and let ``display()`` reach it."""
        self._shown_figures.clear()
        self.displays.start()
        if WATCHED in sys.modules:
            self._attach()
        else:
            self._watch_for_ipython()

    def end_command(self) -> list[dict[str, Any]]:
        """Publish the command's figures, stop collecting; return its bundles in order."""
        try:
            try:
                self.publish_figures()
            except (Exception, KeyboardInterrupt):
                # A figure that cannot be drawn (or an interrupt while drawing) must not
                # cost the command its record: say why on the command's stderr.
                traceback.print_exc()
        finally:
            self._detach()
            bundles = self.displays.stop()
        return bundles

    def format_value(self, value: Any) -> dict[str, Any]:
        """Display data of a value, JSON-ready: text/plain always, richer types where
        it has them.

        A number, string or bytes with no printer registered for it is its ``repr``,
        found without IPython's formatter (or importing IPython, when no command has):
        until IPython is loaded, nothing can have registered one.
        """
        if type(value) in _PLAIN_TYPES:
            text = repr(value) if self._plain is None else self._plain.text(value)
            if text is not None:
                return {"text/plain": text}
        data, _ = self._get_formatter().format(value)
        return jsonable(data)

    # -- the shell -----------------------------------------------------------------

    @property
    def interactive(self) -> Any:
        """The KernelShell that runs IPython syntax, or None while no command has needed it."""
        if _module is not None and isinstance(self._shell, _module.KernelShell):
            return self._shell
        return None

    def interactive_shell(self, namespace: dict[str, Any]) -> Any:
        """The IPython shell that runs magics and ``!cmd`` in ``namespace`` (the engine's),
        made the first time; from then on it is also the shell ``display()`` reaches.

        Engine thread only, like ``begin_command``.
        """
        shell = self.interactive
        if shell is not None:
            return shell
        module = _displayshell()
        shell = module.KernelShell(self.displays, self._get_formatter(), namespace)
        with _lock:
            attached = self._attached
            self._free_slots()
            self._shell, self._slots = shell, tuple(type(shell)._walk_mro())
            if attached:
                self._fill_slots()
        return shell

    def _get_formatter(self) -> Any:
        if self._formatter is None:
            module = _displayshell()
            if self._formatter is None:  # unless importing IPython has just made it
                self._formatter = module.make_formatter(self.figure_png)
                self._plain = module.PlainValues(self._formatter, _PLAIN_TYPES)
        return self._formatter

    def _attach(self) -> None:
        """Make our shell the IPython singleton, unless there already is one."""
        # Imports first, outside the lock: another thread may hold an import lock we
        # need while it waits for ours (a user thread importing IPython runs
        # ``_on_ipython``).
        module = _displayshell()
        formatter = self._get_formatter()
        InteractiveShell = module.InteractiveShell
        with _lock:
            if InteractiveShell.initialized():  # ours, or a real shell we must not replace
                return
            if self._shell is None:
                self._shell = module.DisplayShell(self.displays, formatter)
                self._slots = tuple(module.DisplayShell._walk_mro())
            self._fill_slots()

    def _detach(self) -> None:
        """Take our shell off the singleton slot, so nothing sees it between commands."""
        with _lock:
            self._free_slots()

    def _fill_slots(self) -> None:
        """Make our shell the singleton. ``_lock`` held.

        SingletonConfigurable keeps its instance in ``_instance`` on each singleton class
        of the MRO (what ``instance()`` sets and ``clear_instance()`` unsets); setting it
        here lets one shell, with its formatters, serve every command.
        """
        for slot in self._slots:
            slot._instance = self._shell
        self._attached = True

    def _free_slots(self) -> None:
        """``clear_instance``, with the classes it walks found once, not per command, and
        only where our shell is. ``_lock`` held."""
        if not self._attached:
            return
        self._attached = False
        for slot in self._slots:
            if slot._instance is self._shell:
                slot._instance = None

    def _on_ipython(self, module: ModuleType) -> None:
        """IPython's shell module has just executed: attach now if a command is running."""
        self._finder = None
        if not self.displays.active:
            return  # the next command attaches
        try:
            self._attach()
        except Exception:
            # Never break the user's ``import IPython``: display() then just prints.
            print("ipk: rich display is unavailable in this kernel:", file=sys.stderr)
            traceback.print_exc()

    def _watch_for_ipython(self) -> None:
        with _lock:
            if self._finder is None:
                self._finder = after_import(WATCHED, self._on_ipython)

    # -- matplotlib ---------------------------------------------------------------

    def figure_png(self, figure: Any) -> str | None:
        """A figure as base64 PNG; None if nothing is drawn on it (IPython's rule: no
        blank images)."""
        if not figure.axes and not figure.lines:
            return None
        buffer = io.BytesIO()
        figure.canvas.print_figure(
            buffer,
            format="png",
            dpi=figure.dpi,
            facecolor=figure.get_facecolor(),
            edgecolor=figure.get_edgecolor(),
            bbox_inches="tight",
        )
        self._shown_figures.add(figure)
        return base64.b64encode(buffer.getvalue()).decode("ascii")

    def publish_figures(self) -> None:
        """Publish and close the open pyplot figures drawn on non-interactive canvases."""
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None:
            return
        from matplotlib._pylab_helpers import Gcf  # pyplot's figure registry, loaded with it

        for manager in sorted(Gcf.get_all_fig_managers(), key=lambda m: m.num):
            figure = manager.canvas.figure
            if figure.canvas.required_interactive_framework is not None:
                continue  # it has a window of its own
            if figure not in self._shown_figures:
                bundle = {"text/plain": repr(figure)}
                png = self.figure_png(figure)
                if png is not None:
                    bundle["image/png"] = png
                self.displays.publish(bundle)
            pyplot.close(figure)
