"""The profiles shipped inside the package, and putting one in place on first use.

``ipk-kernel --profile lan`` or ``ipk-cluster start --profile ssh`` with no such
profile directory yet copies the shipped profile's files there first, so the user
edits a copy of their own (hosts file included) and an upgrade never overwrites it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .connection import profile_dir

#: Ready-made profiles shipped inside the package (package data, so installed with it).
BUNDLED_PROFILES = Path(__file__).resolve().parent.parent / "profiles"


def shipped_profiles() -> list[str]:
    """The names of the profiles the package ships."""
    return sorted({path.parent.name for path in BUNDLED_PROFILES.glob("*/*.py")})


def install_bundled_profile(profile: str, config_file: str) -> None:
    """If ``profile`` has no ``config_file`` but the package ships one, copy the shipped
    profile's files that are missing into the profile directory."""
    bundled = BUNDLED_PROFILES / profile
    directory = profile_dir(profile)
    if (directory / config_file).exists() or not (bundled / config_file).is_file():
        return
    directory.mkdir(parents=True, exist_ok=True)
    for source in bundled.iterdir():
        if source.is_file() and not (directory / source.name).exists():
            shutil.copy(source, directory / source.name)
