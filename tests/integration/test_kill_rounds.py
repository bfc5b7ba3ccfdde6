"""Kernels stop cleanly every time: start, a little work, kill(), over and over.

A shutdown that depends on which thread a signal happens to land on fails now and
then, never on demand: only many rounds catch it. Each round is bounded, and a kernel
left running is stopped by pid before the test fails.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import KernelProcess, require_toolkit, start_kernel

from ipython_parallel_kernel import RemoteKernel
from ipython_parallel_kernel.core.toolkits import TOOLKITS

ROUNDS = 50
GUI_ROUNDS = 3
DEMO_RUNS = 5
#: Seconds a kernel has to exit once told to; it takes well under one.
EXIT_TIMEOUT = 20.0
SEED_SESSION = Path(__file__).resolve().parents[2] / "examples" / "seed_session.py"


def assert_exits_cleanly(kernel: KernelProcess, what: str) -> None:
    """The kernel exits with status 0 within EXIT_TIMEOUT and removes its connection file."""
    try:
        status = kernel.process.wait(EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        kernel.stop(timeout=5)
        pytest.fail(f"{what}: the kernel was still running after {EXIT_TIMEOUT} s")
    assert status == 0, f"{what}: exit status {status}\n{kernel.log()}"
    assert not kernel.connection_file.exists(), f"{what}: its connection file is left"
    kernel.stop()


def start_work_kill(ipython_dir: Path, *args: str) -> KernelProcess:
    """Start a kernel, execute, push and pull once, then kill() it."""
    kernel = start_kernel(ipython_dir, *args)
    try:
        rk = RemoteKernel(kernel.address, timeout=30)
        rk.execute("a = 5")
        rk.push(10, "b")
        assert rk.pull("b") == 10
        assert rk.execute("a * b").text == "50"
        rk.kill()
    except BaseException:
        kernel.stop()
        raise
    return kernel


def test_start_work_kill_rounds(ipython_dir):
    """Fifty rounds of start, work, kill(): every kernel exits 0 and removes its file."""
    for round_number in range(1, ROUNDS + 1):
        kernel = start_work_kill(ipython_dir)
        assert_exits_cleanly(kernel, f"round {round_number} of {ROUNDS}")


def test_seed_session_demo_runs(ipython_dir):
    """The demo (examples/seed_session.py) runs to the end every time."""
    for run in range(1, DEMO_RUNS + 1):
        result = subprocess.run(
            [sys.executable, str(SEED_SESSION)],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, f"run {run}: {result.stderr}"
        assert result.stdout.rstrip().endswith("kernel exited with status 0"), f"run {run}"


#: A command that has a thread of the kernel other than the main one receive ``{signal}``,
#: as happens when the OS picks that thread for a signal sent to the process.
SIGNAL_FROM_ANOTHER_THREAD = (
    "import signal, threading\n"
    "threading.Timer(0.2, lambda: signal.pthread_kill(threading.get_ident(), signal.{signal}))"
    ".start()\n"
)


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "in time.sleep"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_on_another_thread_shuts_down(ipython_dir, signum, busy):
    """SIGTERM or SIGINT handled by a thread other than the main one still shuts the
    kernel down, whether it waits for work or sleeps in a command."""
    kernel = start_kernel(ipython_dir)
    rk = RemoteKernel(kernel.address, timeout=30)
    source = SIGNAL_FROM_ANOTHER_THREAD.format(signal=signal.Signals(signum).name)
    if busy:
        rk.execute(source + "import time\ntime.sleep(600)", block=False)
    else:
        rk.execute(source)
    assert_exits_cleanly(kernel, signal.Signals(signum).name)
    rk.disconnect()


@pytest.mark.parametrize("toolkit", list(TOOLKITS))
def test_gui_kernel_start_work_kill_rounds(ipython_dir, display, toolkit):
    """GUI kernels too exit 0 and remove their file after kill(), round after round."""
    require_toolkit(toolkit)
    for round_number in range(1, GUI_ROUNDS + 1):
        kernel = start_work_kill(ipython_dir, "--gui", toolkit)
        assert_exits_cleanly(kernel, f"--gui {toolkit} round {round_number} of {GUI_ROUNDS}")


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "in time.sleep"])
@pytest.mark.parametrize("toolkit", list(TOOLKITS))
def test_gui_kernel_stop_signal_on_another_thread_shuts_down(ipython_dir, display, toolkit, busy):
    """A GUI kernel shuts down on a SIGTERM another thread received, idle or sleeping."""
    require_toolkit(toolkit)
    kernel = start_kernel(ipython_dir, "--gui", toolkit)
    rk = RemoteKernel(kernel.address, timeout=30)
    source = SIGNAL_FROM_ANOTHER_THREAD.format(signal="SIGTERM")
    if busy:
        rk.execute(source + "import time\ntime.sleep(600)", block=False)
    else:
        rk.execute(source)
    assert_exits_cleanly(kernel, f"--gui {toolkit} SIGTERM on another thread")
    rk.disconnect()
