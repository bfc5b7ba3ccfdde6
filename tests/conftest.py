"""Shared fixtures: real kernel processes on 127.0.0.1, each stopped by pid.

Every kernel a test starts runs with its own IPYTHONDIR (so connection files never
touch the user's profile), is waited for with a deadline, and is stopped with SIGTERM,
then SIGKILL if it has not exited within a few seconds.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import read_line

from ipython_parallel_kernel.core.connection import KERNEL_READY, KernelReady
from ipython_parallel_kernel.core.toolkits import TOOLKITS

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
    gui: str = "none"

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


def stop_group(pgid: int, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, what is left of a process group we started (by its id):
    a shell's background jobs outlive the shell."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, signum)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.05)
        if not _group_alive(pgid):
            return


def _group_alive(pgid: int) -> bool:
    import psutil

    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                return True
    return False


def stop_kernels_left(ipython_dir: Path, timeout: float = 10.0) -> None:
    """Stop, by pid, the kernels whose connection or cluster files are left in
    ``ipython_dir`` (kernels ``ipk-cluster`` starts run in sessions of their own)."""
    from ipython_parallel_kernel.launchers.local import is_kernel_process

    pids = set()
    for path in ipython_dir.glob("profile_*/security/ipk-*.json"):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text())
            for entry in data if isinstance(data, list) else [data]:
                if isinstance(entry.get("pid"), int):
                    pids.add(entry["pid"])
    for signum in (signal.SIGTERM, signal.SIGKILL):
        alive = [pid for pid in pids if is_kernel_process(pid)]
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(map(is_kernel_process, alive)):
            time.sleep(0.05)


def wait_for(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``check()`` until it returns something true, and return that; fail after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, f"still {result!r} after {timeout} s"
            return result
        time.sleep(0.02)


def check_abort_drops_the_queue(rk: Any) -> None:
    """abort() drops queued commands (they fail with "aborted"); the running one
    finishes; nothing dropped runs. For plain and GUI kernels alike."""
    from ipython_parallel_kernel.errors import RemoteError

    running = rk.execute("import time; time.sleep(1); 'finished'", block=False)
    queued = [rk.execute(f"marker_{i} = {i}", block=False) for i in range(5)]
    wait_for(lambda: rk.status()["queued"] == 5)
    assert rk.abort() == 5
    assert running.get(30).text == "'finished'"
    for pending in queued:
        with pytest.raises(RemoteError, match="aborted"):
            pending.get(30)
    assert not any(name.startswith("marker_") for name in rk)


def kernel_env(ipython_dir: Path) -> dict[str, str]:
    """The environment for a kernel process: isolated IPYTHONDIR, unbuffered output."""
    env = dict(os.environ)
    env["IPYTHONDIR"] = str(ipython_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_kernel(ipython_dir: Path, *args: str, timeout: float = START_TIMEOUT) -> KernelProcess:
    """Start ``ipk-kernel --port 0 ARGS`` and wait (bounded) for its ready line."""
    command = [sys.executable, "-m", "ipython_parallel_kernel.apps.kernel", "--port", "0", *args]
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
        gui = args[args.index("--gui") + 1] if "--gui" in args else "none"
        return KernelProcess(
            process,
            ip.strip("[]"),
            int(port),
            Path(connection_file),
            ipython_dir,
            line,
            log_path,
            gui,
        )
    except BaseException:
        stop_process(process, 5)
        raise


def read_ready_line(process: subprocess.Popen, timeout: float) -> str:
    """The kernel's ready line; fails if the kernel exits first or takes too long."""
    try:
        return read_line(process, KERNEL_READY, timeout)
    except RuntimeError as e:
        raise AssertionError(f"kernel did not become ready: {e}") from None


def parse_ready_line(line: str) -> tuple[str, str]:
    """``(address, connection_file)`` from a kernel's ready line."""
    ready = KernelReady.parse(line)
    return ready.address, ready.connection_file


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


@pytest.fixture
def rc(four_kernels, tmp_path: Path) -> Iterator:
    """A Client of the four shared kernels (through a cluster file), namespaces emptied."""
    import ipython_parallel_kernel as ipp
    from ipython_parallel_kernel.core.clusterfile import write_cluster_file
    from ipython_parallel_kernel.core.connection import read_connection_file

    path = tmp_path / "ipk-cluster-four.json"
    write_cluster_file([read_connection_file(k.connection_file) for k in four_kernels], path)
    client = ipp.Client(path, timeout=60)
    client.clear(block=True)
    try:
        yield client
    finally:
        client.close()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files in ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


