"""The profiles ship in the wheel: a kernel installed from it finds and installs them."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import kernel_env

from ipython_parallel_kernel.core.profiles import SHIPPED_PROFILES, shipped_profiles

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package built as a wheel and installed (without dependencies) into a directory."""
    work = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = work.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for path in SHIPPED_PROFILES.glob("*/*.py"):
        assert f"ipython_parallel_kernel/profiles/{path.parent.name}/{path.name}" in names
    assert "ipython_parallel_kernel/profiles/ssh/hosts" in names
    target = work / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), wheel],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    return target


def run_installed(site: Path, ipython_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """``ipk-kernel ARGS`` from the installed copy (not this checkout), until it exits."""
    env = kernel_env(ipython_dir)
    env["PYTHONPATH"] = str(site)
    command = [sys.executable, "-m", "ipython_parallel_kernel.apps.kernel", "--port", "0", *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
        cwd=site,
    )


@pytest.mark.slow
def test_installed_kernel_installs_and_loads_the_lan_profile(installed, ipython_dir):
    """--profile lan from a wheel install: copied into IPYTHONDIR and loaded (it asks for
    its TLS certificate in the profile's security directory)."""
    found = subprocess.run(
        [sys.executable, "-c", "import ipython_parallel_kernel as m; print(m.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(installed)},
        cwd=installed,
    )
    assert found.stdout.strip().startswith(str(installed)), found
    result = run_installed(installed, ipython_dir, "--profile", "lan")
    assert (ipython_dir / "profile_lan" / "ipk_kernel_config.py").is_file()
    assert result.returncode == 2, result.stderr
    wanted = ipython_dir / "profile_lan" / "security" / "kernel-cert.pem"
    assert f"--tls-cert {wanted} does not exist" in result.stderr


@pytest.mark.slow
def test_unknown_profile_is_refused_by_name(installed, ipython_dir):
    """A profile that neither exists nor ships is a one-line error naming the shipped ones."""
    result = run_installed(installed, ipython_dir, "--profile", "lna")
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("ipk-kernel: --profile lna: no such profile")
    assert f"shipped: {', '.join(shipped_profiles())}" in line and "lan" in line
    assert result.stdout == ""
    assert not (ipython_dir / "profile_lna").exists()
