"""GUI kernels (``--gui wx``, ``tk``, ``qt``) under Xvfb, driven over the network.

Each toolkit's kernel is shared by this module's tests (see ``gui_kernel``); the same
test runs for each, with the toolkit's own code for a window, a click and a timer.
Clicks are posted as events from one command and handled by the toolkit's loop
afterwards, so a handler that fires proves the loop runs between commands.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import check_abort_drops_the_queue, start_kernel, wait_for

from ipython_parallel_kernel import RemoteKernel
from ipython_parallel_kernel.errors import RemoteError

WINDOW = {
    "wx": """
import wx
win = wx.Frame(None, title={title!r}, size=({width}, {height}))
button = wx.Button(win, label="Go")
clicks = []
button.Bind(wx.EVT_BUTTON, lambda event: clicks.append(event.GetId()))
win.Show()
""",
    "tk": """
import tkinter
win = tkinter.Tk()
win.title({title!r})
win.geometry("{width}x{height}")
clicks = []
button = tkinter.Button(win, text="Go", command=lambda: clicks.append(1))
button.pack()
""",
    "qt": """
from PySide6.QtWidgets import QPushButton, QWidget
win = QWidget()
win.setWindowTitle({title!r})
win.resize({width}, {height})
button = QPushButton("Go", win)
clicks = []
button.clicked.connect(lambda: clicks.append(1))
win.show()
""",
}
#: (title, (width, height), shown) of ``win``.
READ_WINDOW = {
    "wx": "win.GetTitle(), tuple(win.GetClientSize()), win.IsShown()",
    "tk": "win.title(), (win.winfo_width(), win.winfo_height()), bool(win.winfo_viewable())",
    "qt": "win.windowTitle(), (win.width(), win.height()), win.isVisible()",
}
#: Posts a press and release on ``button`` to the toolkit's queue: handled later.
CLICK = {
    "wx": """
event = wx.CommandEvent(wx.EVT_BUTTON.typeId, button.GetId())
event.SetEventObject(button)
wx.PostEvent(button, event)
""",
    "tk": """
for name in ("<Enter>", "<ButtonPress-1>", "<ButtonRelease-1>"):
    button.event_generate(name, x=5, y=5, when="tail")
""",
    "qt": """
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication
for kind in (QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonRelease):
    QApplication.postEvent(button, QMouseEvent(
        kind, QPointF(5, 5), button.mapToGlobal(QPointF(5, 5)), Qt.MouseButton.LeftButton,
        Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier))
""",
}
#: Calls ``ticks.append(1)`` from the toolkit's timer, 50 ms from now.
TIMER = {
    "wx": "wx.CallLater(50, ticks.append, 1)",
    "tk": "win.after(50, ticks.append, 1)",
    "qt": "from PySide6.QtCore import QTimer\nQTimer.singleShot(50, lambda: ticks.append(1))",
}
#: Whether figure ``fig``'s window is on the screen.
FIGURE_SHOWN = {
    "wx": "fig.canvas.manager.frame.IsShown()",
    "tk": "bool(fig.canvas.manager.window.winfo_viewable())",
    "qt": "fig.canvas.manager.window.isVisible()",
}
BACKEND = {"wx": "WXAgg", "tk": "TkAgg", "qt": "QtAgg"}
CANVAS = {"wx": "FigureCanvasWxAgg", "tk": "FigureCanvasTkAgg", "qt": "FigureCanvasQTAgg"}


@pytest.fixture
def rk(gui_kernel) -> Iterator[RemoteKernel]:
    """A client of the module's GUI kernel."""
    client = RemoteKernel(str(gui_kernel.connection_file), timeout=30)
    try:
        yield client
    finally:
        client.disconnect()


def value(rk: RemoteKernel, expression: str) -> Any:
    """Evaluate ``expression`` on the kernel and bring its value back."""
    rk.execute(f"_value = {expression}")
    return rk["_value"]


def open_window(rk: RemoteKernel, toolkit: str, title: str, size: tuple[int, int]) -> None:
    rk.execute(WINDOW[toolkit].format(title=title, width=size[0], height=size[1]))


def test_status_names_the_toolkit(rk, gui_kernel):
    """status() reports the kernel's toolkit, idle, with nothing queued."""
    status = rk.status()
    assert status["gui"] == gui_kernel.gui
    assert status["state"] == "idle" and status["queued"] == 0


def test_gui_kernel_loads_neither_client_nor_magics(rk):
    """A GUI kernel loads the GUI module, and still nothing of the client side."""
    loaded = value(
        rk, "sorted(m for m in __import__('sys').modules if m.startswith('ipython_parallel'))"
    )
    assert "ipython_parallel_kernel.kernel.gui" in loaded
    assert not [m for m in loaded if ".client" in m or "magics" in m]


def test_window_stays_live_between_commands(rk, gui_kernel):
    """A window made by one command is shown, titled and sized in a later one."""
    toolkit = gui_kernel.gui
    open_window(rk, toolkit, f"ipk {toolkit} window", (320, 240))
    title, size, shown = wait_for(
        lambda: (
            (state := value(rk, READ_WINDOW[toolkit]))[2]
            and tuple(state[1]) == (320, 240)
            and state
        )
    )
    assert title == f"ipk {toolkit} window"
    assert tuple(size) == (320, 240) and shown


def test_click_posted_later_runs_the_handler(rk, gui_kernel):
    """A handler bound in one command fires when a later command posts a click."""
    toolkit = gui_kernel.gui
    open_window(rk, toolkit, "click me", (200, 100))
    wait_for(lambda: value(rk, READ_WINDOW[toolkit])[2])
    rk.execute(CLICK[toolkit])
    assert len(wait_for(lambda: rk["clicks"])) == 1


