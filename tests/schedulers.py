"""Real batch schedulers on this machine, for the launcher tests: Slurm and Grid Engine.

``SlurmCluster`` runs munged (as the munge user, on a private socket), slurmctld and
one slurmd as node ``localhost``, all configured under a directory of the test's; its
clients find it through ``SLURM_CONF``. ``GridEngine`` starts Debian's sge_qmaster and
sge_execd on the cell the gridengine packages created (``/var/lib/gridengine``), with
the few settings a one-machine cell needs. Each daemon is stopped by its pid at the
end; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from conftest import skip_or_fail

DAEMON_TIMEOUT = 30.0
POLL = 0.05


def wait_until(check: Callable[[], bool], what: str, timeout: float = DAEMON_TIMEOUT) -> None:
    """Poll ``check`` until it is true; RuntimeError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not after {timeout:g} s")
        time.sleep(POLL)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def stop_pids(pids: list[int], timeout: float = DAEMON_TIMEOUT) -> None:
    """SIGTERM ``pids`` together, then SIGKILL those still there after ``timeout``."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        with contextlib.suppress(RuntimeError):
            wait_until(lambda: not any(map(process_alive, pids)), f"pids {pids} to exit", timeout)
            return


def start_daemon(command: list[str], pid_file: Path, env: dict[str, str] | None = None) -> int:
    """Run a daemon that forks into the background; the pid it writes to ``pid_file``."""
    # A file an earlier daemon left would name a pid that is not this one.
    pid_file.unlink(missing_ok=True)
    run(command, env)
    wait_until(lambda: pid_file.exists() and pid_file.read_text().strip().isdigit(), f"{pid_file}")
    pid = int(pid_file.read_text().strip())
    if not process_alive(pid):
        raise RuntimeError(f"{command[0]} exited after writing {pid_file}")
    return pid


def run(command: list[str], env: dict[str, str] | None = None, timeout: float = 30.0) -> str:
    """Run a scheduler command; its stdout, or RuntimeError quoting what it printed."""
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {(done.stderr or done.stdout).strip()}")
    return done.stdout


SLURM_CONF = """\
ClusterName=ipk
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
ProctrackType={proctrack}
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# The node claims more CPUs than this small machine has, so small jobs never queue.
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname={hostname} CPUs=8 RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""

