"""Connection files: where a kernel is and the key that signs its messages.

A kernel writes ``ipk-kernel-<ip>-<port>.json`` into its profile's ``security/``
directory (``~/.ipython/profile_default/security/`` unless ``--profile`` says
otherwise). The file holds the key, so it is created with mode 0600 inside a 0700
directory: anyone who can read it can run code as you.

A client given only ``(ip, port)`` finds the key by looking for that file, as long as
it runs as the same user on the same machine; ``find_connection`` says where it looked
when it finds nothing.

A kernel that listens on all interfaces (``ip`` 0.0.0.0 or ::) also writes its
``location``: the address its machine's traffic to other machines leaves from. A
client connects to such a kernel at the loopback address on the kernel's own machine,
and at its ``location`` from any other (``reachable_address``).
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import KeyNotFound

PREFIX = "ipk-kernel-"
ANY_ADDRESS = ("0.0.0.0", "::")
# Documentation addresses (RFC 5737, RFC 3849): a UDP socket "connected" to one only
# looks up the route there, and sends nothing.
_ROUTE_PROBES = {socket.AF_INET: "192.0.2.1", socket.AF_INET6: "2001:db8::1"}

Address = tuple[str, int]


def ipython_dir() -> Path:
    """``$IPYTHONDIR``, or ``~/.ipython``."""
    return Path(os.environ.get("IPYTHONDIR") or Path.home() / ".ipython").expanduser()


def profile_dir(profile: str = "default") -> Path:
    """The directory of an IPython profile (not created)."""
    return ipython_dir() / f"profile_{profile}"


def security_dir(profile: str = "default") -> Path:
    """The profile's ``security/`` directory, created with mode 0700 if missing."""
    path = profile_dir(profile) / "security"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def parse_address(address: str | tuple[str, int] | list, *, any_port: bool = False) -> Address:
    """``("127.0.0.1", 10105)``, ``"127.0.0.1:10105"`` or ``"[::1]:10105"`` as a tuple."""
    if isinstance(address, tuple | list) and len(address) == 2:
        host, port = address
    elif isinstance(address, str) and ":" in address:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
    else:
        raise ValueError(
            f"{address!r} is not an address: give (ip, port) or 'host:port', "
            "e.g. ('127.0.0.1', 10105)"
        )
    try:
        if isinstance(port, float | bool):
            raise TypeError
        port = int(port)
    except (TypeError, ValueError):
        raise ValueError(f"port {port!r} of {address!r} is not a whole number") from None
    if not (0 if any_port else 1) <= port < 65536:
        raise ValueError(f"port {port} of {address!r} is out of range")
    return host, port


def format_address(address: Address) -> str:
    """``host:port``, with brackets around IPv6 hosts."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class ConnectionInfo:
    """Everything a client needs to reach one kernel."""

    ip: str
    port: int
    key: str
    tls: bool = False
    pid: int | None = None
    hostname: str = field(default_factory=socket.gethostname)
    profile: str = "default"
    signature_scheme: str = "hmac-sha256"
    tls_certificate: str | None = None
    #: The kernel signs array buffers and refuses unsigned ones: its clients must sign.
    sign_buffers: bool = False
    #: The kernel's rank in ``MPI.COMM_WORLD`` when it runs as an MPI rank.
    rank: int | None = None
    #: The batch job the kernel runs in (Slurm, Grid Engine), as the scheduler names it.
    job_id: str | None = None
    #: The launcher that started it (``ipk-cluster stop`` stops it the same way).
    launcher: str = "local"
    #: Where the launcher reached the kernel's host (``user@host`` for ssh), if not here.
    launch_host: str | None = None
    #: The arguments that reached ``launch_host`` (ssh's ``--ssh-args``): stopping the
    #: kernel from another process reaches it the same way.
    launch_args: list[str] | None = None
    #: For a kernel listening on all interfaces: where other machines reach its machine.
    location: str | None = None
    path: str | None = None

    @property
    def address(self) -> Address:
        """``(ip, port)`` as the kernel listens on them."""
        return (self.ip, self.port)

    @property
    def reachable_address(self) -> Address:
        """Where a client on this machine connects to the kernel: its ``address``, but for
        a kernel listening on all interfaces the loopback address on the kernel's own
        machine, and its ``location`` elsewhere.

        >>> info = ConnectionInfo("0.0.0.0", 10105, "k", hostname="node7", location="10.0.0.7")
        >>> info.reachable_address
        ('10.0.0.7', 10105)
        """
        if self.ip not in ANY_ADDRESS:
            return self.address
        if self.hostname == socket.gethostname():
            return ("::1" if self.ip == "::" else "127.0.0.1", self.port)
        return (self.location or self.ip, self.port)

    def to_dict(self) -> dict[str, Any]:
        """The JSON content of a connection file."""
        data = asdict(self)
        data.pop("path")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: str | None = None) -> ConnectionInfo:
        """Read back ``to_dict`` output, ignoring fields this version does not know."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "path": path})


