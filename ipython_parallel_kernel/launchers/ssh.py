"""Kernels on other machines, started over ssh from a hosts file.

``ipk-cluster start --launcher ssh --hosts FILE -n 4`` deals the kernels out over the
hosts of ``FILE`` (see ``hostfile``) and, for each host, runs one ssh command that
starts all of its kernels in the background and returns at once, then one that waits
until they are ready and sends back their connection files, which are copied into
this machine's profile ``security/`` (the cluster file points at the copies)::

    ssh -o BatchMode=yes -T [--ssh-args] user@node1 sh -s   < start script
    ssh -o BatchMode=yes -T [--ssh-args] user@node1 sh -s   < wait script

Every ssh call runs in BatchMode: a host that would ask for a password or a host key
confirmation fails at once instead of waiting for an answer nobody types.

Each kernel listens on the address this machine reaches its host at (``ssh -G`` gives
the ``HostName`` behind an alias, resolved here), so clients connect to it directly,
and it accepts clients from the address this machine has as the host sees it (the
first field of ``$SSH_CONNECTION`` there), besides localhost. Its log and connection
file stay on the host, in ``remote_dir``. The kernels are stopped over ssh too, by pid
(SIGTERM, then SIGKILL), by ``ipk-cluster stop`` in any later process: the cluster
file records each kernel's host (``launch_host``), the ssh arguments that reached it
(``launch_args``) and its pid.
"""

from __future__ import annotations

import json
import os
import posixpath
import shlex
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from traitlets import Float, Unicode

from ..core.connection import ConnectionInfo, count_kernels, write_connection_file
from ..errors import LaunchError, LaunchTimeout
from .base import (
    LaunchedKernel,
    Launcher,
    ShellWords,
    Stoppable,
    final_line,
    one_line,
    remove_file,
)
from .hostfile import Host, place, read_hosts_file
from .remote import (
    Launch,
    Waiting,
    read_left,
    read_outcomes,
    read_pids,
    start_script,
    stop_script,
    wait_script,
)

#: Options of every ssh call, before the user's: ssh keeps the first value it is given
#: for an option, so nothing in ``ssh_args`` or a config file can turn prompting back on.
SSH_OPTIONS = ("-o", "BatchMode=yes", "-T")
#: How the scripts run on the host (fed on standard input).
REMOTE_SHELL = ("sh", "-s")


@dataclass
class SSHKernel(LaunchedKernel):
    """A kernel started on another host: its ``log_path`` is a path there, its
    ``connection_file`` the local copy made once it is ready."""

    host: str = ""
    remote_connection_file: str = ""
    #: Known to be gone (stopped, or it exited): a second stop need not ask its host.
    gone: bool = False


@dataclass
class _Target:
    """One kernel to stop: where it runs, and its connection files there and here."""

    host: str
    pid: int
    remote_files: list[str]
    local_file: str | None
    #: The kernel as this process launched it (None: read from a cluster file).
    launched: SSHKernel | None = None
    #: The ssh arguments that reached its host (None: the configured ones).
    ssh_args: list[str] | None = None

    def stopped(self) -> None:
        """It is gone: remove its file here, and remember it is gone."""
        remove_file(self.local_file)
        if self.launched is not None:
            self.launched.gone = True


@dataclass
class _Result:
    """How one ssh command ended."""

    #: The ssh command, without the remote shell it runs.
    command: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    #: Why there is no return code: ssh could not be run, or was killed at its deadline.
    problem: str = ""


