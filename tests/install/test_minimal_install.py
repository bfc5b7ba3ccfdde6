"""A minimal install: `pip install .` with no extras, in a fresh venv, does what users do.

The venv is made once per session from the interpreter under the suite, without system
site packages, and gets `pip install .` of a copy of the repository's tracked files as
they are in the work tree (so the install sees what a clone would, plus uncommitted
edits). A module that only an extra (such as the test extra) brings fails here. Every
program runs from outside the source tree, so it imports the installed package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import IPythonSession, skip_or_fail, stop_group, stop_kernels_left

ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT = 600.0
RUN_TIMEOUT = 120.0

# The install (downloads included) happens in the first test's set-up.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(INSTALL_TIMEOUT + 2 * RUN_TIMEOUT)]


@dataclass
class MinimalInstall:
    """A venv holding the package and its dependencies only, and the tree it came from."""

    python: Path
    tree: Path

    def env(self, ipython_dir: Path) -> dict[str, str]:
        """An environment that finds this venv first and nothing of the developer's."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["PATH"] = f"{self.python.parent}{os.pathsep}{env.get('PATH', '')}"
        env["IPYTHONDIR"] = str(ipython_dir)
        return env


def copy_tracked_files(destination: Path) -> None:
    """The repository's tracked files, as they are in the work tree, into ``destination``."""
    if shutil.which("git") is None:
        skip_or_fail("the minimal-install tier lists the repository's files with git")
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, timeout=60, check=False
    )
    if listed.returncode != 0:
        skip_or_fail(f"{ROOT} is not a git checkout: {listed.stderr.decode().strip()}")
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the work tree is left out
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def index_reachable(python: Path, directory: Path) -> bool:
    """Whether pip can fetch a dependency of ours from the package index."""
    command = ["-m", "pip", "download", "--no-deps", "--dest", str(directory), "cloudpickle"]
    probe = subprocess.run(
        [str(python), *command],
        capture_output=True,
        timeout=120,
        check=False,
    )
    return probe.returncode == 0


@pytest.fixture(scope="session")
def minimal_install(tmp_path_factory: pytest.TempPathFactory) -> MinimalInstall:
    """`pip install .` (no extras) into a fresh venv without system site packages."""
    base = tmp_path_factory.mktemp("minimal-install")
    tree, venv = base / "tree", base / "venv"
    copy_tracked_files(tree)
    interpreter = getattr(sys, "_base_executable", sys.executable)
    made = subprocess.run(
        [interpreter, "-m", "venv", str(venv)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if made.returncode != 0:
        if "ensurepip" in made.stdout + made.stderr:
            skip_or_fail(f"{interpreter} -m venv cannot install pip: apt install python3-venv")
        pytest.fail(f"{interpreter} -m venv failed:\n{made.stdout}{made.stderr}")
    python = venv / "bin" / "python"
    install = MinimalInstall(python, tree)
    env = install.env(base / "ipython")
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(tree)],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        cwd=base,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        if not index_reachable(python, base / "probe"):
            skip_or_fail("the minimal-install tier needs the package index, which pip cannot reach")
        pytest.fail(f"pip install . failed:\n{done.stdout}{done.stderr}")
    where = subprocess.run(
        [str(python), "-c", "import ipython_parallel_kernel as m; print(m.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=base,
        env=env,
        check=True,
    )
    assert where.stdout.startswith(str(venv)), f"imported from elsewhere: {where.stdout}"
    return install


@pytest.fixture
def user_dir(tmp_path: Path) -> Iterator[Path]:
    """A private IPYTHONDIR; kernels left behind in it are stopped afterwards."""
    path = tmp_path / "ipython"
    path.mkdir()
    try:
        yield path
    finally:
        stop_kernels_left(path)


def run_example(install: MinimalInstall, name: str, ipython_dir: Path) -> tuple[int, str]:
    """``python examples/NAME`` with the venv's python; its exit status and output."""
    log_path = ipython_dir.parent / f"{name}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(install.python), str(install.tree / "examples" / name)],
            cwd=ipython_dir.parent,
            env=install.env(ipython_dir),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        process.wait(RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        stop_group(process.pid)
        pytest.fail(f"{name} still running after {RUN_TIMEOUT} s:\n{log_path.read_text()}")
    stop_group(process.pid)  # whatever it started in its own group and left behind
    return process.returncode, log_path.read_text()


def stdout_lines(output: str) -> list[str]:
    return sorted(line for line in output.splitlines() if line.startswith("[stdout:"))


def test_px_of_three_seconds_then_another(minimal_install, user_dir):
    """%px that runs 3 s (long enough for the progress bar) works, and so does the next."""
    session = IPythonSession(
        str(minimal_install.python),
        minimal_install.env(user_dir),
        user_dir.parent,
        user_dir.parent / "session.log",
    )
    try:
        for cell in ("%load_ext ipython_parallel_kernel", "%kernel start -n 2"):
            answer = session.run_cell(cell)
            assert answer["success"], f"{cell}: {answer['error']}\n{answer['output']}"
        slow = session.run_cell("%px import time; time.sleep(3); print('slept')")
        assert slow["success"], f"{slow['error']}\n{slow['output']}"
        assert stdout_lines(slow["output"]) == ["[stdout:0] slept", "[stdout:1] slept"]
        again = session.run_cell("%px print('again')")
        assert again["success"], f"{again['error']}\n{again['output']}"
        assert stdout_lines(again["output"]) == ["[stdout:0] again", "[stdout:1] again"]
    finally:
        assert session.close() == 0, session.log_path.read_text()


def test_gatherer_example(minimal_install, user_dir):
    """examples/watch_kernels.py: the watcher sees the driver's commands."""
    status, output = run_example(minimal_install, "watch_kernels.py", user_dir)
    assert status == 0, output
    assert "] In [" in output and "[stdout] pid" in output
    assert not list(user_dir.glob("profile_default/security/ipk-*.json"))


def test_seed_session_demo(minimal_install, user_dir):
    """examples/seed_session.py (what scripts/demo.sh runs) replays the seed's session."""
    status, output = run_example(minimal_install, "seed_session.py", user_dir)
    assert status == 0, output
    assert ">>> rk.pull('b')\n10\n" in output and "ZeroDivisionError" in output
    assert output.rstrip().endswith("kernel exited with status 0")


def test_mpi_ranks_without_mpi4py(minimal_install, user_dir):
    """ipk-cluster start --launcher mpi on a default install (no mpi extra): the kernels
    are ranks all the same (list shows them), each log says how to get MPI.COMM_WORLD,
    and stop ends them."""
    if shutil.which("mpiexec") is None:
        skip_or_fail("Open MPI is not installed (apt install openmpi-bin)")
    env = minimal_install.env(user_dir)

    def ipk_cluster(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ipk-cluster", *args],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            cwd=user_dir.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    started = ipk_cluster("start", "-n", "2", "--launcher", "mpi")
    assert started.returncode == 0, started.stderr
    listed = ipk_cluster("list")
    header, *rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert [row[header.index("rank")] for row in rows] == ["0", "1"], listed.stdout
    logs = sorted((user_dir / "profile_default" / "log").glob("ipk-cluster-default-kernel-*.log"))
    assert len(logs) == 2
    for log in logs:
        assert "pip install 'ipython-parallel-kernel[mpi]'" in log.read_text()
    stopped = ipk_cluster("stop")
    assert stopped.returncode == 0, stopped.stderr
