"""GUI kernels: a toolkit's event loop on the main thread, and the engine's jobs in it.

A toolkit requires its windows to be made and used on one thread, the one running its
event loop: the main thread. So in a GUI kernel the main thread runs Twisted's reactor
for that toolkit (``wxreactor``, the default reactor with ``tksupport``, ``qreactor``),
and the engine's jobs run inside that loop, in turns of at most ``TURN`` seconds (or one
job, if it is longer), so windows redraw and answer clicks between commands, and while
the kernel waits for the next.

The network does not go through that loop: it would stall whenever a command holds
the main thread, and then nobody could ask the kernel for its status or interrupt it.
The kernel's connections live on a second, private reactor in their own thread, as in
a plain kernel; jobs reach the GUI thread through the toolkit's event queue.
An interrupt is a real SIGINT to the main thread, as in a plain kernel.

Each toolkit is loaded in two steps, so that a kernel never starts half-way:
``check()`` imports it (a one-line error says how to install what is missing), then,
before anything else imports the global reactor, ``install()`` makes the application
object and installs the reactor. matplotlib is pointed at the toolkit's backend, in
interactive mode, so ``plt.plot(...)`` opens a live window that later commands update.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from ..core.toolkits import TOOLKITS as TOOLKIT_INFO
from ..core.toolkits import ToolkitInfo
from ..errors import GuiUnavailable
from .engine import Engine, EngineShutdown
from .importhook import after_import

#: Seconds of queued jobs run in one turn of the toolkit's loop before it gets its turn
#: to redraw and handle input: short jobs go through quickly, and a window still answers
#: within about one frame (plus the job running then).
TURN = 0.01
#: Seconds between two moments when the GUI thread runs Python: a signal (SIGTERM,
#: SIGINT) is only handled then, and an idle toolkit loop runs none by itself.
SIGNAL_POLL = 0.1


class Toolkit:
    """One GUI toolkit: how to import it, start it under Twisted, and plot in it."""

    #: Its entry in the toolkit table: name, matplotlib backend, modules, install hint.
    info: ToolkitInfo
    #: Twisted's reactor for this toolkit, once ``install_reactor`` has run.
    reactor: Any = None

    def check(self) -> None:
        """Import the toolkit; GuiUnavailable (with an install hint) if it is missing,
        or if it needs a screen and there is none."""
        try:
            for module in self.info.modules:
                importlib.import_module(module)
        except ImportError as e:
            raise GuiUnavailable(
                f"--gui {self.name} needs {self.info.needs} ({e}); {self.info.install_hint}"
            ) from None
        if self.needs_screen() and not _has_screen():
            raise GuiUnavailable(
                f"--gui {self.name} needs a screen but DISPLAY is not set; on a machine "
                "without one, run the kernel under a virtual screen: xvfb-run -a ipk-kernel "
                f"--gui {self.name}"
            )

    @property
    def name(self) -> str:
        """The toolkit's name, as ``--gui`` takes it."""
        return self.info.name

    def needs_screen(self) -> bool:
        """Whether the toolkit draws on a real (or virtual) screen here."""
        return True

    def install(self) -> None:
        """Make the toolkit's application and install its reactor as Twisted's, as
        ``self.reactor``.

        Must run on the main thread, before anything imports ``twisted.internet.reactor``.
        """
        raise NotImplementedError

    def call_from_thread(self, func: Callable[[], None]) -> None:
        """Have ``func`` called on the GUI thread soon; callable from any thread."""
        self.reactor.callFromThread(func)

    def use_for_matplotlib(self) -> None:
        """Make matplotlib, whenever user code loads it, draw live windows here."""
        os.environ["MPLBACKEND"] = self.info.backend
        if "matplotlib" in sys.modules:
            sys.modules["matplotlib"].interactive(True)
        else:
            after_import("matplotlib", lambda matplotlib: matplotlib.interactive(True))


def _has_screen() -> bool:
    # Only X11/Wayland say so in the environment; macOS and Windows always have one.
    return not sys.platform.startswith("linux") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )


class WxToolkit(Toolkit):
    """wxPython, through Twisted's ``wxreactor``."""

    info = TOOLKIT_INFO["wx"]

    def install(self) -> None:
        from twisted.internet import wxreactor

        wxreactor.install()
        import wx
        from twisted.internet import reactor as wx_reactor

        reactor: Any = wx_reactor
        self.app = wx.App(False)
        self.app.SetExitOnFrameDelete(False)
        # wx's main loop returns as soon as no window exists: this one, never shown,
        # keeps it running while the user has none open.
        self.keep_alive = wx.Frame(None)
        reactor.registerWxApp(self.app)
        self.reactor = reactor

    def call_from_thread(self, func: Callable[[], None]) -> None:
        import wx

        # Straight into wx's event queue: wxreactor's own way goes through its select()
        # thread, one more thread to wake.
        wx.CallAfter(func)


