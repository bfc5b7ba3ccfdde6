"""Connection files left by killed kernels: they never shadow the kernel now on the port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import kernel_env, read_ready_line, start_kernel, stop_process

from ipython_parallel_kernel import RemoteKernel
from ipython_parallel_kernel.core.connection import connection_file_path
from ipython_parallel_kernel.errors import ConnectionRefused


def kernel_on_port(ipython_dir: Path, port: int, *args: str) -> subprocess.Popen:
    """``ipk-kernel --port PORT ARGS``, once it is ready."""
    command = [sys.executable, "-m", "ipython_parallel_kernel.apps.kernel", "--port", str(port)]
    process = subprocess.Popen(
        [*command, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=kernel_env(ipython_dir),
        text=True,
    )
    try:
        read_ready_line(process, 30)
    except BaseException:
        stop_process(process, 5)
        raise
    return process


def test_killed_kernels_file_does_not_shadow_the_new_kernel_on_its_port(ipython_dir):
    """After kill -9 leaves a default-profile file, a new kernel on that port (another
    profile) is reached by address: the dead kernel's file is skipped."""
    dead = start_kernel(ipython_dir)
    os.kill(dead.pid, signal.SIGKILL)
    dead.process.wait(30)
    assert dead.connection_file.exists()  # left behind, as after any kill -9
    (ipython_dir / "profile_other").mkdir()
    live = kernel_on_port(ipython_dir, dead.port, "--profile", "other")
    try:
        rk = RemoteKernel(("127.0.0.1", dead.port), timeout=30)
        assert rk.kernel_info["pid"] == live.pid
        assert rk.execute("6 * 7").text == "42"
        rk.disconnect()
    finally:
        stop_process(live)
        dead.stop()


def test_refused_key_names_the_file_it_came_from(ipython_dir):
    """When the file found for an address holds a key the kernel refuses, the error names
    that file and says it may be stale."""
    (ipython_dir / "profile_other").mkdir()
    kernel = start_kernel(ipython_dir, "--profile", "other")
    try:
        bogus = connection_file_path(kernel.address)  # the default profile, searched first
        entry = json.loads(kernel.connection_file.read_text())
        bogus.write_text(json.dumps({**entry, "key": "0" * 64, "pid": os.getpid()}))
        with pytest.raises(ConnectionRefused) as error:
            RemoteKernel(kernel.address, timeout=30)
        message = str(error.value)
        assert "signature does not match" in message
        assert str(bogus) in message and "may be stale" in message
    finally:
        kernel.stop()
