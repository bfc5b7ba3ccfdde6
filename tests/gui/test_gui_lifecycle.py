"""A GUI kernel's life: refusing to start half-way, TLS, stopping in order, pass-through."""

from __future__ import annotations

import ctypes
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    kernel_env,
    require_toolkit,
    self_signed_certificate,
    skip_or_fail,
    start_kernel,
)

from ipython_parallel_kernel import InteractiveCluster, RemoteKernel
from ipython_parallel_kernel.core.toolkits import TOOLKITS
from ipython_parallel_kernel.errors import KernelDied

KERNEL = [sys.executable, "-m", "ipython_parallel_kernel.apps.kernel", "--port", "0"]
#: A module that fails to import, as an absent one does, and what the kernel then advises.
MISSING = {
    "wx": ("wx/__init__.py", "sudo apt install python3-wxgtk4.0"),
    "tk": ("tkinter/__init__.py", "sudo apt install python3-tk"),
    "qt": ("qreactor.py", "pip install 'ipython_parallel_kernel[qt]'"),
}


def run_kernel(ipython_dir: Path, env_changes: dict[str, str | None], *args: str):
    """Run ipk-kernel with ``args`` until it exits (bounded); the completed process."""
    env = kernel_env(ipython_dir)
    for name, setting in env_changes.items():
        if setting is None:
            env.pop(name, None)
        else:
            env[name] = setting
    return subprocess.run(
        [*KERNEL, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def assert_refused_in_one_line(result, ipython_dir: Path, *phrases: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ipk-kernel: --gui"), result.stderr
    for phrase in phrases:
        assert phrase in lines[0]
    assert result.stdout == ""  # no ready line
    assert not list(ipython_dir.glob("profile_default/security/ipk-kernel-*.json"))


@pytest.mark.parametrize("toolkit", TOOLKITS)
def test_missing_toolkit_is_one_line_that_says_how_to_install(toolkit, ipython_dir, tmp_path):
    """An uninstalled toolkit stops the kernel before it binds, with the install command."""
    shadow, advice = MISSING[toolkit]
    module = tmp_path / "shadow" / shadow
    module.parent.mkdir(parents=True)
    name = shadow.split("/")[0].removesuffix(".py")
    module.write_text(f"raise ImportError('No module named {name}')\n")
    result = run_kernel(
        ipython_dir, {"PYTHONPATH": str(tmp_path / "shadow"), "DISPLAY": ":0"}, "--gui", toolkit
    )
    assert_refused_in_one_line(result, ipython_dir, f"--gui {toolkit} needs", advice)


@pytest.mark.parametrize("toolkit", TOOLKITS)
def test_no_screen_is_one_line_that_names_xvfb_run(toolkit, ipython_dir):
    """Without DISPLAY the kernel says how to give it a virtual screen."""
    require_toolkit(toolkit)
    result = run_kernel(
        ipython_dir,
        {"DISPLAY": None, "WAYLAND_DISPLAY": None, "QT_QPA_PLATFORM": None},
        "--gui",
        toolkit,
    )
    assert_refused_in_one_line(result, ipython_dir, "DISPLAY is not set", "xvfb-run -a")


def qt_library_path(soname: str) -> Path:
    """Where this machine's loader finds ``soname`` (loaded here to ask it)."""
    ctypes.CDLL(soname)
    maps = Path("/proc/self/maps").read_text().splitlines()
    paths = {line.split()[-1] for line in maps if f"/{soname}" in line}
    if not paths:
        skip_or_fail(f"cannot tell where {soname} is loaded from")
    return Path(sorted(paths)[0])


@pytest.mark.parametrize(
    ("library", "needed", "what"),
    [
        # Loaded by Qt's xcb platform plugin (Qt itself would abort, status 134).
        ("libxcb-cursor.so.0", "libxcb-render.so.0", "Qt's xcb platform plugin"),
        # Loaded by PySide6's QtGui, when the kernel imports it.
        ("libEGL.so.1", "libGLdispatch.so.0", "Qt"),
    ],
)
def test_qt_missing_system_library_is_one_line_with_apt(
    library, needed, what, ipython_dir, tmp_path
):
    """A system library Qt needs that cannot load: our one line naming it, with the apt
    command (status 2), not Qt's abort (status 134) nor pip advice."""
    require_toolkit("qt")
    # A copy of the library, asking for one that exists nowhere, and found first.
    real = qt_library_path(library).read_bytes()
    stem, _, version = needed.partition(".so")
    absent = f"{stem[:-1]}X.so{version}"  # as long as the name it replaces
    broken = real.replace(needed.encode() + b"\0", absent.encode() + b"\0")
    assert broken != real
    shadow = tmp_path / "shadow-libs"
    shadow.mkdir()
    (shadow / library).write_bytes(broken)
    result = run_kernel(
        ipython_dir,
        {"LD_LIBRARY_PATH": str(shadow), "DISPLAY": ":0", "QT_QPA_PLATFORM": None},
        "--gui",
        "qt",
    )
    assert_refused_in_one_line(
        result,
        ipython_dir,
        f"cannot load {what}: the system library {absent} is missing",
        "sudo apt install libegl1",
        "libxcb-cursor0",
    )


@pytest.mark.parametrize("platform", ["nosuchplatform", "nosuch:arg=1;alsonot"])
def test_qt_unknown_platform_is_one_line(platform, ipython_dir):
    """An unknown QT_QPA_PLATFORM: our one line naming Qt's platforms, not Qt's abort."""
    require_toolkit("qt")
    result = run_kernel(ipython_dir, {"QT_QPA_PLATFORM": platform, "DISPLAY": ":0"}, "--gui", "qt")
    assert_refused_in_one_line(
        result, ipython_dir, "cannot find Qt's platform plugin 'nosuch", "offscreen, ", "xcb"
    )


def test_qt_unreachable_x_server_is_one_line(ipython_dir):
    """DISPLAY naming no X server: our one line naming xvfb-run, not Qt's abort."""
    require_toolkit("qt")
    result = run_kernel(ipython_dir, {"DISPLAY": ":4321", "QT_QPA_PLATFORM": None}, "--gui", "qt")
    assert_refused_in_one_line(result, ipython_dir, "DISPLAY=:4321", "xvfb-run -a")


def test_qt_offscreen_needs_no_screen(ipython_dir, monkeypatch):
    """QT_QPA_PLATFORM=offscreen: a qt kernel without DISPLAY starts and makes widgets."""
    require_toolkit("qt")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    kernel = start_kernel(ipython_dir, "--gui", "qt")
    try:
        client = RemoteKernel(str(kernel.connection_file), timeout=30)
        made = client.execute("from PySide6.QtWidgets import QLabel; QLabel('x').text()")
        assert made.text == "'x'"
        client.disconnect()
    finally:
        kernel.stop()


@pytest.mark.parametrize("toolkit", TOOLKITS)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_when_idle_shuts_down_in_order(toolkit, signum, display, ipython_dir):
    """SIGTERM or SIGINT from outside: clients told, connection file removed, status 0."""
    require_toolkit(toolkit)
    kernel = start_kernel(ipython_dir, "--gui", toolkit)
    try:
        client = RemoteKernel(str(kernel.connection_file), timeout=30)
        client.execute("x = 1")
        kernel.process.send_signal(signum)
        assert kernel.process.wait(30) == 0
        assert not kernel.connection_file.exists()
        assert "shutting down" in kernel.log()
        with pytest.raises(KernelDied):
            client.execute("1")
    finally:
        kernel.stop()


@pytest.mark.parametrize("toolkit", TOOLKITS)
def test_sigterm_while_busy_on_the_gui_thread(toolkit, display, ipython_dir):
    """SIGTERM stops a GUI kernel in the middle of a long command too."""
    require_toolkit(toolkit)
    kernel = start_kernel(ipython_dir, "--gui", toolkit)
    try:
        client = RemoteKernel(str(kernel.connection_file), timeout=30)
        running = client.execute("while True: pass", block=False)
        deadline = time.monotonic() + 10
        while client.status()["state"] != "busy" and time.monotonic() < deadline:
            time.sleep(0.05)
        kernel.process.send_signal(signal.SIGTERM)
        assert kernel.process.wait(30) == 0
        with pytest.raises(KernelDied):
            running.get(30)
    finally:
        kernel.stop()


def test_tls_gui_kernels_copy_kernel_to_kernel(display, ipython_dir, tmp_path):
    """TLS serves on the network thread of a GUI kernel, also for kernel-to-kernel copies."""
    require_toolkit("qt")
    cert, key = self_signed_certificate(tmp_path)
    tls = ("--gui", "qt", "--tls-cert", str(cert), "--tls-key", str(key))
    kernels = [start_kernel(ipython_dir, *tls) for _ in range(2)]
    try:
        ic = InteractiveCluster([str(k.connection_file) for k in kernels], timeout=30)
        assert all(kernel.info.tls for kernel in ic.kernels)
        ic[0]["payload"] = bytes(range(256)) * 4096
        ic.move("payload", 0, targets=[1])
        assert ic[1].execute("len(payload), payload[:3]").text == "(1048576, b'\\x00\\x01\\x02')"
        assert [s["gui"] for s in ic.status()] == ["qt", "qt"]
        ic.disconnect()
    finally:
        for kernel in kernels:
            kernel.stop()


def test_kernel_start_magic_passes_gui_on(display, ipython_dir, capsys):
    """%kernel start --gui wx starts wx kernels; %kernel list shows their toolkit."""
    require_toolkit("wx")
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_cell("%load_ext ipython_parallel_kernel")
    try:
        shell.run_cell("%kernel start -n 2 --gui wx")
        assert "started 2 kernels" in capsys.readouterr().out
        shell.run_cell("%kernel list")
        header, *rows = [line.split() for line in capsys.readouterr().out.splitlines()]
        assert [row[header.index("gui")] for row in rows] == ["wx", "wx"]
        shell.run_cell("%px import wx; frame = wx.Frame(None, title='from px'); frame.Show()")
        shell.run_cell("%px frame.GetTitle()")
        assert re.findall(r"Out\[\d:\d+\]: 'from px'", capsys.readouterr().out) != []
    finally:
        shell.run_cell("%unload_ext ipython_parallel_kernel")


def test_cluster_start_passes_gui_on(display, ipython_dir):
    """ipk-cluster start --gui tk starts tk kernels; ipk-cluster stop ends them."""
    require_toolkit("tk")
    cluster = [sys.executable, "-m", "ipython_parallel_kernel.apps.cluster"]
    run = dict(capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    started = subprocess.run(
        [*cluster, "start", "-n", "2", "--gui", "tk", "--cluster-id", "g"], **run
    )
    try:
        assert started.returncode == 0, started.stderr
        path = re.search(r"cluster file (\S+)$", started.stdout, re.M)[1]
        ic = InteractiveCluster.from_file(path, timeout=30)
        assert [s["gui"] for s in ic.status()] == ["tk", "tk"]
        results = ic.execute("import tkinter; tkinter.Toplevel().winfo_exists()")
        assert [r.text for r in results] == ["1", "1"]
        ic.disconnect()
    finally:
        stopped = subprocess.run([*cluster, "stop", "--cluster-id", "g"], **run)
    assert stopped.returncode == 0, stopped.stderr
    assert not list(ipython_dir.glob("profile_default/security/ipk-*.json"))