def test_toolkit_timers_fire_while_the_kernel_is_idle(rk, gui_kernel):
    """The toolkit's loop runs between commands: a timer set by a command fires later."""
    toolkit = gui_kernel.gui
    open_window(rk, toolkit, "timer", (200, 100))
    rk.execute("ticks = []")
    rk.execute(TIMER[toolkit])
    assert wait_for(lambda: rk["ticks"]) == [1]


def test_commands_queue_behind_a_long_one_and_run_in_order(rk, gui_kernel):
    """Three commands sent during a 1 s command wait in the queue, then run in order."""
    first = rk.execute("import time\norder = []\ntime.sleep(1)\norder.append(0)", block=False)
    rest = [rk.execute(f"order.append({n})", block=False) for n in (1, 2, 3)]
    status = wait_for(lambda: (s := rk.status())["queued"] == 3 and s)
    assert status["state"] == "busy"
    for pending in [first, *rest]:
        pending.result(30)
    assert rk["order"] == [0, 1, 2, 3]
    assert rk.status()["state"] == "idle"


def test_interrupt_stops_a_busy_loop_and_the_window_still_answers(rk, gui_kernel):
    """interrupt() raises KeyboardInterrupt on the GUI thread; the kernel lives on."""
    toolkit = gui_kernel.gui
    open_window(rk, toolkit, "survivor", (240, 160))
    running = rk.execute("while True:\n    pass", block=False)
    # False until the loop has started running it.
    wait_for(rk.interrupt)
    with pytest.raises(RemoteError, match="KeyboardInterrupt"):
        running.result(10)
    assert value(rk, READ_WINDOW[toolkit])[0] == "survivor"
    rk.execute(CLICK[toolkit])
    assert wait_for(lambda: rk["clicks"])


def test_interrupt_wakes_a_sleep_on_the_gui_thread(rk):
    """A command blocked in time.sleep is interrupted at once, not when the sleep ends."""
    running = rk.execute("import time\ntime.sleep(60)", block=False)
    wait_for(rk.interrupt)
    with pytest.raises(RemoteError, match="KeyboardInterrupt"):
        running.result(10)


def test_abort_drops_what_waits_behind_a_running_command(rk):
    """abort() works as on a plain kernel."""
    check_abort_drops_the_queue(rk)


def test_display_data_still_reaches_the_client(rk):
    """display() in a GUI kernel is captured as in a plain kernel."""
    result = rk.execute("from IPython.display import HTML, display\ndisplay(HTML('<b>hi</b>'))")
    assert [bundle["text/html"] for bundle in result.displays] == ["<b>hi</b>"]


def test_push_pull_and_apply_run_on_the_gui_thread(rk):
    """Namespace operations work as on a plain kernel, on the GUI (main) thread."""
    rk["b"] = 10
    assert rk["b"] == 10
    assert rk.apply(threading.get_ident) == value(rk, "__import__('threading').main_thread().ident")


def test_matplotlib_draws_in_a_live_toolkit_window(rk, gui_kernel):
    """pyplot uses the toolkit's backend, interactively: figures stay open and update.

    ``plt.show()`` returns (under TkAgg it would run Tk's loop for ever if matplotlib
    were not in interactive mode).
    """
    toolkit = gui_kernel.gui
    result = rk.execute(
        "import matplotlib.pyplot as plt\n"
        "fig = plt.figure(figsize=(4, 3), dpi=100)\n"
        "plt.plot([1, 4, 9])\n"
        "plt.show()"
    )
    # Live windows are not turned into PNG at the end of the command, as Agg figures are.
    assert result.displays == []
    backend, canvas, size, interactive = value(
        rk,
        "plt.get_backend(), type(fig.canvas).__name__, "
        "tuple(fig.canvas.get_width_height()), plt.isinteractive()",
    )
    assert backend.lower() == BACKEND[toolkit].lower()
    assert canvas == CANVAS[toolkit]
    # Tk's window border may take a pixel off each side.
    assert abs(size[0] - 400) <= 2 and abs(size[1] - 300) <= 2
    assert interactive
    assert wait_for(lambda: value(rk, FIGURE_SHOWN[toolkit]))
    rk.execute("plt.plot([2, 3])")
    assert value(rk, "len(fig.axes[0].lines), plt.fignum_exists(fig.number)") == (2, True)


def test_queued_commands_wait_for_a_command_in_a_nested_event_loop(rk):
    """plt.pause runs the toolkit's loop inside a command; queued commands still wait."""
    first = rk.execute(
        "import matplotlib.pyplot as plt\n"
        "plt.figure()\n"
        "events = ['start']\n"
        "plt.pause(0.5)\n"
        "events.append('end')",
        block=False,
    )
    second = rk.execute("events.append('next')", block=False)
    first.result(30)
    second.result(30)
    assert rk["events"] == ["start", "end", "next"]


def test_a_gui_kernel_can_drive_another_kernel(rk, ipython_dir):
    """A client made on the GUI thread (a window watching a cluster) does not wait on
    the loop it runs in: it has a reactor of its own."""
    other = start_kernel(ipython_dir)
    try:
        rk["other"] = str(other.connection_file)
        answer = value(
            rk,
            "__import__('ipython_parallel_kernel').RemoteKernel(other, timeout=20)"
            ".execute('6 * 7').text",
        )
        assert answer == "42"
    finally:
        other.stop()
