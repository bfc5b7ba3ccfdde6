"""scripts/test.sh sets up a fresh Debian/Ubuntu machine itself, system packages included.

Run on a copy of the scripts, with ``id``, ``sudo``, ``dpkg-query`` and ``apt-get``
replaced on PATH by stand-ins that make this machine look fresh (nothing installed) and
record what would be installed; the copy stops at the apt step, before any venv exists.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ipython_parallel_kernel.kernel.gui import QT_XCB_PACKAGES

ROOT = Path(__file__).resolve().parents[2]
GUI_PACKAGES = ["python3-wxgtk4.0", "python3-tk", "xvfb", "xauth", *QT_XCB_PACKAGES.split()]


def stand_in(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)


@pytest.fixture
def fresh(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the repository's scripts and a bin directory of stand-ins."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "scripts", repo / "scripts")
    shutil.copy(ROOT / "pyproject.toml", repo)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in(bin_dir, "dpkg-query", "exit 1")  # nothing is installed
    stand_in(bin_dir, "sudo", "exit 1")  # no sudo without a password
    log = tmp_path / "apt.log"
    # Record the call, and fail the install so that the script stops there.
    stand_in(bin_dir, "apt-get", f'echo "$@" >> {log}; case "$*" in *install*) exit 1;; esac')
    return repo, bin_dir


def run_test_sh(repo: Path, bin_dir: Path, uid: int) -> subprocess.CompletedProcess:
    stand_in(bin_dir, "id", f'[ "$1" = -u ] && echo {uid} || exec /usr/bin/id "$@"')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("IPK_APT_PACKAGES", None)
    return subprocess.run(
        ["bash", str(repo / "scripts" / "test.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_without_root_or_sudo_it_prints_the_apt_command_and_stops(fresh):
    """Not root, no sudo -n: test.sh names what it needs, prints the exact apt command with
    every GUI package, and stops before making a venv."""
    repo, bin_dir = fresh
    result = run_test_sh(repo, bin_dir, uid=1000)
    assert result.returncode != 0
    assert "missing system packages for the GUI tests" in result.stderr, result.stderr
    command = re.search(r"sudo apt-get update && sudo .*apt-get install -y (.*)", result.stderr)
    assert command, result.stderr
    assert set(GUI_PACKAGES) <= set(command[1].split())
    assert not (repo / ".venv").exists()


def test_as_root_it_says_what_it_installs_and_installs_it(fresh, tmp_path):
    """As root, test.sh says what it installs and why, and installs it with apt-get."""
    repo, bin_dir = fresh
    result = run_test_sh(repo, bin_dir, uid=0)
    assert result.returncode != 0  # the stand-in's install fails: the script stops there
    said = re.search(r"installing system packages for the GUI tests .*apt-get: (.*)", result.stderr)
    assert said, result.stderr
    assert set(GUI_PACKAGES) <= set(said[1].split())
    calls = (tmp_path / "apt.log").read_text().splitlines()
    installs = [call.split() for call in calls if " install " in f" {call} "]
    assert installs and set(GUI_PACKAGES) <= set(installs[0]), calls
    assert not (repo / ".venv").exists()


def test_ci_leaves_the_set_up_to_test_sh():
    """.ci/run sets CI's strictness and calls test.sh; the package list lives in test.sh."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert "IPK_REQUIRE_ALL=1" in ci and "scripts/test.sh" in ci
    assert "apt" not in ci.replace("scripts/test.sh installs", "")
    assert not any(package in ci for package in GUI_PACKAGES)
