"""examples/gui_window.py runs as a user would run it, under Xvfb, and shows its window.

A screenshot of the screen while the window is open is saved as
``artifacts/gui_window_wx.png``, to look at.
"""

from __future__ import annotations

import contextlib
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
from conftest import ARTIFACTS, kernel_env, require_toolkit
from PIL import ImageGrab

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gui_window.py"
SCREEN_SIZE = (1280, 800)
#: Seconds for the example to start its kernel and build, click and read its window.
READY_TIMEOUT = 60.0
#: Seconds for it to stop its kernel and exit once told to.
STOP_TIMEOUT = 30.0


def read_lines(process: subprocess.Popen) -> tuple[queue.Queue[str | None], threading.Thread]:
    """Each line ``process`` prints, as it prints it (``None`` at the end), and the reader."""
    lines: queue.Queue[str | None] = queue.Queue()

    def reader() -> None:
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    return lines, thread


def read_until(lines: queue.Queue[str | None], prefix: str, timeout: float) -> list[str]:
    """The lines from ``lines``, up to the first starting with ``prefix``."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if line.startswith(prefix):
            return seen
    raise AssertionError(f"no {prefix!r} line within {timeout} s; printed so far: {seen}")


def stop_example(process: subprocess.Popen, reader: threading.Thread) -> None:
    """Let the example stop its kernel (Enter, as its stdin closes); else kill both by pid."""
    try:
        kernels = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        kernels = []
    if not process.stdin.closed:
        process.stdin.close()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)
    for kernel in kernels:  # orphaned only if the example was killed
        with contextlib.suppress(psutil.NoSuchProcess):
            kernel.kill()
    reader.join(STOP_TIMEOUT)
    process.stdout.close()


def test_gui_window_example(display, ipython_dir, tmp_path):
    """The window is built, its button handles posted clicks, and it is on the screen."""
    require_toolkit("wx")
    log_path = tmp_path / "example.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, str(EXAMPLE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=kernel_env(ipython_dir),
        )
    output, reader = read_lines(process)
    try:
        lines = read_until(output, "window ready:", READY_TIMEOUT)
        out = "\n".join(lines)
        assert any(line.startswith("ipk-kernel ready: 127.0.0.1:") for line in lines)
        assert "clicks handled: 3 of 3" in out
        before, after = map(int, re.search(r"walk points: (\d+) -> (\d+)", out).groups())
        assert after == before + 3 * 100 > 100
        frame = re.search(r"frame: '(.*)' (\d+)x(\d+), plot (\d+)x(\d+), figure (\d+)x(\d+)", out)
        title, *sizes = frame.groups()
        width, height, plot_width, plot_height, *figure = map(int, sizes)
        assert title == "ipk random walk"
        assert (width, height) == (640, 480)
        # The plot fills the frame's width, below the button.
        assert plot_width == width and 300 < plot_height < height
        # matplotlib draws the figure at the size the sizer gave the plot, not clipped.
        assert tuple(figure) == (plot_width, plot_height)
        assert (
            lines[-1] == f"window ready: 'ipk random walk' 640x480, {after} points after 3 clicks"
        )

        time.sleep(0.5)  # let the window finish drawing
        screenshot = ImageGrab.grab(xdisplay=display)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        screenshot.save(ARTIFACTS / "gui_window_wx.png")
        assert screenshot.size == SCREEN_SIZE
        # An empty Xvfb screen is one colour; the frame, button and plot make many.
        assert len(screenshot.getcolors(1_000_000) or []) > 10

        process.stdin.close()  # the example's "press Enter": it stops its kernel
        assert process.wait(STOP_TIMEOUT) == 0, log_path.read_text()
        prompt, exited = read_until(output, "kernel exited", 5)
        assert prompt.startswith("press Enter to close the window")
        assert exited == "kernel exited with status 0"
        assert not list(ipython_dir.glob("profile_default/security/ipk-*.json"))
    finally:
        stop_example(process, reader)
