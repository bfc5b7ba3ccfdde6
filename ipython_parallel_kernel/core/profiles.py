"""The profiles shipped inside the package, and their first use.

A shipped profile (``default``, ``lan``, ``mpi``, ``wx``...) is a directory of
commented config files in the package. The first time a command names it, its files
are copied into the IPython profile (``~/.ipython/profile_<name>/``) where that
profile has none of its own, so the user edits a copy and an upgrade never
overwrites their changes::

    >>> directory = install_shipped("mpi")   # ~/.ipython/profile_mpi, with its files
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .connection import profile_dir

#: Ready-made profiles shipped inside the package (package data, so installed with it).
SHIPPED_PROFILES = Path(__file__).resolve().parent.parent / "profiles"


def shipped_profiles() -> list[str]:
    """The names of the profiles shipped with the package."""
    return sorted(path.name for path in SHIPPED_PROFILES.iterdir() if path.is_dir())


def is_shipped(profile: str) -> bool:
    """Whether a profile of that name is shipped with the package."""
    return (SHIPPED_PROFILES / profile).is_dir()


def install_shipped(profile: str) -> Path:
    """The profile's directory, with each file shipped for it copied in where the
    profile has no file of that name yet (a user's own file is never replaced)."""
    directory = profile_dir(profile)
    shipped = SHIPPED_PROFILES / profile
    if shipped.is_dir():
        for source in shipped.iterdir():
            target = directory / source.name
            if source.is_file() and not target.exists():
                directory.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, target)
    return directory