# -- GUI kernels ------------------------------------------------------------------
# One Xvfb for the session, started by pid with ``-displayfd`` (it reports its display
# number through a pipe) and ``-noreset`` (without it, wx's probe connection can make
# the server reset while GTK connects). Its screen is the session's DISPLAY.

SCREEN = "1280x800x24"
XVFB_OPTIONS = ("-noreset", "-nolisten", "tcp", "-screen", "0", SCREEN)
ARTIFACTS = Path(os.environ.get("IPK_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts"))


def require_toolkit(name: str) -> None:
    """Skip (fail in CI) when the toolkit cannot be imported here."""
    info = TOOLKITS[name]
    if not info.installed():
        skip_or_fail(f"--gui {name} needs {info.needs}: {info.install_hint}")


@pytest.fixture(scope="session")
def display() -> Iterator[str]:
    """A private Xvfb screen, set as DISPLAY for the session; its name (``:N``)."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        skip_or_fail("GUI tests need Xvfb: apt install xvfb xauth")
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        [xvfb, "-displayfd", str(write_end), *XVFB_OPTIONS],
        pass_fds=(write_end,),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    saved = os.environ.get("DISPLAY")
    try:
        with selectors.DefaultSelector() as selector, os.fdopen(read_end) as pipe:
            selector.register(pipe, selectors.EVENT_READ)
            assert selector.select(timeout=20), "Xvfb did not report its display within 20 s"
            name = f":{pipe.readline().strip()}"
        os.environ["DISPLAY"] = name
        yield name
    finally:
        if saved is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = saved
        stop_process(process, 5)


@pytest.fixture(scope="module", params=list(TOOLKITS))
def gui_kernel(
    request: pytest.FixtureRequest, display: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KernelProcess]:
    """``ipk-kernel --gui TOOLKIT`` for each toolkit, shared by a module's tests."""
    require_toolkit(request.param)
    kernel = start_kernel(tmp_path_factory.mktemp("ipython"), "--gui", request.param)
    try:
        yield kernel
    finally:
        # wx's shutdown can hang on rare occasions: stop_process ends with SIGKILL.
        kernel.stop(timeout=10)


# -- IPython sessions ---------------------------------------------------------------
# A real InteractiveShell in a process of its own, driven one cell at a time, so a test
# can use any interpreter (a fresh venv's) and end the session as leaving IPython does.

IPYTHON_SESSION = Path(__file__).resolve().parent / "readme" / "readme_session.py"


class IPythonSession:
    """An IPython session run by ``python`` (see readme_session.py for what it answers)."""

    def __init__(self, python: str, env: dict[str, str], cwd: Path, log_path: Path) -> None:
        read_end, write_end = os.pipe()
        self.log_path = log_path
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(
                [python, str(IPYTHON_SESSION), str(write_end)],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(write_end,),
                cwd=cwd,
                env=env,
                text=True,
            )
        os.close(write_end)
        self.answers = os.fdopen(read_end)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.answers, selectors.EVENT_READ)

    def run_cell(self, source: str, value: str | None = None, timeout: float = 60.0) -> dict:
        """Run a cell; what came of it (``success``, ``error``, ``output``...)."""
        return self._request({"cell": source, "value": value}, timeout)

    def poll(self) -> str:
        """What the session printed since its last answer (threads print at any time)."""
        return self._request({"poll": True}, 10.0)["output"]

    def _request(self, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.process.stdin.write(json.dumps(payload) + "\n")
        self.process.stdin.flush()
        if not self.selector.select(timeout):
            self.close(timeout=1)
            raise AssertionError(f"the IPython session did not answer within {timeout} s")
        line = self.answers.readline()
        if not line:
            raise AssertionError(f"the IPython session ended:\n{self.log_path.read_text()}")
        return json.loads(line)

    def close(self, timeout: float = 30.0) -> int:
        """End the session as leaving IPython does (its exit hooks run), then by force."""
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.selector.close()
        self.answers.close()
        return self.process.returncode