def outward_address(wildcard: str = "0.0.0.0") -> str:
    """This machine's address for other machines, for a kernel listening on ``wildcard``
    (0.0.0.0 or ::): the one its traffic out leaves from; without a route out, the
    loopback address.

    >>> outward_address() != "0.0.0.0"
    True
    """
    family = socket.AF_INET6 if ":" in wildcard else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((_ROUTE_PROBES[family], 9))
            return str(probe.getsockname()[0])
    except OSError:
        return "::1" if family == socket.AF_INET6 else "127.0.0.1"


def connection_file_path(address: Address, profile: str = "default") -> Path:
    """Where the kernel at ``address`` writes its connection file by default."""
    host, port = address
    return security_dir(profile) / f"{PREFIX}{host}-{port}.json"


def write_json_private(data: Any, path: str | Path) -> Path:
    """Write ``data`` as JSON, atomically, with mode 0600 (it holds keys); return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".ipk-", dir=target.parent)  # created 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    return target


def write_connection_file(info: ConnectionInfo, path: str | Path | None = None) -> Path:
    """Write ``info`` where clients look for it (or at ``path``); return the path."""
    target = write_json_private(
        info.to_dict(), path or connection_file_path(info.address, info.profile)
    )
    info.path = str(target)
    return target


def read_connection_file(path: str | os.PathLike[str]) -> ConnectionInfo:
    """Load a connection file; ValueError says what is wrong with it."""
    path = Path(path).expanduser()
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("it does not hold a JSON object")
        return ConnectionInfo.from_dict(data, str(path))
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"cannot read connection file {path}: {e}") from None


def _candidates(profile: str | None) -> list[Path]:
    if profile is not None:
        return [profile_dir(profile) / "security"]
    others = ipython_dir().glob("profile_*")
    return [
        profile_dir("default") / "security",
        *sorted(p / "security" for p in others if p.name != "profile_default"),
    ]


def find_connection(address: Address, profile: str | None = None) -> ConnectionInfo:
    """The connection info of the kernel at ``address``, from its connection file.

    Looks in ``profile``'s security directory, or in every profile's with the default
    first, at plain kernels' files and at those of ``ipk-cluster`` kernels. A kernel bound
    to all interfaces (0.0.0.0) matches any address on its port. A file whose kernel is
    running on this machine wins; one whose pid is not running here is left over from a
    kernel that was killed, and is skipped: a new kernel may have the port since.
    """
    host, port = address
    try:
        hosts = {host, socket.gethostbyname(host)}
    except OSError:
        hosts = {host}
    places = _candidates(profile)
    unknown: list[ConnectionInfo] = []
    stale: list[ConnectionInfo] = []
    for directory in places:
        for path in _kernel_files(directory, port):
            try:
                info = read_connection_file(path)
            except ValueError:
                continue
            if info.port != port or not (info.ip in hosts or info.ip in ANY_ADDRESS):
                continue
            alive = _running_here(info)
            if alive:
                return info
            (unknown if alive is None else stale).append(info)
    if unknown:
        return unknown[0]
    where = ", ".join(str(p) for p in places) or str(ipython_dir())
    if stale:
        left = "; ".join(f"{info.path} (pid {info.pid})" for info in stale)
        raise KeyNotFound(
            f"no key for kernel {format_address(address)}: the only connection files for it "
            f"name processes no longer running on this machine, left by kernels that were "
            f"killed: {left}. Remove them, and pass key=..., or the running kernel's "
            "connection file instead of its address."
        )
    raise KeyNotFound(
        f"no key for kernel {format_address(address)}: no connection file for it in {where}. "
        "Pass key=..., or the kernel's connection file instead of its address."
    )


def _kernel_files(directory: Path, port: int) -> list[Path]:
    """Files in ``directory`` that may be the connection file for ``port``: plain kernels'
    (named by their port) first, then every other ``ipk-*`` file, as those of
    ``ipk-cluster`` kernels are named by cluster and index (cluster files, lists, are
    skipped when read)."""
    named = sorted(directory.glob(f"{PREFIX}*-{port}.json"))
    return named + sorted(set(directory.glob("ipk-*.json")) - set(named))


def _running_here(info: ConnectionInfo) -> bool | None:
    """Whether the kernel that wrote ``info`` still runs; None when this cannot be told
    (another machine's file, or no pid)."""
    if info.pid is None or info.hostname != socket.gethostname():
        return None
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process, but running
    return True


def stale_key_hint(info: ConnectionInfo) -> str:
    """What to tell a user whose key, read from ``info.path``, the kernel refused."""
    return (
        f"the key came from {info.path}, which may be stale (left by an earlier kernel on "
        "that port): remove it, or pass the running kernel's connection file"
    )


# -- ready lines ----------------------------------------------------------------------
#
# What ipk-kernel and ipk-cluster print on stdout once they serve, for scripts, launchers
# and tests to wait for:
#
#     ipk-kernel ready: 127.0.0.1:41023 pid 4242 connection file PATH
#     ipk-cluster ready: 2 kernels, cluster file PATH

KERNEL_READY = "ipk-kernel ready:"
CLUSTER_READY = "ipk-cluster ready:"


@dataclass(frozen=True)
class KernelReady:
    """What a kernel's ready line says.

    >>> KernelReady.parse("ipk-kernel ready: 127.0.0.1:41023 pid 42 connection file /k.json")
    KernelReady(address='127.0.0.1:41023', pid=42, connection_file='/k.json')
    """

    address: str
    pid: int
    connection_file: str

    def line(self) -> str:
        """The line as the kernel prints it."""
        return (
            f"{KERNEL_READY} {self.address} pid {self.pid} connection file {self.connection_file}"
        )

    @classmethod
    def parse(cls, line: str) -> KernelReady:
        """Read a kernel's ready line; ValueError if ``line`` is not one."""
        head, found, connection_file = line.strip().partition(" connection file ")
        words = head.split()
        if not line.startswith(KERNEL_READY) or not found or len(words) != 5:
            raise ValueError(f"not a ready line of ipk-kernel: {line!r}")
        return cls(words[2], int(words[4]), connection_file)


def count_kernels(n: int) -> str:
    """``1 kernel``, ``2 kernels``."""
    return f"{n} kernel" if n == 1 else f"{n} kernels"


def cluster_ready_line(kernels: int, cluster_file: str | Path) -> str:
    """The line ``ipk-cluster start`` prints once every kernel serves."""
    return f"{CLUSTER_READY} {count_kernels(kernels)}, cluster file {cluster_file}"


def parse_cluster_ready_line(line: str) -> str:
    """The cluster file named by ``ipk-cluster``'s ready line; ValueError if it is not one."""
    _, found, path = line.strip().partition(", cluster file ")
    if not line.startswith(CLUSTER_READY) or not found:
        raise ValueError(f"not a ready line of ipk-cluster: {line!r}")
    return path