class TkToolkit(Toolkit):
    """tkinter, polled by Twisted's ``tksupport`` on the default reactor."""

    info = TOOLKIT_INFO["tk"]

    def install(self) -> None:
        import tkinter

        from twisted.internet import reactor, tksupport

        try:
            self.root = tkinter.Tk()
        except tkinter.TclError as e:
            raise GuiUnavailable(f"--gui tk cannot open the screen: {e}") from None
        # The kernel's own root window stays hidden; user code makes its own
        # (tkinter.Toplevel, or tkinter.Tk) and they all share this event loop.
        self.root.withdraw()
        tksupport.install(self.root)
        self.reactor = reactor


class QtToolkit(Toolkit):
    """Qt through PySide6 and the ``qt-reactor`` package (module ``qreactor``)."""

    info = TOOLKIT_INFO["qt"]

    def check(self) -> None:
        """As every toolkit's, then load the platform plugin Qt will use: where it cannot
        load, QApplication aborts the process with Qt's own message (status 134)."""
        # qreactor and matplotlib find the binding through QT_API.
        os.environ["QT_API"] = "pyside6"
        try:
            super().check()
        except GuiUnavailable as e:
            # PySide6 installed, but a system library its Qt needs is not: apt, not pip.
            missing = _missing_library(str(e))
            if missing is None:
                raise
            raise GuiUnavailable(f"--gui qt {_apt_hint('Qt', missing)}") from None
        problem = _qt_platform_problem(_qt_platforms())
        if problem:
            raise GuiUnavailable(f"--gui qt {problem}")

    def needs_screen(self) -> bool:
        return any(name in SCREEN_PLATFORMS for name in _qt_platforms())

    def install(self) -> None:
        from PySide6.QtWidgets import QApplication

        # The application must exist before qreactor is installed, or qreactor makes a
        # QCoreApplication, with which no widget can be made.
        app: Any = QApplication.instance() or QApplication([sys.argv[0]])
        app.setQuitOnLastWindowClosed(False)
        self.app = app
        import qreactor  # type: ignore[import-untyped]

        qreactor.install()
        from twisted.internet import reactor

        self.reactor = reactor


TOOLKIT_LOOPS: dict[str, type[Toolkit]] = {
    t.info.name: t for t in (WxToolkit, TkToolkit, QtToolkit)
}

#: Qt platform plugins that draw on a screen named by DISPLAY or WAYLAND_DISPLAY.
SCREEN_PLATFORMS = ("xcb", "wayland", "wayland-egl")
#: The Debian/Ubuntu packages of the system libraries PySide6's Qt and its xcb platform
#: plugin load, which a minimal system lacks (scripts/test.sh installs them too).
QT_XCB_PACKAGES = (
    "libegl1 libgl1 libfontconfig1 libdbus-1-3 libx11-6 libx11-xcb1 libxkbcommon0 "
    "libxkbcommon-x11-0 libxcb1 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 "
    "libxcb-randr0 libxcb-render0 libxcb-render-util0 libxcb-shape0 libxcb-shm0 libxcb-sync1 "
    "libxcb-util1 libxcb-xfixes0 libxcb-xkb1"
)


def _missing_library(error: str) -> str | None:
    """The library a loader error names as not found ("libX.so.N: cannot open shared
    object file: ..."), or None."""
    marker = ": cannot open shared object file"
    if marker not in error:
        return None
    return error.split(marker, 1)[0].rsplit(" ", 1)[-1].strip("(")


def _apt_hint(what: str, library: str) -> str:
    return (
        f"cannot load {what}: the system library {library} is missing; on Debian/Ubuntu "
        f"install what Qt needs with: sudo apt install {QT_XCB_PACKAGES}"
    )


def _qt_platforms() -> list[str]:
    """The platform plugins Qt tries, in order: QT_QPA_PLATFORM's ("name:options",
    several separated by ';'), else xcb, Qt's default on Linux."""
    value = os.environ.get("QT_QPA_PLATFORM", "")
    names = [entry.split(":", 1)[0].strip().lower() for entry in value.split(";")]
    return [name for name in names if name] or ["xcb"]


def _qt_platform_plugins() -> dict[str, list[str]]:
    """The platform plugins Qt can find, by the names they answer to, each name's files
    in the order Qt tries them (QT_QPA_PLATFORM_PLUGIN_PATH first, then its plugin paths)."""
    from PySide6.QtCore import QCoreApplication, QPluginLoader

    directories = [os.environ.get("QT_QPA_PLATFORM_PLUGIN_PATH", "")]
    directories += [os.path.join(path, "platforms") for path in QCoreApplication.libraryPaths()]
    plugins: dict[str, list[str]] = {}
    for directory in filter(os.path.isdir, directories):
        for entry in sorted(os.listdir(directory)):
            path = os.path.join(directory, entry)
            # Read from the file without loading it: loading is the step that may fail.
            meta: Any = QPluginLoader(path).metaData().get("MetaData", {})
            for key in meta.get("Keys", []):
                plugins.setdefault(str(key).lower(), []).append(path)
    return plugins


