"""``%kernel gather`` and ``%kernel notify``: this session's ResultGatherer.

The gatherer shows, in this session, the records of kernels that notify it; it accepts
a kernel's records once it knows the kernel's key, from its connection file or from
the RemoteKernel this session holds.
"""

from __future__ import annotations

from IPython.core.error import UsageError

from ..client.cluster import InteractiveCluster
from ..client.gatherer import ResultGatherer
from ..core.connection import format_address
from ..errors import CompositeError

DEFAULT_GATHER_PORT = 10104


class SessionGatherer:
    """The gatherer one session runs (at most one), and which kernels notify it."""

    def __init__(self) -> None:
        self.gatherer: ResultGatherer | None = None

    def start(self, ip: str, port: int, active: InteractiveCluster | None) -> str:
        """Gather on ``ip:port`` (port 0: a free one), accepting ``active``'s kernels;
        the address gathered on."""
        if self.gatherer is not None:
            raise UsageError(
                f"already gathering on {format_address(self.gatherer.address)} "
                "(%kernel gather --stop first)"
            )
        try:
            gatherer = ResultGatherer((ip, port))
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot gather on {ip}:{port}: {e}") from None
        self.gatherer = gatherer.start()
        self.watch(active)
        return format_address(gatherer.address)

    def stop(self) -> str:
        """Stop gathering; the address it gathered on."""
        if self.gatherer is None:
            raise UsageError("no gatherer runs in this session")
        where = format_address(self.gatherer.address)
        self.close()
        return where

    def address(self) -> str:
        """Where this session gathers, for ``%kernel notify`` without an address."""
        if self.gatherer is None:
            raise UsageError(
                "notify where? give HOST:PORT, or run %kernel gather first to gather here"
            )
        return format_address(self.gatherer.address)

    def notify(self, cluster: InteractiveCluster, address: str, flag: bool) -> None:
        """Make ``cluster``'s kernels report (or, without ``flag``, stop reporting) to
        the gatherer at ``address``; when that is this session's, it accepts them."""
        try:
            cluster.notify(address, flag, block=True)
        except ValueError as e:
            raise UsageError(f"notify {address}: {e}") from None
        except CompositeError as e:
            raise UsageError(f"notify {address}: {e.errors[0][2]}") from None
        if self.gatherer is not None and address == format_address(self.gatherer.address):
            self.watch(cluster)

    def watch(self, cluster: InteractiveCluster | None) -> None:
        """Let the gatherer accept the records of ``cluster``'s kernels."""
        if self.gatherer is None:
            return
        for kernel in cluster or []:
            path = getattr(kernel.info, "path", None)
            try:
                if path:
                    self.gatherer.watch(path)
                    continue
            except (OSError, ValueError, KeyError, TypeError):
                pass
            # No readable connection file: the key this client connected with will do.
            if kernel.info.key:
                self.gatherer.add_key(kernel.info.key)

    def close(self) -> None:
        """Stop the gatherer, if one runs."""
        if self.gatherer is not None:
            self.gatherer.stop()
            self.gatherer = None
