"""The ipk-kernel command: flags, profiles, background start and orderly shutdown."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import kernel_env, parse_ready_line, start_kernel

from ipython_parallel_kernel import RemoteKernel
from ipython_parallel_kernel.core.connection import read_connection_file, write_connection_file
from ipython_parallel_kernel.errors import ConnectionRefused, KernelDied

KERNEL = [sys.executable, "-m", "ipython_parallel_kernel.apps.kernel"]


def run_kernel_command(ipython_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run ipk-kernel with arguments that make it exit at once; bounded."""
    return subprocess.run(
        [*KERNEL, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=kernel_env(ipython_dir),
        stdin=subprocess.DEVNULL,
    )


def test_help_explains_the_flags(ipython_dir):
    """--help lists the flags of the contract; --help-all lists every trait."""
    short = run_kernel_command(ipython_dir, "--help")
    assert short.returncode == 0
    for flag in ("--port", "--ip", "--allow", "--deny", "--gui", "--profile", "--tls-cert"):
        assert flag in short.stdout
    full = run_kernel_command(ipython_dir, "--help-all")
    assert "KernelApp.max_frame" in full.stdout and "KernelApp.sign_buffers" in full.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--allow", "not-an-address"], "is not an IP address or network"),
        (["--tls-cert", "/nonexistent.pem"], "go together"),
        (["--tls-cert", "/nonexistent.pem", "--tls-key", "/x.pem"], "does not exist"),
    ],
)
def test_bad_settings_exit_with_one_line(ipython_dir, args, message):
    """Impossible settings stop the kernel before it binds, with a one-line reason."""
    result = run_kernel_command(ipython_dir, "--port", "0", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(ipython_dir.glob("profile_default/security/ipk-kernel-*.json"))


def test_port_in_use_is_reported(kernel):
    """A second kernel on a taken port says so and exits."""
    result = run_kernel_command(kernel.ipython_dir, "--port", str(kernel.port))
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{kernel.port}" in result.stderr


def test_kernel_never_loads_the_client(rk):
    """Importing the package in a kernel pulls in neither the client nor magics."""
    loaded = rk.execute(
        "import sys; sorted(m for m in sys.modules if m.startswith('ipython_parallel_kernel'))"
    ).text
    assert "ipython_parallel_kernel.kernel.engine" in loaded
    assert "client" not in loaded and "magics" not in loaded


@pytest.mark.parametrize("launch", ["&", "nohup", "setsid"])
def test_background_start_then_sigterm(ipython_dir, tmp_path, launch):
    """`ipk-kernel &` (and nohup, setsid) from a shell serves; SIGTERM shuts it down cleanly."""
    out = tmp_path / "kernel.out"
    prefix = {"&": "", "nohup": "nohup ", "setsid": "setsid "}[launch]
    command = " ".join([*KERNEL, "--port", "0"])
    shell = subprocess.run(
        ["bash", "-c", f"{prefix}{command} > {out} 2>&1 < /dev/null & echo $!"],
        capture_output=True,
        text=True,
        timeout=30,
        env=kernel_env(ipython_dir),
    )
    pid = int(shell.stdout.strip())
    try:
        line = _wait_for_line(out, "ipk-kernel ready:")
        address, connection_file = parse_ready_line(line)
        client = RemoteKernel(address, timeout=30)
        assert client.execute("6 * 7").text == "42"
        os.kill(pid, signal.SIGTERM)
        _wait_until_gone(pid)
        assert not Path(connection_file).exists()
        with pytest.raises(KernelDied, match="shutting down"):
            client.execute("1")
        assert "shutting down (SIGTERM)" in out.read_text()
    finally:
        _kill_if_alive(pid)


def test_sigint_from_outside_shuts_down(kernel):
    """SIGINT sent to the kernel process (not our interrupt) is an orderly shutdown."""
    client = RemoteKernel(kernel.address, timeout=30)
    kernel.process.send_signal(signal.SIGINT)
    assert kernel.process.wait(30) == 0
    assert not kernel.connection_file.exists()
    with pytest.raises(KernelDied):
        client.execute("1")


def test_sigterm_while_busy_shuts_down(kernel):
    """SIGTERM stops a kernel even in the middle of a long command."""
    client = RemoteKernel(kernel.address, timeout=30)
    running = client.execute("while True: pass", block=False)
    time.sleep(0.2)
    kernel.process.send_signal(signal.SIGTERM)
    assert kernel.process.wait(30) == 0
    with pytest.raises(KernelDied):
        running.get(30)


def test_connection_file_flag(ipython_dir, tmp_path):
    """--connection-file writes address and key where asked; clients can use it."""
    target = tmp_path / "here" / "kernel.json"
    process = start_kernel(ipython_dir, "--connection-file", str(target))
    try:
        assert process.connection_file == target and target.exists()
        client = RemoteKernel(str(target), timeout=30)
        assert client.execute("1 + 1").text == "2"
        client.disconnect()
    finally:
        process.stop()
    assert not target.exists()


def test_a_kernel_on_all_interfaces_is_reached_here_and_from_elsewhere(ipython_dir, tmp_path):
    """A kernel listening on 0.0.0.0 writes where other machines reach it (``location``,
    this machine's outward address). Its file, used here, connects over loopback; the
    same file as another machine has it connects to that location."""
    process = start_kernel(ipython_dir, "--ip", "0.0.0.0", "--allow", "0.0.0.0/0")
    try:
        info = read_connection_file(process.connection_file)
        assert info.ip == "0.0.0.0"
        assert info.location not in (None, "0.0.0.0", "127.0.0.1")
        here = RemoteKernel(str(process.connection_file), timeout=30)
        assert here.name == f"127.0.0.1:{info.port}"
        assert here.execute("1 + 1").text == "2"
        here.disconnect()
        copied = tmp_path / "copied.json"
        write_connection_file(dataclasses.replace(info, hostname="elsewhere"), copied)
        elsewhere = RemoteKernel(str(copied), timeout=30)
        assert elsewhere.name == f"{info.location}:{info.port}"
        assert elsewhere.execute("1 + 1").text == "2"
        elsewhere.disconnect()
    finally:
        process.stop()


def test_profile_config_is_loaded(ipython_dir):
    """--profile NAME reads ipk_kernel_config.py there; the command line still wins."""
    profile = ipython_dir / "profile_team"
    profile.mkdir()
    (profile / "ipk_kernel_config.py").write_text(
        "c.KernelApp.allow = ['127.0.0.2']\nc.KernelApp.history_length = 7\n"
    )
    process = start_kernel(ipython_dir, "--profile", "team", "--deny", "127.0.0.3")
    try:
        assert "profile_team/security" in str(process.connection_file)
        guest = RemoteKernel(process.address, source_address="127.0.0.2", timeout=30)
        assert guest.status()["allow"][-1] == "127.0.0.2/32"
        guest.disconnect()
        with pytest.raises(ConnectionRefused):
            RemoteKernel(process.address, source_address="127.0.0.3", timeout=30)
    finally:
        process.stop()


def test_bundled_profile_is_installed(ipython_dir):
    """A profile shipped in profiles/ is copied into IPYTHONDIR on first use."""
    result = run_kernel_command(ipython_dir, "--profile", "lan", "--port", "0")
    installed = ipython_dir / "profile_lan" / "ipk_kernel_config.py"
    assert installed.exists()
    assert result.returncode == 2
    assert "kernel-cert.pem does not exist" in result.stderr


def _wait_for_line(path: Path, prefix: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                if line.startswith(prefix):
                    return line
        time.sleep(0.05)
    raise AssertionError(f"no line starting {prefix!r} in {path}: {path.read_text()!r}")


def _wait_until_gone(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still running")


def _kill_if_alive(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