def _qt_platform_problem(names: list[str]) -> str | None:
    """Why none of the platform plugins ``names`` can load (as the rest of a one-line
    error), or None when one can; the first one's problem is the one told."""
    plugins = _qt_platform_plugins()
    problems = []
    for name in names:
        if name not in plugins:
            problems.append(
                f"cannot find Qt's platform plugin {name!r} (QT_QPA_PLATFORM="
                f"{os.environ.get('QT_QPA_PLATFORM', '')}); Qt has: {', '.join(sorted(plugins))}; "
                "unset QT_QPA_PLATFORM to draw on the X11 screen, or set it to offscreen"
            )
            continue
        failure = _first_load_error(plugins[name])
        if failure is not None:
            missing = _missing_library(failure)
            what = f"Qt's {name} platform plugin"
            problems.append(
                _apt_hint(what, missing) if missing else f"cannot load {what}: {failure}"
            )
            continue
        screen = _x_screen_problem() if name == "xcb" else None
        if screen is None:
            return None
        problems.append(screen)
    return problems[0]


def _first_load_error(paths: list[str]) -> str | None:
    """None if one of the libraries ``paths`` loads, else why the first does not."""
    import ctypes

    errors = []
    for path in paths:
        try:
            ctypes.CDLL(path)
        except OSError as e:
            errors.append(str(e))
            continue
        return None
    return errors[0]


def _x_screen_problem() -> str | None:
    """Why the X server DISPLAY names cannot be reached, or None: Qt aborts there too."""
    import ctypes

    try:
        xcb = ctypes.CDLL("libxcb.so.1")  # loaded already, by the xcb plugin
    except OSError:
        return None
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    connection = xcb.xcb_connect(None, None)
    try:
        failed = xcb.xcb_connection_has_error(connection)
    finally:
        xcb.xcb_disconnect(connection)
    if not failed:
        return None
    return (
        f"cannot open the screen DISPLAY={os.environ.get('DISPLAY', '')}: no X server answers "
        "there; run the kernel under a virtual screen: xvfb-run -a ipk-kernel --gui qt"
    )


class GuiLoop:
    """Runs an engine's jobs on the GUI thread, in turns of the toolkit's loop.

    >>> toolkit.install()  # doctest: +SKIP
    >>> loop = GuiLoop(toolkit, engine)  # doctest: +SKIP
    >>> loop.run()  # until the reactor stops  # doctest: +SKIP
    """

    def __init__(self, toolkit: Toolkit, engine: Engine) -> None:
        self.toolkit = toolkit
        self.reactor = toolkit.reactor
        self.engine = engine
        self._lock = threading.Lock()
        self._scheduled = False
        self._in_job = False
        engine.on_submit = self._wake

    def stop_soon(self) -> None:
        """Stop the loop (from a signal handler or any thread)."""
        self.reactor.callFromThread(self._stop)

    def _stop(self) -> None:
        from twisted.internet.error import ReactorNotRunning

        # A stop signal and a shutdown request may both ask.
        with contextlib.suppress(ReactorNotRunning):
            self.reactor.stop()

    def run(self) -> None:
        """Run the toolkit's loop, and with it every job submitted, until stopped."""
        from twisted.internet.task import LoopingCall

        # Jobs submitted before the loop started are waiting.
        self._wake()
        poll = LoopingCall(lambda: None)
        poll.clock = self.reactor
        poll.start(SIGNAL_POLL, now=False)
        # qreactor installs Twisted's signal handlers whatever ``run`` is told. Twisted's
        # would stop the loop only between jobs and take the interrupt away: have it
        # install the engine's instead.
        self.reactor.sigInt = signal.getsignal(signal.SIGINT)
        self.reactor.sigTerm = signal.getsignal(signal.SIGTERM)
        relay = self.engine.signal_relay
        if relay is not None:
            # With its handlers, Twisted sets a wakeup descriptor of its own: the relay's
            # goes back in front of it once they are in place.
            self.reactor.callWhenRunning(relay.install)
        self.reactor.run(installSignalHandlers=False)

    def _wake(self) -> None:
        with self._lock:
            if self._scheduled:
                return
            self._scheduled = True
        self.toolkit.call_from_thread(self._run_turn)

    def _run_turn(self) -> None:
        if self._in_job:
            # A job is running its own event loop (a modal dialog, ``plt.pause``) and
            # the toolkit called back in: the queue resumes when that job ends.
            return
        self._in_job = True
        turn_ends = time.monotonic() + TURN
        try:
            self.engine.run_next()
            while self.engine.queued and time.monotonic() < turn_ends:
                self.engine.run_next()
        except EngineShutdown:
            self._stop()
            return
        finally:
            self._in_job = False
        with self._lock:
            self._scheduled = self.engine.queued > 0
            more = self._scheduled
        if more:
            # A later turn, not now: the toolkit handles its events in between.
            self.reactor.callLater(0, self._run_turn)