# cgroup v1 as mounted here; proctrack/cgroup kills every process of a job, even one
# that left the job's session.
CGROUP_CONF = """\
CgroupPlugin=cgroup/v1
CgroupAutomount=no
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
"""


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    """munged + slurmctld + slurmd, one node, configured under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.conf = directory / "slurm.conf"
        self.pids: list[int] = []
        self.munge_dir: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        """The environment for Slurm's client commands (and ``ipk-cluster``)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self) -> None:
        """Bring the daemons up and wait until the node is idle; stop them on failure."""
        try:
            self._start_munge()
            self._write_config()
            self.pids.append(
                start_daemon(
                    ["slurmctld", "-f", str(self.conf)], self.directory / "slurmctld.pid", self.env
                )
            )
            wait_until(self._controller_up, "slurmctld to answer")
            self.pids.append(
                start_daemon(
                    ["slurmd", "-f", str(self.conf), "-N", "localhost"],
                    self.directory / "slurmd.pid",
                    self.env,
                )
            )
            wait_until(self._node_idle, "the Slurm node to be idle")
        except BaseException:
            self.stop()
            raise

    def _start_munge(self) -> None:
        # munged runs as the munge user, who cannot enter pytest's private (0700)
        # directories: its files go to a directory of its own, removed by stop().
        munge = self.munge_dir = Path(tempfile.mkdtemp(prefix="ipk-munge-"))
        user = pwd.getpwnam("munge")
        os.chown(munge, user.pw_uid, user.pw_gid)
        munge.chmod(0o755)  # munged refuses a socket directory others cannot enter
        self.munge_socket = munge / "munge.socket.2"
        daemon = start_daemon(
            [
                "runuser",
                "-u",
                "munge",
                "--",
                "munged",
                f"--socket={self.munge_socket}",
                "--key-file=/etc/munge/munge.key",
                f"--log-file={munge}/munged.log",
                f"--pid-file={munge}/munged.pid",
                f"--seed-file={munge}/munged.seed",
            ],
            munge / "munged.pid",
        )
        self.pids.append(daemon)

    def _write_config(self) -> None:
        for sub in ("state", "spool"):
            (self.directory / sub).mkdir()
        freezer = Path("/sys/fs/cgroup/freezer")
        self.conf.write_text(
            SLURM_CONF.format(
                host=socket.gethostname().split(".")[0],
                hostname=socket.gethostname(),
                ctld_port=free_port(),
                slurmd_port=free_port(),
                munge_socket=self.munge_socket,
                dir=self.directory,
                proctrack="proctrack/cgroup" if freezer.is_dir() else "proctrack/linuxproc",
            )
        )
        (self.directory / "cgroup.conf").write_text(CGROUP_CONF)

    def _controller_up(self) -> bool:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            return "UP" in run(["scontrol", "ping"], self.env, timeout=5)
        return False

    def _node_idle(self) -> bool:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            return run(["sinfo", "-h", "-o", "%T"], self.env, timeout=5).strip() == "idle"
        return False

    def jobs(self) -> list[str]:
        """The ids of the jobs Slurm still runs or queues."""
        return run(["squeue", "-h", "-o", "%i"], self.env).split()

    def cancel(self, job_id: str) -> None:
        """Cancel a job, as its user would."""
        run(["scancel", job_id], self.env)

    def stop(self) -> None:
        """Cancel every job, then stop the daemons by pid."""
        if self._controller_up():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                run(["scancel", "--user", pwd.getpwuid(os.getuid()).pw_name], self.env)
                wait_until(lambda: not self.jobs(), "Slurm's jobs to end", 15)
        stop_pids(self.pids)
        self.pids.clear()
        if self.munge_dir is not None:
            shutil.rmtree(self.munge_dir, ignore_errors=True)


def require_mpi() -> None:
    """Skip (fail in CI) a test of --mpi where mpi4py or Open MPI is missing."""
    if importlib.util.find_spec("mpi4py") is None or missing_commands("mpiexec"):
        skip_or_fail(
            "--mpi needs mpi4py and Open MPI (pip install mpi4py; apt install openmpi-bin)"
        )


def check_ranks(cluster_file: Path) -> None:
    """The cluster's two kernels are ranks 0 and 1 of one COMM_WORLD: the cluster file
    says so, and a collective run on both at once proves it."""
    from ipython_parallel_kernel import InteractiveCluster
    from ipython_parallel_kernel.core.clusterfile import read_cluster_file

    assert [info.rank for info in read_cluster_file(cluster_file)] == [0, 1]
    ic = InteractiveCluster.from_file(cluster_file)
    try:
        ic.execute("from mpi4py import MPI; world = MPI.COMM_WORLD")
        seen = ic.execute("world.rank, world.size, world.allreduce(world.rank + 1)")
        assert [r.text for r in seen] == ["(0, 2, 3)", "(1, 2, 3)"]
    finally:
        ic.disconnect()


