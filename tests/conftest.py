"""Shared fixtures: real kernel processes on 127.0.0.1, each stopped by pid.

Every kernel a test starts runs with its own IPYTHONDIR (so connection files never
touch the user's profile), is waited for with a deadline, and is stopped with SIGTERM,
then SIGKILL if it has not exited within a few seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRE_ALL = os.environ.get("IPK_REQUIRE_ALL") == "1"
START_TIMEOUT = 30.0


def skip_or_fail(reason: str) -> None:
    """Skip where something a user may lack is absent; in CI (IPK_REQUIRE_ALL=1) fail."""
    if REQUIRE_ALL:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@dataclass
class KernelProcess:
    """A running ``ipk-kernel`` started by a test."""

    process: subprocess.Popen
    ip: str
    port: int
    connection_file: Path
    ipython_dir: Path
    ready_line: str
    log_path: Path

    def log(self) -> str:
        """What the kernel has logged so far (its stderr)."""
        return self.log_path.read_text(errors="replace")

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def address(self) -> tuple[str, int]:
        return (self.ip, self.port)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait, then SIGKILL; returns the exit status."""
        return stop_process(self.process, timeout)


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> int:
    """Stop a process we started, by pid: SIGTERM, then SIGKILL after ``timeout``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()
    return process.returncode


def kernel_env(ipython_dir: Path) -> dict[str, str]:
    """The environment for a kernel process: isolated IPYTHONDIR, unbuffered output."""
    env = dict(os.environ)
    env["IPYTHONDIR"] = str(ipython_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_kernel(ipython_dir: Path, *args: str, timeout: float = START_TIMEOUT) -> KernelProcess:
    """Start ``ipk-kernel --port 0 ARGS`` and wait (bounded) for its ready line."""
    command = [sys.executable, "-m", "ipython_parallel_kernel.kernel.app", "--port", "0", *args]
    log_path = ipython_dir / f"kernel-{time.monotonic_ns()}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=kernel_env(ipython_dir),
            text=True,
        )
    try:
        line = read_ready_line(process, timeout)
        address, connection_file = parse_ready_line(line)
        ip, _, port = address.rpartition(":")
        return KernelProcess(
            process, ip.strip("[]"), int(port), Path(connection_file), ipython_dir, line, log_path
        )
    except BaseException:
        stop_process(process, 5)
        raise


def read_ready_line(process: subprocess.Popen, timeout: float) -> str:
    """The kernel's ready line; fails with its stderr if it exits or takes too long."""
    import selectors

    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if selector.select(timeout=0.2):
                line = process.stdout.readline()
                if line.startswith("ipk-kernel ready:"):
                    return line.strip()
                if not line and process.poll() is not None:
                    break
            elif process.poll() is not None:
                break
    finally:
        selector.close()
    raise AssertionError(f"kernel did not become ready (exit status {process.returncode})")


def parse_ready_line(line: str) -> tuple[str, str]:
    """``(address, connection_file)`` from ``ipk-kernel ready: ADDR pid N connection file F``."""
    words = line.split()
    return words[2], line.split(" connection file ", 1)[1]


@pytest.fixture
def ipython_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private IPYTHONDIR, for kernels and for this test's clients alike."""
    path = tmp_path / "ipython"
    path.mkdir()
    monkeypatch.setenv("IPYTHONDIR", str(path))
    return path


@pytest.fixture
def kernel(ipython_dir: Path) -> Iterator[KernelProcess]:
    """One fresh kernel on 127.0.0.1."""
    process = start_kernel(ipython_dir)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def rk(kernel: KernelProcess) -> Iterator:
    """A RemoteKernel connected to ``kernel``, with a deadline on every call."""
    from ipython_parallel_kernel import RemoteKernel

    client = RemoteKernel(kernel.address, timeout=30)
    try:
        yield client
    finally:
        client.disconnect()


@pytest.fixture(scope="module")
def four_kernels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[KernelProcess]]:
    """Four kernels shared by a module's tests (clients connect by connection file)."""
    directory = tmp_path_factory.mktemp("ipython")
    kernels: list[KernelProcess] = []
    try:
        for _ in range(4):
            kernels.append(start_kernel(directory))
        yield kernels
    finally:
        for kernel in kernels:
            kernel.stop()


@pytest.fixture
def ic(four_kernels: list[KernelProcess]) -> Iterator:
    """An InteractiveCluster of the four shared kernels, their namespaces emptied."""
    from ipython_parallel_kernel import InteractiveCluster

    cluster = InteractiveCluster([str(k.connection_file) for k in four_kernels], timeout=60)
    cluster.reset()
    try:
        yield cluster
    finally:
        cluster.disconnect()