class SSHLauncher(Launcher):
    """Kernels on the hosts of a hosts file, started and stopped over ssh."""

    name = "ssh"
    aliases = {
        "hosts": "SSHLauncher.hosts",
        "ssh-args": "SSHLauncher.ssh_args",
        "kernel-command": "SSHLauncher.kernel_command",
    }

    hosts = Unicode(
        help="Hosts file: one host per line (host, host:N, user@host, user@host:N); "
        "-n kernels are dealt out over its slots, one per host per round, starting "
        "again from the first host once every slot is taken."
    ).tag(config=True)
    ssh_args = ShellWords(
        Unicode(),
        help="More arguments for every ssh call, as a list or one string split as the "
        "shell would (e.g. '-F ~/.ssh/cluster_config -i ~/.ssh/id_cluster').",
    ).tag(config=True)
    kernel_command = Unicode(
        "ipk-kernel",
        help="How a host starts a kernel, as its shell reads it, e.g. "
        "'/opt/venv/bin/ipk-kernel' or '/opt/venv/bin/python -m "
        "ipython_parallel_kernel.apps.kernel'. It must become the kernel process (a "
        "program or exec, not a script that forks).",
    ).tag(config=True)
    remote_dir = Unicode(
        ".ipk-cluster",
        help="Directory on each host for its kernels' logs and connection files: "
        "relative to the home directory there, or absolute.",
    ).tag(config=True)
    ssh_timeout = Float(
        30.0,
        help="Seconds each ssh command may take to connect and run (waiting for "
        "kernels to be ready gets the cluster's timeout on top); then it is killed.",
    ).tag(config=True)

    def ssh_words(self) -> list[str]:
        """``ssh_args`` with ``~`` expanded, as the shell would have: no shell runs ssh
        here to expand ``~/.ssh/...``."""
        return [
            os.path.expanduser(word) if word.startswith("~") else word for word in self.ssh_args
        ]

    def ssh_command(self, host: str, ssh_args: Sequence[str] | None = None) -> list[str]:
        """The ssh command line that runs a script (given on stdin) on ``host``, with
        ``ssh_args`` or, when None, the configured ``ssh_args``."""
        extra = self.ssh_words() if ssh_args is None else list(ssh_args)
        return ["ssh", *SSH_OPTIONS, *extra, host, *REMOTE_SHELL]

    def _remote_path(self, name: str) -> str:
        directory = self.remote_dir.removeprefix("~/") or "."
        return posixpath.join(directory, name)

    # -- running scripts ------------------------------------------------------------

    def _run(
        self,
        scripts: dict[str, str],
        timeout: float,
        ssh_args: dict[str, list[str] | None] | None = None,
    ) -> dict[str, _Result]:
        """Run each host's script at once (with that host's ``ssh_args`` where given);
        how each ended (a command still running at ``timeout`` is killed)."""
        processes = {}
        results = {}
        commands = {host: self.ssh_command(host, (ssh_args or {}).get(host)) for host in scripts}
        shown = {host: command[: -len(REMOTE_SHELL)] for host, command in commands.items()}
        for host, script in scripts.items():
            # From a file rather than a pipe: ssh reads it at its own pace, so no
            # script, however long, can block us while the others start.
            with tempfile.TemporaryFile("w+") as stdin:
                stdin.write(script)
                stdin.seek(0)
                try:
                    processes[host] = subprocess.Popen(
                        commands[host],
                        stdin=stdin,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                except OSError as e:
                    problem = f"could not be run: {e}"
                    results[host] = _Result(shown[host], None, "", "", problem)
        deadline = time.monotonic() + timeout
        for host, process in processes.items():
            try:
                stdout, stderr = process.communicate(timeout=max(0.0, deadline - time.monotonic()))
                results[host] = _Result(shown[host], process.returncode, stdout, stderr)
            except subprocess.TimeoutExpired:
                process.kill()
                stdout, stderr = process.communicate()
                problem = f"did not finish within {timeout:g} s"
                results[host] = _Result(shown[host], None, stdout, stderr, problem)
        return results

    def _ssh_failure(self, result: _Result, doing: str) -> str:
        """One line: which ssh command failed while ``doing`` what, and what it said."""
        what = result.problem or f"failed with status {result.returncode}"
        return f"{shlex.join(result.command)} ({doing}) {what}: {one_line(result.stderr)}"

    # -- start ----------------------------------------------------------------------

    def start(
        self, n: int, kernel_args: list[str], log_dir: Path, first: int = 0
    ) -> list[LaunchedKernel]:
        """Start ``n`` kernels over the hosts file's slots: one ssh command per host,
        each returning as soon as its kernels run in the background."""
        hosts = self._read_hosts()
        placed = place(hosts, first, n)
        ips = {host.target: self._address_of(host) for host in hosts if host in placed}
        planned: dict[str, list[SSHKernel]] = {}
        launches: dict[str, list[Launch]] = {}
        for index, host in zip(range(first, first + n), placed, strict=True):
            kernel = self._planned_kernel(index, host.target)
            command = self._kernel_command(ips[host.target], kernel, kernel_args)
            planned.setdefault(host.target, []).append(kernel)
            launches.setdefault(host.target, []).append(
                Launch(index, command, str(kernel.log_path))
            )
        directory = self._remote_path("")
        scripts = {target: start_script(directory, launches[target]) for target in launches}
        started: list[LaunchedKernel] = []
        errors = []
        for target, result in self._run(scripts, self.ssh_timeout).items():
            pids = read_pids(result.stdout)
            for kernel in planned[target]:
                if kernel.index in pids:
                    kernel.pid = pids[kernel.index]
                    started.append(kernel)
            if result.returncode != 0 or len(pids) < len(planned[target]):
                doing = f"starting {count_kernels(len(planned[target]))}"
                errors.append(self._ssh_failure(result, doing))
        if errors:
            self.stop(started, timeout=5.0)
            more = f" (and {len(errors) - 1} more hosts failed)" if len(errors) > 1 else ""
            raise LaunchError(errors[0] + more)
        return sorted(started, key=lambda kernel: kernel.index)

    def _planned_kernel(self, index: int, target: str) -> SSHKernel:
        """Kernel ``index`` on ``target``, before it is started (pid 0)."""
        return SSHKernel(
            index,
            0,
            Path(self._remote_path(self.log_path(Path(), index).name)),
            self.connection_file(index),
            host=target,
            remote_connection_file=self._remote_path(self.connection_file(index).name),
        )

    def _read_hosts(self) -> list[Host]:
        if not self.hosts:
            raise LaunchError(
                "the ssh launcher needs a hosts file: --hosts FILE, or c.SSHLauncher.hosts "
                "in the profile's ipk_cluster_config.py"
            )
        try:
            return read_hosts_file(self.hosts)
        except ValueError as e:
            raise LaunchError(str(e)) from None

    def _address_of(self, host: Host) -> str:
        """The IP address this machine reaches ``host`` at: its ``HostName`` as ssh's
        configuration gives it (``ssh -G``, which connects nowhere), resolved here."""
        name = host.hostname
        command = ["ssh", "-G", *self.ssh_command(host.target)[1 : -len(REMOTE_SHELL)]]
        try:
            shown = subprocess.run(
                command, capture_output=True, text=True, timeout=self.ssh_timeout
            ).stdout
            given = [line.split()[1] for line in shown.splitlines() if line.startswith("hostname ")]
            name = given[0] if given else name
        except (OSError, subprocess.TimeoutExpired):
            pass  # an ssh without -G: the name as the hosts file gives it
        try:
            return str(socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)[0][4][0])
        except OSError as e:
            raise LaunchError(f"cannot resolve {name} (host {host.target}): {e}") from None

    def _kernel_command(self, ip: str, kernel: SSHKernel, kernel_args: list[str]) -> str:
        """The kernel's command line, as the host's sh reads it: the configured command
        (not quoted: it may hold several words), then our quoted arguments."""
        args = [
            "--port",
            "0",
            "--ip",
            ip,
            "--connection-file",
            kernel.remote_connection_file,
            "--profile",
            self.profile,
            *kernel_args,
        ]
        # Expanded by the host's sh: the client's address as the host sees it.
        allow = '--allow "${SSH_CONNECTION%% *}"'
        return f"{self.kernel_command} {shlex.join(args)} {allow}"

    # -- ready ----------------------------------------------------------------------

    def wait_ready(self, kernels: Sequence[LaunchedKernel], timeout: float) -> list[ConnectionInfo]:
        """Wait (one ssh command per host) until every kernel is ready; their infos,
        each with a local copy of its connection file.

        On a kernel that exits first or is late, every kernel is stopped and
        LaunchError (LaunchTimeout) names the kernel, its host and its log's last line.
        """
        ours = [self._as_ssh_kernel(kernel) for kernel in kernels]
        by_host: dict[str, list[SSHKernel]] = {}
        for kernel in ours:
            by_host.setdefault(kernel.host, []).append(kernel)
        scripts = {
            host: wait_script(
                timeout,
                [
                    Waiting(k.index, k.pid, str(k.log_path), k.remote_connection_file)
                    for k in waiting
                ],
            )
            for host, waiting in by_host.items()
        }
        try:
            results = self._run(scripts, timeout + self.ssh_timeout)
            infos = {}
            for host, result in results.items():
                infos.update(self._read_ready(result, by_host[host]))
            return [infos[kernel.index] for kernel in ours]
        except BaseException:
            self.stop(ours, timeout=5.0)
            raise

    def _read_ready(self, result: _Result, kernels: list[SSHKernel]) -> dict[int, ConnectionInfo]:
        """The infos of one host's kernels from its wait script's output; LaunchError
        for the first that failed."""
        by_index = {kernel.index: kernel for kernel in kernels}
        infos = {}
        for outcome in read_outcomes(result.stdout):
            kernel = by_index[outcome.index]
            where = f"kernel {kernel.index} on {kernel.host} (pid {kernel.pid})"
            if outcome.kind == "file":
                infos[kernel.index] = self._copy_connection_file(kernel, outcome.text, where)
                continue
            last = final_line(outcome.text)
            said = f": {last}" if last else " (its log is empty)"
            log = f"log there: {kernel.log_path}"
            if outcome.kind == "exited":
                raise LaunchError(f"{where} exited before it was ready{said} ({log})")
            raise LaunchTimeout(f"{where} was not ready in time{said} ({log})")
        if len(infos) < len(kernels):
            raise LaunchError(self._ssh_failure(result, f"waiting for {len(kernels)} kernels"))
        return infos

    def _copy_connection_file(self, kernel: SSHKernel, text: str, where: str) -> ConnectionInfo:
        try:
            info = ConnectionInfo.from_dict(json.loads(text))
        except (ValueError, TypeError) as e:
            raise LaunchError(
                f"{where} is ready, but its connection file {kernel.remote_connection_file} "
                f"there cannot be read: {e}"
            ) from None
        info.launcher = self.name
        info.launch_host = kernel.host
        info.launch_args = self.ssh_words()
        write_connection_file(info, kernel.connection_file)
        return info

    def _as_ssh_kernel(self, kernel: LaunchedKernel) -> SSHKernel:
        if not isinstance(kernel, SSHKernel):
            raise TypeError(f"the ssh launcher did not start {kernel!r}")
        return kernel

    # -- running, stop --------------------------------------------------------------

    def stop(self, kernels: Sequence[Stoppable], timeout: float, grace: float = 0.0) -> list[int]:
        """Stop kernels over ssh, one command per host: SIGTERM, wait up to ``timeout``,
        SIGKILL; remove their connection files there and here.

        Returns the pids still alive after that, and those on hosts ssh could not reach
        (each such host is logged as a warning with what ssh said).
        """
        by_host: dict[str, list[_Target]] = {}
        left: list[int] = []
        for target in map(self._target, kernels):
            if not target.pid or (target.launched is not None and target.launched.gone):
                target.stopped()
            elif not target.host:
                self.log.warning("kernel pid %s has no launch host: cannot stop it", target.pid)
                left.append(target.pid)
            else:
                by_host.setdefault(target.host, []).append(target)
        scripts = {
            host: stop_script(grace, timeout, [(t.pid, t.remote_files) for t in targets])
            for host, targets in by_host.items()
        }
        # Each host is reached as its first kernel was: one ssh call per host.
        ssh_args = {host: targets[0].ssh_args for host, targets in by_host.items()}
        allowed = grace + 2 * timeout + self.ssh_timeout
        results = self._run(scripts, allowed, ssh_args) if scripts else {}
        for host, result in results.items():
            alive = read_left(result.stdout)
            if alive is None:
                self.log.warning("%s", self._ssh_failure(result, "stopping kernels"))
                alive = [target.pid for target in by_host[host]]
            left += alive
            for target in by_host[host]:
                if target.pid not in alive:
                    target.stopped()
        return left

    def _target(self, kernel: Stoppable) -> _Target:
        if isinstance(kernel, ConnectionInfo):
            # A kernel of a cluster file: its file there is named as its copy here.
            local = kernel.path
            remote = [self._remote_path(Path(local).name)] if local else []
            host = kernel.launch_host or ""
            return _Target(host, kernel.pid or 0, remote, local, ssh_args=kernel.launch_args)
        ssh_kernel = self._as_ssh_kernel(kernel)
        return _Target(
            ssh_kernel.host,
            ssh_kernel.pid,
            [ssh_kernel.remote_connection_file],
            str(ssh_kernel.connection_file),
            ssh_kernel,
        )
