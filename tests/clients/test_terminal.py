"""The extension in a real terminal IPython, driven through a pseudo-terminal (pexpect)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
from conftest import skip_or_fail

TIMEOUT = 60
PROMPT = re.compile(r"In \[(\d+)\]: ")
GONE_TIMEOUT = 30.0
KERNEL_MODULE = "ipython_parallel_kernel.apps.kernel"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, waiting to be reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Terminal:
    """An ``ipython`` in a pty: type lines, wait (bounded) for what they print."""

    def __init__(self, child) -> None:
        self.child = child

    def expect(self, pattern, what: str, timeout: float = TIMEOUT) -> None:
        import pexpect

        try:
            self.child.expect(pattern, timeout=timeout)
        except (pexpect.TIMEOUT, pexpect.EOF) as e:
            raise AssertionError(
                f"terminal IPython: no {what} ({type(e).__name__}); it printed:\n"
                f"{self.child.before!s}"
            ) from None

    def run(self, line: str, timeout: float = TIMEOUT) -> str:
        """Type ``line``; return what it printed before the next prompt (echo removed)."""
        self.child.sendline(line)
        self.expect(PROMPT, f"prompt after {line!r}", timeout)
        printed = self.child.before.replace("\r\n", "\n")
        echo, _, rest = printed.partition("\n")
        # The start only: the terminal may break the echo of a long line.
        assert line[:40] in echo, f"expected the echo of {line!r}, got:\n{printed}"
        return rest


@pytest.mark.timeout(300)
def test_terminal_ipython_session(tmp_path: Path):
    """%load_ext, %kernel start, %px, %kernel connect --name, rk[...]; exit stops kernels."""
    try:
        import pexpect
    except ImportError:
        skip_or_fail("driving a terminal IPython needs pexpect")
    if not Path("/proc/self/stat").exists():
        pytest.skip("checking that kernels stopped needs /proc")
    env = dict(os.environ)
    env["IPYTHONDIR"] = str(tmp_path / "ipython")
    env["PYTHONUNBUFFERED"] = "1"
    child = pexpect.spawn(
        sys.executable,
        ["-m", "IPython", "--no-banner", "--colors=nocolor", "--simple-prompt"],
        env=env,
        cwd=str(tmp_path),
        encoding="utf-8",
        timeout=TIMEOUT,
        dimensions=(40, 160),
    )
    pids: list[int] = []
    try:
        term = Terminal(child)
        term.expect(PROMPT, "first prompt")
        assert term.run("%load_ext ipython_parallel_kernel").strip() == ""
        started = term.run("%kernel start -n 2", timeout=120)
        assert "started 2 kernels" in started

        # Kernel pids and connection files, printed under a tag the echo does not contain.
        term.run(
            "print('IPK' + 'INFO', __import__('json').dumps([[k.kernel_info['pid'], "
            "k.info.path] for k in get_ipython().magics_manager.registry['KernelMagics'].active]))"
        )
        match = re.search(r"IPKINFO (.*)", child.before)
        assert match, f"no kernel info printed:\n{child.before}"
        kernels = json.loads(match.group(1))
        pids = [pid for pid, _ in kernels]
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)

        assert term.run("%px a = 5").strip() == ""
        printed = term.run("%px print(a * 2)")
        lines = sorted(line.strip() for line in printed.splitlines() if line.strip())
        assert lines == ["[stdout:0] 10", "[stdout:1] 10"], printed

        connected = term.run(f"%kernel connect {kernels[0][1]} --name rk")
        assert "bound to rk" in connected, connected
        assert term.run("rk['b'] = 10").strip() == ""
        assert re.search(r"Out\[\d+\]: 10\b", term.run("rk['b']"))

        child.sendline("exit")
        term.expect(pexpect.EOF, "exit", timeout=90)
        child.wait()
        assert child.exitstatus == 0, (child.exitstatus, child.signalstatus)
        # Kernels started by the session are stopped when it exits.
        deadline = time.monotonic() + GONE_TIMEOUT
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in pids if _alive(pid)], "kernels outlived the session"
    finally:
        if child.isalive():
            child.terminate(force=True)
        child.close(force=True)
        for pid in pids:
            if _alive(pid) and KERNEL_MODULE in _command_line(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]|\r")
FULL_PROMPT = re.compile(r"In \[(\d+)\]:")


class Screen:
    """What a full (prompt_toolkit) IPython prints, escape sequences removed, read as it comes."""

    def __init__(self, child) -> None:
        self.child = child
        self.text = ""  # not yet matched

    def wait(self, pattern: str | re.Pattern, what: str, timeout: float = TIMEOUT) -> re.Match:
        import pexpect

        pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            match = pattern.search(ANSI.sub("", self.text))
            if match:
                self.text = ANSI.sub("", self.text)[match.end() :]
                return match
            if time.monotonic() > deadline:
                raise AssertionError(f"terminal IPython: no {what}; it printed:\n{self.text}")
            try:
                self.child.expect(r".+", timeout=0.2)
                self.text += self.child.match.group(0)
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                raise AssertionError(f"terminal IPython ended: no {what}:\n{self.text}") from None


@pytest.mark.timeout(240)
def test_gather_prints_above_the_prompt_being_typed(ipython_dir: Path):
    """%kernel gather: records print while a line is half typed, and the line survives."""
    try:
        import pexpect
    except ImportError:
        skip_or_fail("driving a terminal IPython needs pexpect")
    from conftest import start_kernel

    from ipython_parallel_kernel import RemoteKernel

    kernel = start_kernel(ipython_dir)
    env = dict(os.environ)
    env["IPYTHONDIR"] = str(ipython_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env["TERM"] = "xterm"
    env["PROMPT_TOOLKIT_NO_CPR"] = "1"
    # A full prompt_toolkit prompt (no --simple-prompt): the gatherer prints through it.
    child = pexpect.spawn(
        sys.executable,
        ["-m", "IPython", "--no-banner", "--colors=nocolor", "--no-confirm-exit"],
        env=env,
        cwd=str(ipython_dir),
        encoding="utf-8",
        timeout=TIMEOUT,
        dimensions=(40, 160),
    )
    rk = None
    try:
        term = Screen(child)
        term.wait(FULL_PROMPT, "first prompt")
        child.send("%load_ext ipython_parallel_kernel\r")
        term.wait(FULL_PROMPT, "prompt after %load_ext")
        child.send("%kernel gather 0\r")
        port = int(term.wait(r"gathering on 127\.0\.0\.1:(\d+)", "gathering line").group(1))
        term.wait(FULL_PROMPT, "prompt after %kernel gather")

        child.send("x = 12")  # no Enter: the line being typed
        term.wait("12", "echo of the partial line")
        rk = RemoteKernel(kernel.address, timeout=30)
        rk.notify(("127.0.0.1", port))
        for _ in range(3):
            rk.execute("print('hello from the kernel')")
        term.wait(r"\[stdout\] hello from the kernel", "the record printed above the prompt")
        time.sleep(0.5)  # let every record print before typing on
        child.send("3\r")
        term.wait(FULL_PROMPT, "prompt after finishing the line")
        child.send("x\r")
        term.wait(r"Out\[\d+\]: 123", "x == 123: the typed line stayed intact")
        term.wait(FULL_PROMPT, "prompt after x")
        child.send("%kernel gather --stop\r")
        term.wait("stopped gathering on", "gatherer stopped")
        term.wait(FULL_PROMPT, "prompt after --stop")
        child.send("exit\r")
        child.expect(pexpect.EOF, timeout=60)
        child.wait()
        assert child.exitstatus == 0, (child.exitstatus, child.signalstatus)
    finally:
        if rk is not None:
            rk.disconnect()
        if child.isalive():
            child.terminate(force=True)
        child.close(force=True)
        kernel.stop()
