"""``ipk-cluster``: start, list and stop a group of kernels as one cluster.

``ipk-cluster start -n 4`` starts four kernels, waits until each one answers, and
writes a cluster file (``ipk-cluster-<id>.json`` in the profile's ``security/``, mode
0600) that ``InteractiveCluster.from_file`` reads. The kernels run in the background
and outlive the command; the last line it prints is one scripts can wait for::

    $ ipk-cluster start -n 2
    [0] 127.0.0.1:41023 pid 4242
    [1] 127.0.0.1:41025 pid 4243
    ipk-cluster ready: 2 kernels, cluster file .../security/ipk-cluster-default.json

``ipk-cluster list`` shows every cluster of the profile and the state of each kernel;
``ipk-cluster stop`` asks each kernel to shut down, signals those that do not, and
removes the files. A cluster is named by ``--cluster-id`` (default ``default``), so
several can run side by side.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from textwrap import dedent

from traitlets import Bool, Float, Unicode
from traitlets.config import Application

from .. import __version__
from ..core.clusterfile import (
    check_cluster_id,
    cluster_file_path,
    cluster_id_of,
    list_cluster_files,
    read_cluster_file,
)
from ..core.connection import (
    ConnectionInfo,
    cluster_ready_line,
    count_kernels,
    format_address,
)
from ..core.profiles import install_shipped
from ..errors import ClusterRunning, LaunchError, LaunchTimeout
from ..launchers import LAUNCHERS
from ..launchers.cluster import (
    CONFIG_FILE,
    PROBE_TIMEOUT,
    Cluster,
    for_each,
    kernel_status,
)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], indent: str = "") -> str:
    """Left-aligned columns, as wide as their widest cell."""
    cells = [list(headers), *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


class ClusterCommand(Application):
    """What every ``ipk-cluster`` subcommand shares: profile, cluster id, errors."""

    version = __version__

    profile = Unicode(
        "default", help="IPython profile: its security/ holds the cluster files."
    ).tag(config=True)
    cluster_id = Unicode(
        "default", help="Name of the cluster, so that several can run side by side."
    ).tag(config=True)

    aliases = {
        "profile": "ClusterCommand.profile",
        "cluster-id": "ClusterCommand.cluster_id",
        "log-level": "Application.log_level",
    }

    def initialize(self, argv: list[str] | None = None) -> None:
        """Parse the command line, load the profile's config, check the settings."""
        self.parse_command_line(argv)
        self.init_profile()
        self.init_checks()

    def init_profile(self) -> None:
        """Load ``ipk_cluster_config.py`` from the profile, if there is one (a shipped
        profile's is copied there on its first use)."""
        directory = install_shipped(self.profile)
        if (directory / CONFIG_FILE).exists():
            self.load_config_file(CONFIG_FILE, path=[str(directory)])
            # The command line wins over the profile.
            self.update_config(self.cli_config)

    def init_checks(self) -> None:
        """Refuse settings that cannot work, before anything starts."""
        try:
            check_cluster_id(self.cluster_id)
        except ValueError as e:
            self.fail(str(e), status=2)
        if self.extra_args:
            self.fail(f"unexpected arguments: {' '.join(self.extra_args)}", status=2)

    def fail(self, message: str, status: int = 1) -> None:
        """Print an error (no traceback) and exit with ``status``."""
        print(f"{self.name}: {message}", file=sys.stderr, flush=True)
        self.exit(status)

    def profile_option(self) -> str:
        """`` --profile P`` when not the default, for commands we suggest."""
        return "" if self.profile == "default" else f" --profile {self.profile}"


class LauncherCommand(ClusterCommand):
    """A subcommand that starts or stops kernel processes, through a ``Cluster``."""

    classes = [Cluster, *LAUNCHERS.values()]
    aliases = {
        **ClusterCommand.aliases,
        "launcher": "Cluster.launcher",
        **{
            alias: trait
            for launcher in LAUNCHERS.values()
            for alias, trait in launcher.aliases.items()
        },
    }
    flags = {
        **Application.flags,
        **{
            flag: value for launcher in LAUNCHERS.values() for flag, value in launcher.flags.items()
        },
    }

    def cluster(self, cluster_id: str | None = None) -> Cluster:
        """The cluster this command works on, with the profile's and command line's settings."""
        return Cluster(
            parent=self,
            profile=self.profile,
            cluster_id=cluster_id or self.cluster_id,
            shutdown_atexit=False,  # the kernels outlive this command
        )

    def check_timeout(self, timeout: float) -> None:
        """Refuse a timeout that is not positive."""
        if timeout <= 0:
            self.fail(f"--timeout {timeout:g}: give a number of seconds above 0", status=2)


