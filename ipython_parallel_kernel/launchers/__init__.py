"""Launchers: how the kernels of a cluster are started and stopped.

``local`` starts them as processes on this machine, ``mpi`` as the ranks of one
``mpiexec``, ``ssh`` on the hosts of a hosts file, ``slurm`` and ``sge`` as the
tasks of a batch job (``batch.py`` holds what the schedulers share). Each launcher
is a ``Launcher`` subclass registered in ``LAUNCHERS`` under the name ``--launcher``
takes; its own settings are traits (``c.<Class>.<trait>`` in the profile) and its
own command-line options its ``aliases`` and ``flags``, which ``ipk-cluster start``
gathers.
"""

from __future__ import annotations

from .base import LaunchedKernel, Launcher, LaunchError, LaunchTimeout
from .local import LocalLauncher
from .mpi import MPILauncher
from .sge import SGELauncher
from .slurm import SlurmLauncher
from .ssh import SSHLauncher

__all__ = [
    "LAUNCHERS",
    "LaunchError",
    "LaunchTimeout",
    "LaunchedKernel",
    "Launcher",
    "LocalLauncher",
    "MPILauncher",
    "SGELauncher",
    "SSHLauncher",
    "SlurmLauncher",
    "get_launcher",
]

LAUNCHERS: dict[str, type[Launcher]] = {
    launcher.name: launcher
    for launcher in [LocalLauncher, MPILauncher, SSHLauncher, SlurmLauncher, SGELauncher]
}


def get_launcher(name: str) -> type[Launcher]:
    """The launcher class called ``name``; ValueError lists the known ones."""
    try:
        return LAUNCHERS[name]
    except KeyError:
        known = ", ".join(sorted(LAUNCHERS))
        raise ValueError(f"unknown launcher {name!r}: known launchers are {known}") from None
