"""The ssh launcher against a real sshd: kernels on two "hosts", used, killed, stopped.

The module starts Debian's ``/usr/sbin/sshd`` in the foreground on 127.0.0.1 and
127.0.0.2 (Linux routes all of 127/8 to lo), on a free port, with its own host key,
config and authorized key under a temporary directory, key login only; it is stopped
by pid at the end, after any session it still serves. The two addresses are the same
machine, so a kernel's host is told by the address it listens on and the one its
ssh session came in on (``$SSH_CONNECTION`` in its environment).

Remote kernels run this checkout's code: the kernel command sets PYTHONPATH to it
(where the package is installed, that is the installed copy, just as good) and a
private IPYTHONDIR, since ssh forwards no environment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from conftest import skip_or_fail, stop_process
from test_cluster_app import ipk_cluster, kernels_using, kill_leftovers, wait_gone
from traitlets.config import Config

import ipython_parallel_kernel
import ipython_parallel_kernel as ipp
from ipython_parallel_kernel.core.clusterfile import read_cluster_file, write_cluster_file
from ipython_parallel_kernel.core.connection import ConnectionInfo
from ipython_parallel_kernel.errors import ConnectionFailed

SSHD = Path("/usr/sbin/sshd")
HOSTS = ("127.0.0.1", "127.0.0.2")
PACKAGE_ROOT = Path(ipython_parallel_kernel.__file__).resolve().parents[1]


@dataclass
class SSHServer:
    """A private sshd and the client config that logs in to it."""

    port: int
    config: Path
    directory: Path

    def ssh(self, host: str, command: str) -> subprocess.CompletedProcess:
        """Run ``command`` on ``host`` through this server, bounded."""
        return subprocess.run(
            ["ssh", "-F", str(self.config), host, command],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 and 127.0.0.2 just now."""
    while True:
        with socket.socket() as probe:
            probe.bind((HOSTS[0], 0))
            port = probe.getsockname()[1]
        with socket.socket() as other, contextlib.suppress(OSError):
            other.bind((HOSTS[1], port))
            return port


def write_keys_and_configs(directory: Path, port: int) -> tuple[Path, Path]:
    """Host and client keys, sshd_config and ssh_config in ``directory``."""
    for name in ("host_ed25519", "id_ed25519"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / name)],
            check=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    shutil.copy(directory / "id_ed25519.pub", directory / "authorized_keys")
    sshd_config = directory / "sshd_config"
    sshd_config.write_text(
        "\n".join(
            [
                f"Port {port}",
                *(f"ListenAddress {host}" for host in HOSTS),
                f"HostKey {directory / 'host_ed25519'}",
                f"PidFile {directory / 'sshd.pid'}",
                f"AuthorizedKeysFile {directory / 'authorized_keys'}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                # The keys sit in a temporary directory, under a world-writable parent.
                "StrictModes no",
                "",
            ]
        )
    )
    ssh_config = directory / "ssh_config"
    ssh_config.write_text(
        "\n".join(
            [
                "Host *",
                f"  Port {port}",
                f"  User {getpass.getuser()}",
                f"  IdentityFile {directory / 'id_ed25519'}",
                "  IdentitiesOnly yes",
                "  StrictHostKeyChecking no",
                "  UserKnownHostsFile /dev/null",
                "  LogLevel ERROR",
                "",
            ]
        )
    )
    return sshd_config, ssh_config