def check_start_use_list_stop(
    jobs: Callable[[], list[str]], launcher: str, profile: Path, code: str, expected: list[str]
) -> None:
    """``ipk-cluster start -n 2 --launcher LAUNCHER``: both kernels in one job, as the
    cluster file and ``list`` say; ``code`` run on each gives ``expected`` (sorted, with
    ``{job}`` for the job id); ``stop`` ends the job (``jobs()`` lists none) and every
    kernel."""
    from test_cluster_app import ipk_cluster, wait_gone

    from ipython_parallel_kernel import InteractiveCluster
    from ipython_parallel_kernel.core.clusterfile import read_cluster_file

    started = ipk_cluster("start", "-n", "2", "--launcher", launcher)
    assert started.returncode == 0, started.stderr
    path = profile / "security" / "ipk-cluster-default.json"
    infos = read_cluster_file(path)
    job = infos[0].job_id
    assert jobs() == [job]
    assert [(i.launcher, i.job_id) for i in infos] == [(launcher, job)] * 2
    ic = InteractiveCluster.from_file(path)
    try:
        seen = sorted(r.text for r in ic.execute(code))
        assert seen == [text.format(job=job) for text in expected]
    finally:
        ic.disconnect()
    listed = ipk_cluster("list")
    assert [row[5] for row in kernel_rows(listed.stdout)] == [job, job], listed.stdout
    stopped = ipk_cluster("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert wait_gone([i.pid for i in infos]) == []
    assert jobs() == []


def check_held_job_times_out(launcher: str, profile: Path, hold: str, said: str) -> None:
    """A job the scheduler keeps queued (held by the configuration line ``hold``) past
    ``--timeout 3`` is cancelled, with an error matching ``said`` (a pattern naming the
    job and its state) and saying how to wait longer."""
    from test_cluster_app import ipk_cluster

    profile.mkdir(parents=True)
    (profile / "ipk_cluster_config.py").write_text(hold + "\n")
    started = ipk_cluster("start", "-n", "1", "--launcher", launcher, "--timeout", "3")
    assert started.returncode == 1
    message = error_line(started.stderr)
    assert re.search(said, message), started.stderr
    assert "allow it longer with --timeout SECONDS" in message
    assert not (profile / "security" / "ipk-cluster-default.json").exists()


def check_missing_kernel_command_fails_fast(launcher: str, profile: Path, said: str) -> None:
    """With a kernel command that does not exist, the job ends at once (its kernels
    cannot start): the error matches ``said`` (a pattern naming the job and its state)
    and quotes the kernel's log, long before ``--timeout 60``."""
    from test_cluster_app import ipk_cluster

    from ipython_parallel_kernel.launchers import get_launcher

    profile.mkdir(parents=True)
    name = get_launcher(launcher).__name__
    (profile / "ipk_cluster_config.py").write_text(
        f"c.{name}.kernel_command = ['/nonexistent/python']\n"
    )
    began = time.monotonic()
    started = ipk_cluster("start", "-n", "2", "--launcher", launcher, "--timeout", "60")
    assert started.returncode == 1
    assert time.monotonic() - began < 20
    message = error_line(started.stderr)
    assert re.search(said, message), started.stderr
    assert "/nonexistent/python: No such file or directory" in message


def missing_commands(*names: str) -> list[str]:
    """Those of ``names`` that are not on PATH (nor in /usr/sbin)."""
    path = f"{os.environ.get('PATH', '')}:/usr/sbin"
    return [name for name in names if shutil.which(name, path=path) is None]


def error_line(stderr: str) -> str:
    """The line of ``ipk-cluster start``'s error among its progress bar's."""
    lines = [line for line in stderr.splitlines() if line.startswith("ipk-cluster start: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def kernel_rows(listing: str) -> list[list[str]]:
    """The cells of each kernel's row in ``ipk-cluster list``'s tables."""
    rows = [line.split() for line in listing.splitlines() if line.startswith("  ")]
    return [row for row in rows if row[0].isdigit()]


SGE_ROOT = Path("/var/lib/gridengine")
SGE_CELL = "default"
SGE_SPOOL = Path("/var/spool/gridengine")
#: Seconds the probe job of a cell just started may take to run (it takes about 1 s).
PROBE_TIMEOUT = 90.0

# A parallel environment whose N slots all come from one host; qconf insists on every
# line, qsort_args included.
SGE_PE = """\
pe_name            smp
slots              8
user_lists         NONE
xuser_lists        NONE
start_proc_args    NONE
stop_proc_args     NONE
allocation_rule    $pe_slots
control_slaves     TRUE
job_is_first_task  TRUE
urgency_slots      min
accounting_summary FALSE
qsort_args         NONE
"""


def with_settings(text: str, settings: dict[str, str]) -> str:
    """A ``qconf -s...`` listing of ``name value`` lines with ``settings`` put in."""
    lines = [
        f"{line.split()[0]} {settings[line.split()[0]]}"
        if line.strip() and line.split()[0] in settings
        else line
        for line in text.splitlines()
    ]
    return "\n".join(lines) + "\n"


# qconf adds a queue only from a complete definition: Debian's template, with 8 slots on
# this host, PE smp, and job scripts run by the shell their #! line names.
SGE_QUEUE = """\
qname                 all.q
hostlist              {host}
seq_no                0
load_thresholds       NONE
suspend_thresholds    NONE
nsuspend              1
suspend_interval      00:05:00
priority              0
min_cpu_interval      00:05:00
processors            UNDEFINED
qtype                 BATCH INTERACTIVE
ckpt_list             NONE
pe_list               smp
rerun                 FALSE
slots                 8
tmpdir                /tmp
shell                 /bin/bash
prolog                NONE
epilog                NONE
shell_start_mode      unix_behavior
starter_method        NONE
suspend_method        NONE
resume_method         NONE
terminate_method      NONE
notify                00:00:60
owner_list            NONE
user_lists            NONE
xuser_lists           NONE
subordinate_list      NONE
complex_values        NONE
projects              NONE
xprojects             NONE
calendar              NONE
initial_state         default
s_rt                  INFINITY
h_rt                  INFINITY
s_cpu                 INFINITY
h_cpu                 INFINITY
s_fsize               INFINITY
h_fsize               INFINITY
s_data                INFINITY
h_data                INFINITY
s_stack               INFINITY
h_stack               INFINITY
s_core                INFINITY
h_core                INFINITY
s_rss                 INFINITY
h_rss                 INFINITY
s_vmem                INFINITY
h_vmem                INFINITY
"""


class GridEngine:
    """sge_qmaster + sge_execd on the cell Debian's gridengine packages made.

    That cell lives in ``/var/lib/gridengine`` and ``/var/spool/gridengine``, not in a
    directory of the test's: ``start`` makes each setting idempotently (so a second
    run finds the cell as the first left it, ready), and ``stop`` deletes every job and
    stops both daemons by pid.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.host = socket.gethostname()
        self.pids: list[int] = []

    @property
    def env(self) -> dict[str, str]:
        """The environment for qsub, qstat, qdel and qconf (and ``ipk-cluster``)."""
        return {**os.environ, "SGE_ROOT": str(SGE_ROOT), "SGE_CELL": SGE_CELL}

    def start(self) -> None:
        """Bring the cell up with a queue and PE ``smp``; stop it again on failure."""
        self.directory.mkdir(parents=True, exist_ok=True)
        common = SGE_ROOT / SGE_CELL / "common"
        # A noninteractive install leaves the master's name empty, and the daemons see
        # clients on 127.0.0.1 as "localhost", which must be this host to be trusted.
        (common / "act_qmaster").write_text(f"{self.host}\n")
        (common / "host_aliases").write_text(f"{self.host} localhost\n")
        try:
            self.pids.append(
                start_daemon(
                    ["/usr/sbin/sge_qmaster"], SGE_SPOOL / "qmaster" / "qmaster.pid", self.env
                )
            )
            wait_until(self._master_up, "sge_qmaster to answer")
            self._configure()
            execd_pid = SGE_SPOOL / "execd" / "localhost" / "execd.pid"
            self.pids.append(start_daemon(["/usr/sbin/sge_execd"], execd_pid, self.env))
            wait_until(self._queue_up, "the all.q queue to take jobs")
            self._run_probe_job()
        except BaseException:
            self.stop()
            raise

    def _master_up(self) -> bool:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            run(["qconf", "-sh"], self.env, timeout=5)
            return True
        return False

    def _queue_up(self) -> bool:
        """Whether all.q on this host is listed with no state at all (no alarm, unknown,
        disabled or error): a queue that is only listed may still refuse every job."""
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            for line in run(["qstat", "-f", "-q", "all.q"], self.env, timeout=5).splitlines():
                fields = line.split()
                if fields and fields[0] == f"all.q@{self.host}":
                    return len(fields) == 5  # queue, qtype, slots, load, arch: no states
        return False

    def _run_probe_job(self) -> None:
        """Run one trivial job to its end: on a cell just made, a queue that looks ready
        can still keep its first jobs pending for a while."""
        probe = ["qsub", "-sync", "y", "-b", "y", "-N", "probe", "-o", "/dev/null"]
        try:
            run([*probe, "-e", "/dev/null", "/bin/true"], self.env, timeout=PROBE_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                f"Grid Engine's probe job did not run within {PROBE_TIMEOUT:g} s:\n"
                + run(["qstat", "-f", "-u", "*", "-explain", "aAcE"], self.env)
            ) from None

    def _qconf_file(self, option: str, name: str, text: str) -> None:
        # qconf reads objects from files, and names a configuration after its file.
        path = self.directory / name
        path.write_text(text)
        run(["qconf", option, str(path)], self.env)

    def _configure(self) -> None:
        # min_uid 0: jobs of root are refused otherwise. login_shells none: no login
        # shell (and its profile scripts) around each job.
        self._qconf_file(
            "-Mconf",
            "global",
            with_settings(
                run(["qconf", "-sconf"], self.env),
                {"min_uid": "0", "min_gid": "0", "mailer": "/bin/true", "login_shells": "none"},
            ),
        )
        # The default 15 s scheduling interval would make every test wait that long.
        self._qconf_file(
            "-Msconf",
            "scheduler",
            with_settings(
                run(["qconf", "-ssconf"], self.env),
                {
                    "schedule_interval": "0:0:1",
                    "flush_submit_sec": "1",
                    "flush_finish_sec": "1",
                    # A busy test machine must not hold jobs back for its load.
                    "job_load_adjustments": "NONE",
                },
            ),
        )
        hosts = run(["qconf", "-sh"], self.env)
        if self.host not in hosts.split():
            run(["qconf", "-ah", self.host], self.env)
        submit_hosts = ""
        with contextlib.suppress(RuntimeError):
            submit_hosts = run(["qconf", "-ss"], self.env)
        if self.host not in submit_hosts.split():
            run(["qconf", "-as", self.host], self.env)
        known_pes = ""
        with contextlib.suppress(RuntimeError):
            known_pes = run(["qconf", "-spl"], self.env)
        self._qconf_file("-Mp" if "smp" in known_pes.split() else "-Ap", "smp", SGE_PE)
        known_queues = ""
        with contextlib.suppress(RuntimeError):
            known_queues = run(["qconf", "-sql"], self.env)
        self._qconf_file(
            "-Mq" if "all.q" in known_queues.split() else "-Aq",
            "all.q",
            SGE_QUEUE.format(host=self.host),
        )

    def jobs(self) -> list[str]:
        """The ids of the jobs Grid Engine still runs or queues."""
        lines = run(["qstat", "-u", "*"], self.env).splitlines()[2:]
        return [line.split()[0] for line in lines if line.strip()]

    def stop(self) -> None:
        """Delete every job, then stop execd and qmaster by pid."""
        if self._master_up():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                if self.jobs():
                    run(["qdel", "-f", "-u", "*"], self.env)
                wait_until(lambda: not self.jobs(), "Grid Engine's jobs to end", 15)
        stop_pids(self.pids)
        self.pids.clear()


Scheduler = TypeVar("Scheduler", SlurmCluster, GridEngine)


@contextlib.contextmanager
def running(scheduler: Scheduler) -> Iterator[Scheduler]:
    """``scheduler`` (a ``SlurmCluster`` or ``GridEngine``) started for the duration of
    the ``with``, and stopped after it."""
    scheduler.start()
    try:
        yield scheduler
    finally:
        scheduler.stop()
