"""``MPI.COMM_WORLD`` for a kernel: collectives that wait without spinning a core.

A rank blocked in an Open MPI (or MPICH) collective polls the network in a tight loop:
three ranks waiting for a fourth keep every core of a laptop busy, and
``mpi_yield_when_idle`` does not change that. A kernel waits often (one rank still
runs its cell while the others have reached the ``bcast``), so each collective of
``PoliteIntracomm`` first waits, idle, until every rank has arrived::

    req = comm.Ibarrier()
    while not req.Test():
        time.sleep(POLL_INTERVAL)
    # every rank is here: the real collective now completes at once

The sleep is also where a kernel's interrupt lands (a SIGINT wakes it), so a cell
stuck in a collective that some rank never joins can be interrupted. The barrier an
interrupt abandons is not lost: the next collective on the same communicator waits
for that one instead of starting another, so every rank has started as many
barriers as the others whatever was interrupted, and the ranks stay in step.

Importing this module imports ``mpi4py``, which initializes MPI: only kernels that run
as MPI ranks import it.
"""

from __future__ import annotations

import time
from typing import Any

from mpi4py import MPI

#: Seconds between two tests of the barrier: short enough that a collective starts
#: within a couple of milliseconds of the last rank arriving, long enough that a
#: waiting rank uses about 1% of a core.
POLL_INTERVAL = 0.002

#: The collectives of ``MPI.Intracomm`` that every rank of the communicator must join
#: (mpi4py's pickling lowercase ones and its buffer uppercase ones).
COLLECTIVES = (
    "bcast",
    "Bcast",
    "scatter",
    "Scatter",
    "Scatterv",
    "gather",
    "Gather",
    "Gatherv",
    "allgather",
    "Allgather",
    "Allgatherv",
    "alltoall",
    "Alltoall",
    "Alltoallv",
    "Alltoallw",
    "reduce",
    "Reduce",
    "allreduce",
    "Allreduce",
    "Reduce_scatter",
    "Reduce_scatter_block",
    "scan",
    "Scan",
    "exscan",
    "Exscan",
    "Split",
    "Dup",
)


class PoliteIntracomm(MPI.Intracomm):
    """An intracommunicator (the same MPI handle as the one it is made from) whose
    collectives wait for every rank, idle and interruptible, before they run.

    >>> world = PoliteIntracomm(MPI.COMM_WORLD)
    >>> world.allreduce(world.rank)  # waits politely, then sums
    """

    def wait_for_all(self, timeout: float | None = None) -> bool:
        """Sleep until every rank of the communicator has called this too; False if
        ``timeout`` seconds passed first (the barrier stays pending for next time)."""
        pending: MPI.Request | None = getattr(self, "_pending", None)
        request = pending if pending is not None else self.Ibarrier()
        # Kept until it completes: an interrupt or a timeout leaves it for the next call.
        self._pending: MPI.Request | None = request
        deadline = None if timeout is None else time.monotonic() + timeout
        while not request.Test():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(POLL_INTERVAL)
        self._pending = None
        return True

    def barrier(self) -> None:
        """Wait, idle, until every rank has reached the barrier."""
        self.wait_for_all()

    def Barrier(self) -> None:
        """Wait, idle, until every rank has reached the barrier."""
        self.wait_for_all()


def _polite(name: str) -> Any:
    blocking = getattr(MPI.Intracomm, name)

    def collective(self: PoliteIntracomm, *args: Any, **kwargs: Any) -> Any:
        self.wait_for_all()
        return blocking(self, *args, **kwargs)

    collective.__name__ = collective.__qualname__ = name
    collective.__doc__ = f"``MPI.Intracomm.{name}``, once every rank has arrived.\n\n" + (
        blocking.__doc__ or ""
    )
    return collective


for _name in COLLECTIVES:
    setattr(PoliteIntracomm, _name, _polite(_name))


def install() -> PoliteIntracomm:
    """Make ``MPI.COMM_WORLD`` a ``PoliteIntracomm`` (what user code then imports)."""
    world = MPI.COMM_WORLD
    polite = world if isinstance(world, PoliteIntracomm) else PoliteIntracomm(world)
    # mpi4py declares it Final; replacing it is the point: code that imports it after
    # this gets the polite one.
    MPI.COMM_WORLD = polite  # type: ignore[misc]
    return polite