class StartCommand(LauncherCommand):
    """Start N kernels, wait until each answers, write the cluster file."""

    name = "ipk-cluster start"
    description = """Start N kernels in the background and write the cluster file.

    Waits (at most --timeout seconds) until every kernel answers, then prints one
    line per kernel and `ipk-cluster ready: N kernels, cluster file PATH`. If any
    kernel fails to start, the others are stopped and the exit status is 1.
    Arguments after `--` go to every kernel (see `ipk-kernel --help`).
    """
    examples = dedent("""
    ipk-cluster start -n 4
    ipk-cluster start -n 8 --cluster-id big --profile lan
    ipk-cluster start -n 2 -- --allow 10.0.0.0/8
    """)

    aliases = {
        **LauncherCommand.aliases,
        "n": "Cluster.n",
        "gui": "Cluster.gui",
        "timeout": "Cluster.timeout",
    }

    def parse_command_line(self, argv: list[str] | None = None) -> None:
        """Parse the command line; what follows ``--`` is kept for the kernels."""
        argv = list(sys.argv[1:] if argv is None else argv)
        if "--" in argv:
            at = argv.index("--")
            argv, self.passed_through = argv[:at], argv[at + 1 :]
        else:
            self.passed_through = []
        super().parse_command_line(argv)

    def init_checks(self) -> None:
        """Refuse a cluster of fewer than one kernel, or a timeout that is not positive."""
        super().init_checks()
        cluster = self.cluster()
        if cluster.n < 1:
            self.fail(f"-n {cluster.n}: a cluster needs at least one kernel", status=2)
        self.check_timeout(cluster.timeout)

    def start(self) -> None:
        """Start the kernels, check them, write the cluster file and report."""
        cluster = self.cluster()
        try:
            infos = cluster.start(self.passed_through)
        except ClusterRunning as e:
            self.fail(str(e))
        except KeyboardInterrupt:
            self.fail("interrupted; the kernels it had started are stopped")
        except LaunchTimeout as e:
            self.fail(
                f"{e} Gave up at --timeout {cluster.timeout:g} s; raise it if kernels are slow."
            )
        except LaunchError as e:
            self.fail(str(e))
        for index, info in enumerate(infos):
            print(f"[{index}] {format_address(info.reachable_address)} pid {info.pid}")
        print(cluster_ready_line(len(infos), cluster.path))
        print(
            "Use it from IPython: from ipython_parallel_kernel import InteractiveCluster; "
            f"ic = InteractiveCluster.from_file({str(cluster.path)!r})",
            flush=True,
        )


class ListCommand(ClusterCommand):
    """Show the clusters of a profile and the state of each kernel."""

    name = "ipk-cluster list"
    description = """Show every cluster of the profile: each kernel's address, host (as
    the launcher reached it: user@host for ssh), pid, MPI rank and batch job (if any),
    state (idle, busy, or dead if it does not answer within 2 s) and queue length."""
    examples = dedent("""
    ipk-cluster list
    ipk-cluster list --profile lan
    """)

    def start(self) -> None:
        """Print one table per cluster file in the profile."""
        paths = list_cluster_files(self.profile)
        if not paths:
            print(f"no clusters running in profile {self.profile}")
            return
        clusters: list[tuple[Path, list[ConnectionInfo] | ValueError]] = []
        for path in paths:
            try:
                clusters.append((path, read_cluster_file(path)))
            except ValueError as e:
                clusters.append((path, e))
        every = [info for _, infos in clusters if isinstance(infos, list) for info in infos]
        statuses = iter(for_each(kernel_status, every, PROBE_TIMEOUT))
        blocks = []
        for path, infos in clusters:
            if isinstance(infos, ValueError):
                blocks.append(f"cluster {cluster_id_of(path)}: {infos}")
                continue
            rows = []
            for index, info in enumerate(infos):
                status = next(statuses)
                if isinstance(status, BaseException):
                    state, queued = "dead", "-"
                else:
                    state, queued = status.get("state", "?"), status.get("queued", "?")
                rows.append(
                    [
                        index,
                        format_address(info.reachable_address),
                        # Where it was launched (user@node for ssh) says more than its
                        # hostname when several kernels share a name, or the name is local.
                        info.launch_host or info.hostname,
                        info.pid,
                        "-" if info.rank is None else info.rank,
                        info.job_id or "-",
                        state,
                        queued,
                    ]
                )
            header = (
                f"cluster {cluster_id_of(path)}: {count_kernels(len(infos))}, cluster file {path}"
            )
            if all(row[6] == "dead" for row in rows):
                header += (
                    f"\n  (every kernel is dead; clean up with: ipk-cluster stop "
                    f"--cluster-id {cluster_id_of(path)}{self.profile_option()})"
                )
            headers = ["target", "address", "host", "pid", "rank", "job", "state", "queue"]
            table = format_table(headers, rows, "  ")
            blocks.append(f"{header}\n{table}")
        print("\n\n".join(blocks), flush=True)


