"""A kernel that runs as an MPI rank: its rank, its world, and values sent over MPI.

``mpiexec -n 4 ipk-kernel ...`` (or ``srun --mpi=pmix``) starts four kernels that are
the ranks of one ``MPI.COMM_WORLD``. The process manager says so in the environment
(``rank_from_environment``); such a kernel then joins the world with mpi4py before any
user code runs (``join_world``): ``MPI.COMM_WORLD`` becomes a ``PoliteIntracomm``, whose
collectives wait without spinning a core and can be interrupted, and the ranks agree
on a name for their world, so that a client can tell which kernels share one.

Kernels of one world send each other values over MPI (``MPIWorld.broadcast``): a numpy
array as its raw buffer (``Bcast``, shared memory between ranks of one machine), any
other value pickled (``bcast``). Every kernel taking part runs the same request.

Ending: ``MPI_Finalize`` is collective, and a rank waiting in it spins a core. So a
kernel that stops waits politely (``FINALIZE_WAIT``) for the other ranks to stop too,
and finalizes only if they did; if they did not, it exits without finalizing, and the
process manager then ends the whole world (a world lives and dies together).
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: Where process managers put the rank: PMIx (Open MPI, Slurm's pmix), Open MPI's own
#: name, then PMI (MPICH, Intel MPI).
RANK_VARIABLES = ("PMIX_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK")
#: Seconds a stopping kernel waits for the other ranks before exiting without them.
FINALIZE_WAIT = 5.0


def rank_from_environment(environ: dict[str, str] | os._Environ[str] = os.environ) -> int | None:
    """The MPI rank a process manager gave this process, or None outside MPI."""
    for name in RANK_VARIABLES:
        value = environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None


@dataclass
class MPIWorld:
    """This kernel's place in ``MPI.COMM_WORLD``: rank, size, the world's name, and
    the polite communicator user code sees as ``MPI.COMM_WORLD``."""

    comm: Any
    rank: int
    size: int
    #: The same random name on every rank of one world: kernels whose names differ
    #: are not ranks of one world, whatever their ranks are.
    name: str
    #: Communicators of subsets of the world, by their ranks in order.
    _groups: dict[tuple[int, ...], Any] = field(default_factory=dict, repr=False)

    def describe(self) -> dict[str, Any]:
        """What ``status()`` tells about it."""
        return {"rank": self.rank, "size": self.size, "mpi_world": self.name}

    def broadcast(self, namespace: dict[str, Any], name: str, root: int, ranks: list[int]) -> None:
        """Bind ``name`` on every rank of ``ranks`` to its value on rank ``root``.

        Every rank in ``ranks`` (``root`` among them, in the same order everywhere)
        calls this with the same arguments. An array travels as its buffer, after its
        shape and dtype; anything else pickled. NameError on ``root`` if it has no
        ``name``, RuntimeError on the others.
        """
        if self.rank not in ranks or root not in ranks:
            raise ValueError(f"rank {self.rank}: ranks {ranks} must include it and root {root}")
        comm = self._communicator(ranks)
        position = ranks.index(root)
        if self.rank == root:
            array = _plain_array(namespace.get(name))
            if name not in namespace:
                header: tuple[Any, ...] = ("missing",)
            elif array is not None:
                header = ("array", array.shape, array.dtype.str)
            else:
                header = ("object", namespace[name])
            comm.bcast(header, position)
            if header[0] == "missing":
                raise NameError(f"name {name!r} is not defined")
            if array is not None:
                comm.Bcast(array, position)
            return
        header = comm.bcast(None, position)
        if header[0] == "missing":
            raise RuntimeError(f"rank {root} has no {name!r} to send")
        if header[0] == "array":
            import numpy

            value = numpy.empty(header[1], dtype=numpy.dtype(header[2]))
            comm.Bcast(value, position)
        else:
            value = header[1]
        namespace[name] = value

    def _communicator(self, ranks: list[int]) -> Any:
        """A communicator of exactly ``ranks`` (the world itself for all of them)."""
        if ranks == list(range(self.size)):
            return self.comm
        key = tuple(ranks)
        if key not in self._groups:
            from .politecomm import PoliteIntracomm

            group = self.comm.Get_group().Incl(ranks)
            # Collective over the members only, so ranks outside go on undisturbed. It
            # blocks (spinning) until every member calls it; made once per set of ranks.
            self._groups[key] = PoliteIntracomm(self.comm.Create_group(group))
            group.Free()
        return self._groups[key]


def _plain_array(value: Any) -> Any:
    """``value`` as a C-contiguous numpy array if it is a numpy array of plain numbers
    (what ``Bcast`` can send as bytes), else None."""
    if type(value).__module__ != "numpy" or not hasattr(value, "dtype"):
        return None
    import numpy

    if not isinstance(value, numpy.ndarray) or value.dtype.hasobject:
        return None
    return numpy.ascontiguousarray(value)


def join_world() -> MPIWorld | None:
    """Initialize MPI in this rank and install the polite ``MPI.COMM_WORLD``; None if
    mpi4py is not installed (the kernel still knows its rank from the environment)."""
    try:
        import mpi4py
    except ImportError:
        log.warning(
            "running as an MPI rank, but mpi4py is not installed: no MPI.COMM_WORLD "
            "(pip install 'ipython-parallel-kernel[mpi]')"
        )
        return None
    # Finalizing is ours (see the module docstring), not an unconditional atexit.
    mpi4py.rc.finalize = False
    from .politecomm import install

    comm = install()
    name = comm.bcast(secrets.token_hex(8) if comm.rank == 0 else None, 0)
    world = MPIWorld(comm, comm.rank, comm.size, name)
    atexit.register(_finalize, world)
    log.info("MPI rank %d of %d", world.rank, world.size)
    return world


def _finalize(world: MPIWorld) -> None:
    from mpi4py import MPI

    if MPI.Is_finalized():
        return
    if world.comm.wait_for_all(FINALIZE_WAIT):
        MPI.Finalize()
    else:
        log.warning(
            "the other MPI ranks did not stop within %.0f s: exiting without them", FINALIZE_WAIT
        )
