"""Launchers: how the kernels of a cluster are started and stopped.

``local`` starts them as processes on this machine. ``mpi`` (under ``mpiexec``),
``ssh`` (on the hosts of a hosts file) and ``slurm`` (as a batch job) come later,
each a ``Launcher`` subclass registered in ``LAUNCHERS``; nothing else changes.
"""

from __future__ import annotations

from .base import LaunchedKernel, Launcher, LaunchError, LaunchTimeout
from .local import LocalLauncher

__all__ = [
    "LAUNCHERS",
    "LaunchError",
    "LaunchTimeout",
    "LaunchedKernel",
    "Launcher",
    "LocalLauncher",
    "get_launcher",
]

LAUNCHERS: dict[str, type[Launcher]] = {"local": LocalLauncher}
PLANNED = ("mpi", "ssh", "slurm")


def get_launcher(name: str) -> type[Launcher]:
    """The launcher class called ``name``; ValueError lists the known ones."""
    try:
        return LAUNCHERS[name]
    except KeyError:
        known = ", ".join(sorted(LAUNCHERS))
        later = " (not yet available)" if name in PLANNED else ""
        raise ValueError(
            f"unknown launcher {name!r}{later}: known launchers are {known}; "
            f"{', '.join(PLANNED)} come later"
        ) from None
