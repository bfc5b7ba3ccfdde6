"""A live wx window in a GUI kernel, built and driven from this process.

Run with ``python examples/gui_window.py`` (on a machine with no screen:
``xvfb-run -a python examples/gui_window.py``). It needs wxPython and matplotlib; see
the README's section on GUI kernels for how to get wx.

It starts ``ipk-kernel --gui wx --port 0`` in the background and, as a user would from
IPython, makes the kernel build a window: a frame with a Step button above a matplotlib
plot of a random walk. The button's handler lives in the kernel and extends the walk.
Later commands post clicks on the button; wx handles them between commands, and this
process reads back what they did. The window stays open, and answers clicks, until you
press Enter; then the kernel is stopped, whatever happened before.
"""

from __future__ import annotations

import contextlib
import selectors
import subprocess
import sys
import time

from ipython_parallel_kernel import RemoteKernel
from ipython_parallel_kernel.errors import KernelError

KERNEL = [sys.executable, "-m", "ipython_parallel_kernel.apps.kernel"]
TITLE = "ipk random walk"
SIZE = (640, 480)
STEPS_PER_CLICK = 100
CLICKS = 3
#: Seconds to wait for the kernel to start, for clicks to be handled, for it to exit.
START_TIMEOUT = 30.0
CLICK_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0

#: Posts a click on the Step button to wx's event queue: wx handles it after the command.
CLICK = """\
import wx
event = wx.CommandEvent(wx.EVT_BUTTON.typeId, button.GetId())
event.SetEventObject(button)
wx.PostEvent(button, event)
"""
#: The window as the kernel sees it: title, frame size, plot size, figure size in pixels.
READ_WINDOW = (
    "window = frame.GetTitle(), tuple(frame.GetSize()), tuple(canvas.GetSize()), "
    "canvas.get_width_height()"
)


def start_kernel() -> tuple[subprocess.Popen, str]:
    """``ipk-kernel --gui wx --port 0`` in the background; the process and its ready line."""
    process = subprocess.Popen(
        [*KERNEL, "--gui", "wx", "--port", "0", "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + START_TIMEOUT
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline and process.poll() is None:
            if selector.select(timeout=0.2):
                line = process.stdout.readline().strip()
                if line.startswith("ipk-kernel ready:"):
                    return process, line
    stop(process)
    raise SystemExit(f"the kernel did not start (exit status {process.returncode})")


def build_window(title: str, size: tuple[int, int], steps: int) -> None:
    """Runs in the kernel, on its GUI thread: the frame, its button and the plot.

    Defined here, it runs there with the kernel's namespace as its globals, so the
    ``global`` names stay in the kernel for later commands and for the handler.
    """
    global frame, button, canvas, walk, clicks
    import random

    import wx
    from matplotlib.backends.backend_wxagg import FigureCanvasWxAgg
    from matplotlib.figure import Figure

    rng = random.Random(2005)
    walk, clicks = [0.0], 0
    frame = wx.Frame(None, title=title, size=size)
    panel = wx.Panel(frame)
    button = wx.Button(panel, label="Step")
    # A small figure: the canvas's minimum size, which the sizer then grows to fit.
    figure = Figure(figsize=(4, 3), dpi=100)
    axes = figure.add_subplot()
    axes.set_xlabel("step")
    axes.set_ylabel("position")
    (line,) = axes.plot(walk)
    canvas = FigureCanvasWxAgg(panel, wx.ID_ANY, figure)
    sizer = wx.BoxSizer(wx.VERTICAL)
    sizer.Add(button, 0, wx.ALL, 5)
    sizer.Add(canvas, 1, wx.EXPAND)
    panel.SetSizer(sizer)

    def extend(n: int) -> None:
        for _ in range(n):
            walk.append(walk[-1] + rng.gauss(0.0, 1.0))
        line.set_data(range(len(walk)), walk)
        axes.relim()
        axes.autoscale_view()
        axes.set_title(f"{len(walk)} points")
        canvas.draw()

    def on_step(event: wx.CommandEvent) -> None:
        global clicks
        extend(steps)
        clicks += 1

    button.Bind(wx.EVT_BUTTON, on_step)
    extend(steps)
    frame.Show()


def wait_for_clicks(rk: RemoteKernel, count: int) -> int:
    """Poll the kernel's ``clicks`` until ``count`` have been handled, or time runs out."""
    deadline = time.monotonic() + CLICK_TIMEOUT
    while (handled := rk["clicks"]) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return handled


def stop(process: subprocess.Popen, rk: RemoteKernel | None = None) -> None:
    """Shut the kernel down (``rk.kill()``, else SIGTERM); SIGKILL if it hangs in wx."""
    if process.poll() is None:
        if rk is None:
            process.terminate()
        else:
            try:
                rk.kill()
            except KernelError:  # it no longer answers: SIGTERM instead
                process.terminate()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)
    process.stdout.close()


def main() -> None:
    process, ready = start_kernel()
    print(f"$ ipk-kernel --gui wx --port 0 &\n{ready}")
    rk = None
    try:
        rk = RemoteKernel(ready.split()[2], timeout=30)
        rk.apply(build_window, TITLE, SIZE, STEPS_PER_CLICK)
        before = len(rk["walk"])
        print(f"built the window: {before} walk points")
        for _ in range(CLICKS):
            rk.execute(CLICK)
        handled = wait_for_clicks(rk, CLICKS)
        rk.execute(READ_WINDOW)
        title, (width, height), (plot_width, plot_height), figure = rk["window"]
        points = len(rk["walk"])
        print(f"clicks handled: {handled} of {CLICKS}")
        print(f"walk points: {before} -> {points}")
        print(
            f"frame: {title!r} {width}x{height}, plot {plot_width}x{plot_height}, "
            f"figure {figure[0]}x{figure[1]}"
        )
        print(f"window ready: {title!r} {width}x{height}, {points} points after {handled} clicks")
        print("press Enter to close the window and stop the kernel (click Step meanwhile)")
        with contextlib.suppress(EOFError):  # no terminal: carry on
            input()
    finally:
        stop(process, rk)
        print(f"kernel exited with status {process.returncode}")


if __name__ == "__main__":
    main()