def stop_sshd(process: subprocess.Popen) -> None:
    """Stop sshd's sessions (they outlive the listener), then sshd, each by pid."""
    with contextlib.suppress(psutil.Error):
        for session in psutil.Process(process.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                session.kill()
    stop_process(process, 10)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    """A private sshd on 127.0.0.1 and 127.0.0.2, key login only."""
    if not SSHD.exists() or shutil.which("ssh") is None:
        skip_or_fail("the ssh tests need sshd and ssh: apt install openssh-server")
    try:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    except PermissionError:
        skip_or_fail("sshd needs /run/sshd, which only root can create")
    directory = tmp_path_factory.mktemp("sshd")
    port = free_port()
    sshd_config, ssh_config = write_keys_and_configs(directory, port)
    log = directory / "sshd.log"
    process = subprocess.Popen(
        [str(SSHD), "-D", "-f", str(sshd_config), "-E", str(log)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        server = SSHServer(port, ssh_config, directory)
        deadline = time.monotonic() + 20
        while (answer := server.ssh(HOSTS[1], "echo $SSH_CONNECTION")).returncode != 0:
            assert process.poll() is None, f"sshd exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"no ssh login: {answer.stderr} {log.read_text()}"
            time.sleep(0.1)
        yield server
    finally:
        stop_sshd(process)


@dataclass
class Remote:
    """What the ipk-cluster commands of one test share: options and directories."""

    settings: dict[str, str]
    remote_dir: Path
    security: Path
    sshd: SSHServer

    def options(self, **changed: str | None) -> list[str]:
        """The settings as ipk-cluster options, some ``changed`` (``ssh_args=...`` for
        ``--ssh-args``; ``None`` leaves one out)."""
        settings = {**self.settings, **{k.replace("_", "-"): v for k, v in changed.items()}}
        return [f"--{name}={value}" for name, value in settings.items() if value]

    def start(self, *args: str, **changed: str | None) -> subprocess.CompletedProcess:
        """``ipk-cluster start --launcher ssh`` with this test's options."""
        return ipk_cluster("start", "--launcher", "ssh", *self.options(**changed), *args)

    def stop(self, *args: str) -> subprocess.CompletedProcess:
        """``ipk-cluster stop`` with the same ssh settings."""
        return ipk_cluster("stop", *self.options(), *args)


@pytest.fixture
def remote(sshd: SSHServer, ipython_dir: Path, tmp_path: Path) -> Iterator[Remote]:
    """ipk-cluster options for the two hosts; on the way out, every cluster stopped and
    any kernel left by a failed test killed by pid."""
    hosts = tmp_path / "hosts"
    hosts.write_text(f"# two machines\n{HOSTS[0]}\n{HOSTS[1]}:2\n")
    kernel = [
        "env",
        f"IPYTHONDIR={tmp_path / 'remote-ipython'}",
        f"PYTHONPATH={PACKAGE_ROOT}",
        sys.executable,
        "-m",
        "ipython_parallel_kernel.apps.kernel",
    ]
    remote_dir = tmp_path / "remote"
    settings = {
        "hosts": str(hosts),
        "ssh-args": f"-F {sshd.config}",
        "kernel-command": shlex.join(kernel),
        "SSHLauncher.remote_dir": str(remote_dir),
    }
    setting = Remote(settings, remote_dir, ipython_dir / "profile_default" / "security", sshd)
    try:
        yield setting
    finally:
        ipk_cluster("stop", "--all", "--timeout", "5", *setting.options())
        kill_leftovers(remote_dir)


def started(result: subprocess.CompletedProcess) -> tuple[Path, list[ConnectionInfo]]:
    """The cluster file ``ipk-cluster start`` reported, and its kernels."""
    assert result.returncode == 0, result.stderr
    match = re.search(r"^ipk-cluster ready: \d+ kernels?, cluster file (\S+)$", result.stdout, re.M)
    assert match, result.stdout
    return Path(match[1]), read_cluster_file(match[1])


def left_in(directory: Path) -> list[str]:
    """Connection files (not logs) left in ``directory``."""
    return sorted(path.name for path in directory.glob("*.json")) if directory.exists() else []


def test_kernels_run_on_each_host_of_the_hosts_file(remote):
    """-n 3 over 127.0.0.1 and 127.0.0.2:2: each kernel listens on its host's address,
    was started by an ssh session to that host, runs code, and is listed under it."""
    path, infos = started(remote.start("-n", "3", "--cluster-id", "s"))
    assert [info.ip for info in infos] == [HOSTS[0], HOSTS[1], HOSTS[1]]
    assert [info.launch_host for info in infos] == [HOSTS[0], HOSTS[1], HOSTS[1]]
    assert {info.launcher for info in infos} == {"ssh"}
    # Each local copy of a connection file, and the kernel's own on its host.
    assert all(Path(info.path).parent == remote.security for info in infos)
    assert len(left_in(remote.remote_dir)) == 3

    rc = ipp.Client(path, timeout=30)
    try:
        answers = rc[:].apply_sync(
            lambda: (os.getpid(), os.environ["SSH_CONNECTION"].split(), sys.argv)
        )
    finally:
        rc.close()
    for info, (pid, (client, _, server, port), argv) in zip(infos, answers, strict=True):
        assert pid == info.pid
        assert (server, int(port)) == (info.ip, remote.sshd.port)
        # The allow list names the client's address as the host saw the ssh session.
        assert argv[argv.index("--allow") + 1] == client == "127.0.0.1"

    ic = ipp.InteractiveCluster.from_file(path, timeout=30)
    try:
        ic.execute("import socket; name = socket.gethostname()")
        assert ic["name"] == [info.hostname for info in infos]
    finally:
        ic.disconnect()

    listing = ipk_cluster("list").stdout
    for index, info in enumerate(infos):
        row = (
            rf"^\s+{index}\s+{re.escape(info.ip)}:{info.port}\s+{re.escape(info.ip)}\s+{info.pid}\s"
        )
        assert re.search(row + r".*\sidle\s", listing, re.M), listing


def test_a_kernel_killed_on_its_host_is_named_dead_and_stop_cleans_both_ends(remote, sshd):
    """SIGKILL one kernel on 127.0.0.2 over ssh: list shows it dead, the client names
    its address; stop (a new process, from the cluster file) leaves no process and no
    connection file on either host."""
    path, infos = started(remote.start("-n", "3", "--cluster-id", "s"))
    victim = infos[2]
    address = re.escape(f"{victim.ip}:{victim.port}")
    rc = ipp.Client(path, timeout=30)
    try:
        killed = sshd.ssh(victim.ip, f"kill -KILL {victim.pid}")
        assert killed.returncode == 0, killed.stderr
        assert wait_gone([victim.pid]) == []
        with pytest.raises(ipp.CompositeError, match=rf"\[2:apply\] {address}: KernelDied"):
            rc[:].apply_sync(os.getpid)
    finally:
        rc.close()
    with pytest.raises(ConnectionFailed, match=rf"cannot connect to kernel {address}"):
        ipp.Client(path, timeout=30)
    listing = ipk_cluster("list").stdout
    assert re.search(rf"^\s+2\s+{address}\s+\S+\s+{victim.pid}\s.*\sdead\s", listing, re.M)
    assert len(re.findall(r"\sidle\s", listing)) == 2, listing

    result = remote.stop("--cluster-id", "s")
    assert result.returncode == 0, result.stderr
    assert wait_gone([info.pid for info in infos]) == []
    assert not path.exists()
    assert left_in(remote.security) == []
    # The killed kernel could not remove its own file there: stop did.
    assert left_in(remote.remote_dir) == []


def test_a_refused_ssh_is_one_line_naming_the_command(remote):
    """ssh to a port nobody listens on: exit 1, one line with the ssh command and what
    it printed, nothing started, no file left."""
    closed = free_port()
    result = remote.start(ssh_args=f"-F {remote.sshd.config} -p {closed}")
    assert result.returncode == 1
    first, *rest = result.stderr.strip().splitlines()
    assert f"-p {closed} 127.0.0.1 (starting 1 kernel) failed with status 255" in first
    assert "ssh -o BatchMode=yes -T -F " in first
    assert f"port {closed}: Connection refused" in first
    assert rest == ["The kernels it had started are stopped."]
    assert kernels_using(remote.remote_dir) == []
    assert left_in(remote.security) == []


def test_a_kernel_command_the_host_lacks_is_reported_with_what_it_printed(remote):
    """--kernel-command naming no program: exit 1 naming the kernel, its host and the
    error printed there; nothing left running, no connection file."""
    result = remote.start(kernel_command="no-such-ipk-kernel")
    assert result.returncode == 1
    assert re.search(
        r"kernel \d on 127\.0\.0\.[12] \(pid \d+\) exited before it was ready: "
        r".*no-such-ipk-kernel.*No such file or directory",
        result.stderr,
    ), result.stderr
    assert "Traceback" not in result.stderr
    assert kernels_using(remote.remote_dir) == []
    assert left_in(remote.security) == []
    assert left_in(remote.remote_dir) == []


def test_the_shipped_ssh_profile_starts_two_kernels_on_localhost(remote, ipython_dir):
    """--profile ssh, as shipped (only ssh's login and where the code is changed): two
    kernels through ssh localhost, from the hosts file it installs."""
    path, infos = started(remote.start("--profile", "ssh", hosts=None))
    assert (ipython_dir / "profile_ssh" / "hosts").read_text().count("localhost:2") == 1
    assert [info.launch_host for info in infos] == ["localhost", "localhost"]
    client = ipp.Client(path, timeout=30)
    try:
        assert client[:].apply_sync(os.getpid) == [info.pid for info in infos]
    finally:
        client.close()
    stopped = ipk_cluster("stop", "--profile", "ssh", *remote.options(hosts=None))
    assert stopped.returncode == 0, stopped.stderr
    assert wait_gone([info.pid for info in infos]) == []


def test_the_python_cluster_api_takes_the_ssh_launcher(remote):
    """Cluster(engines="ssh", config=...) starts kernels over ssh and stops them on exit."""
    settings = remote.settings
    config = Config(
        SSHLauncher={
            "hosts": settings["hosts"],
            "ssh_args": settings["ssh-args"],
            "kernel_command": settings["kernel-command"],
            "remote_dir": settings["SSHLauncher.remote_dir"],
        }
    )
    cluster = ipp.Cluster(engines="ssh", n=2, config=config)
    with cluster as rc:
        where = rc[:].apply_sync(lambda: os.environ["SSH_CONNECTION"].split()[2])
        pids = [info.pid for info in cluster.kernels()]
    assert where == list(HOSTS)
    assert wait_gone(pids) == []
    assert left_in(remote.remote_dir) == []


def test_one_refusing_host_stops_the_kernels_the_others_started(remote, tmp_path):
    """127.0.0.2 starts its kernels, 127.0.0.3 refuses ssh: the error names 127.0.0.3,
    and the kernels already running on 127.0.0.2 are stopped, their files removed."""
    hosts = tmp_path / "some-down"
    hosts.write_text(f"{HOSTS[1]}:2\n127.0.0.3\n")
    result = remote.start("-n", "3", hosts=str(hosts))
    assert result.returncode == 1
    assert re.search(
        r"-T -F \S+ 127\.0\.0\.3 \(starting 1 kernel\) failed with status 255: "
        r".*Connection refused",
        result.stderr,
    ), result.stderr
    assert len(list(remote.remote_dir.glob("*.log"))) == 2  # they did start there
    assert kernels_using(remote.remote_dir) == []
    assert left_in(remote.remote_dir) == []
    assert left_in(remote.security) == []


def test_stop_needs_no_ssh_settings_the_start_was_given(remote):
    """The cluster file records the ssh arguments each host was reached with: a plain
    ``ipk-cluster stop``, none of the start's options given, stops every kernel."""
    path, infos = started(remote.start("-n", "3", "--cluster-id", "s"))
    assert {tuple(info.launch_args or ()) for info in infos} == {("-F", str(remote.sshd.config))}
    result = ipk_cluster("stop", "--cluster-id", "s")
    assert result.returncode == 0, result.stderr
    assert wait_gone([info.pid for info in infos]) == []
    assert not path.exists()
    assert left_in(remote.remote_dir) == left_in(remote.security) == []


def test_stop_that_cannot_reach_a_host_keeps_the_cluster_file_and_says_why(remote):
    """stop when the hosts no longer answer ssh as they did (here: the recorded ssh
    arguments now name a closed port): exit 1, each host's ssh failure named, the
    cluster file kept; once the hosts answer again, stop cleans up."""
    path, infos = started(remote.start("-n", "2", "--cluster-id", "s"))
    closed = free_port()
    write_cluster_file(
        [dataclasses.replace(i, launch_args=[*i.launch_args, "-p", str(closed)]) for i in infos],
        path,
    )
    wrong = ipk_cluster("stop", "--cluster-id", "s")
    assert wrong.returncode == 1
    for host in HOSTS:
        assert f"-p {closed} {host} (stopping kernels) failed with status 255" in wrong.stderr
    assert f"cluster file {path} kept" in wrong.stderr
    assert path.exists()
    write_cluster_file(infos, path)
    right = remote.stop("--cluster-id", "s")
    assert right.returncode == 0, right.stderr
    assert wait_gone([info.pid for info in infos]) == []
    assert not path.exists()
    assert left_in(remote.remote_dir) == left_in(remote.security) == []