class StopCommand(LauncherCommand):
    """Shut down a cluster's kernels and remove its files."""

    name = "ipk-cluster stop"
    description = """Stop a cluster: ask each kernel to shut down, signal any that do
    not (SIGTERM, then SIGKILL after --timeout seconds), wait until every process is
    gone, and remove the cluster file and the kernels' connection files."""
    examples = dedent("""
    ipk-cluster stop
    ipk-cluster stop --cluster-id big
    ipk-cluster stop --all --profile lan
    """)

    all = Bool(False, help="Stop every cluster of the profile.").tag(config=True)
    timeout = Float(10.0, help="Seconds to wait after each signal.").tag(config=True)

    aliases = {**LauncherCommand.aliases, "timeout": "StopCommand.timeout"}
    flags = {
        **LauncherCommand.flags,
        "all": ({"StopCommand": {"all": True}}, "Stop every cluster of the profile."),
    }

    def init_checks(self) -> None:
        """Refuse a timeout that is not positive."""
        super().init_checks()
        self.check_timeout(self.timeout)

    def start(self) -> None:
        """Stop the chosen cluster (or all); exit 1 if any process would not go."""
        if self.all:
            paths = list_cluster_files(self.profile)
            if not paths:
                print(f"no clusters running in profile {self.profile}")
                return
        else:
            path = cluster_file_path(self.cluster_id, self.profile)
            if not path.exists():
                known = ", ".join(cluster_id_of(p) for p in list_cluster_files(self.profile))
                self.fail(
                    f"no cluster {self.cluster_id!r} in profile {self.profile}; "
                    + (f"clusters there: {known}" if known else "no clusters are running there")
                )
            paths = [path]
        results = [self.stop_cluster(path) for path in paths]
        if not all(results):
            self.exit(1)

    def stop_cluster(self, path: Path) -> bool:
        """Stop one cluster; False (with the reason printed) if that failed."""
        cluster_id = cluster_id_of(path)
        try:
            infos = self.cluster(cluster_id).stop(self.timeout)
        except (ValueError, LaunchError) as e:
            print(f"{self.name}: {e}", file=sys.stderr)
            return False
        pids = ", ".join(str(info.pid) for info in infos)
        print(
            f"stopped cluster {cluster_id}: {count_kernels(len(infos))} (pids {pids})", flush=True
        )
        return True


class ClusterApp(Application):
    """``ipk-cluster``: start, list and stop clusters of kernels."""

    name = "ipk-cluster"
    version = __version__
    description = """Start, list and stop clusters: groups of kernels driven together.

    `ipk-cluster start` starts N kernels in the background and writes a cluster file;
    InteractiveCluster.from_file(PATH) or `%kernel connect PATH` connects to all of
    them. Each subcommand has its own --help.
    """
    examples = dedent("""
    ipk-cluster start -n 4                  # 4 local kernels, cluster "default"
    ipk-cluster start -n 8 --cluster-id big --timeout 60
    ipk-cluster list                        # every cluster: kernels, pids, state, queue
    ipk-cluster stop                        # stop cluster "default"
    ipk-cluster stop --all                  # stop every cluster of the profile
    """)
    classes = [
        ClusterCommand,
        LauncherCommand,
        StartCommand,
        ListCommand,
        StopCommand,
        Cluster,
        *LAUNCHERS.values(),
    ]
    subcommands = {
        "start": (StartCommand, "Start N kernels (-n N, default 2) and write the cluster file."),
        "list": (ListCommand, "Show every cluster: each kernel's address, pid, state, queue."),
        "stop": (StopCommand, "Stop a cluster (--cluster-id ID, or --all) and remove its files."),
    }

    def start(self) -> None:
        """Run the subcommand; without one, show the help."""
        if self.subapp is None:
            if self.extra_args:
                message = f"unknown subcommand {self.extra_args[0]!r}; see {self.name} --help"
            else:
                self.print_help()
                message = "give a subcommand"
            print(f"{self.name}: {message} ({', '.join(self.subcommands)})", file=sys.stderr)
            self.exit(2)
        assert self.subapp is not None  # exit() raised otherwise
        self.subapp.start()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``ipk-cluster``."""
    app = ClusterApp.instance()
    app.initialize(argv)
    app.start()


if __name__ == "__main__":
    main()
