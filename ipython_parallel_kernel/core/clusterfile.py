"""Cluster files: every kernel of one cluster, in order, in one JSON file.

``ipk-cluster start`` writes ``ipk-cluster-<id>.json`` into the profile's ``security/``
directory; ``InteractiveCluster.from_file`` and ``%kernel connect`` read it. It is a
JSON list with one object per kernel, target 0 first: the kernel's connection info
(as in its own connection file, key included) plus ``connection_file``, the path of
that kernel's own connection file::

    [
      {"ip": "127.0.0.1", "port": 41023, "key": "...", "pid": 4242, ...,
       "connection_file": ".../security/ipk-cluster-default-kernel-0.json"},
      ...
    ]

Like a connection file it holds keys, so it is written with mode 0600.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .connection import ConnectionInfo, read_connection_file, security_dir, write_json_private

PREFIX = "ipk-cluster-"

# A kernel's connection file lives next to the cluster file and shares its prefix,
# so an id that itself ended in "-kernel-<n>" would make the two indistinguishable.
_VALID_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_KERNEL_SUFFIX = re.compile(r"-kernel-\d+$")
_REQUIRED = ("ip", "port", "key")


def check_cluster_id(cluster_id: str) -> str:
    """Return ``cluster_id`` if it can name files safely; ValueError says why not."""
    if not _VALID_ID.fullmatch(cluster_id) or _KERNEL_SUFFIX.search(cluster_id):
        raise ValueError(
            f"cluster id {cluster_id!r} is not allowed: use letters, digits, '_', '.' and "
            "'-', starting with a letter or digit, and not ending in '-kernel-<number>'"
        )
    return cluster_id


def cluster_file_path(cluster_id: str = "default", profile: str = "default") -> Path:
    """Where the cluster ``cluster_id`` of ``profile`` keeps its cluster file."""
    return security_dir(profile) / f"{PREFIX}{check_cluster_id(cluster_id)}.json"


def kernel_connection_file_path(cluster_id: str, index: int, profile: str = "default") -> Path:
    """Where kernel ``index`` of cluster ``cluster_id`` writes its own connection file."""
    return security_dir(profile) / f"{PREFIX}{check_cluster_id(cluster_id)}-kernel-{index}.json"


def cluster_id_of(path: str | Path) -> str:
    """The cluster id a cluster file's name carries."""
    return Path(path).name.removeprefix(PREFIX).removesuffix(".json")


def list_cluster_files(profile: str = "default") -> list[Path]:
    """The cluster files of ``profile``, sorted by name (kernels' own files left out)."""
    return sorted(
        path
        for path in security_dir(profile).glob(f"{PREFIX}*.json")
        if not _KERNEL_SUFFIX.search(path.stem)
    )


def _entry(info: ConnectionInfo) -> dict[str, Any]:
    return {**info.to_dict(), "connection_file": info.path}


def write_cluster_file(infos: Iterable[ConnectionInfo], path: str | Path) -> Path:
    """Write the kernels' connection infos atomically with mode 0600; return the path."""
    return write_json_private([_entry(info) for info in infos], path)


def _parse_entry(number: int, data: Any) -> ConnectionInfo:
    if not isinstance(data, dict):
        raise ValueError(f"entry {number} is not a JSON object")
    missing = [name for name in _REQUIRED if name not in data]
    if missing:
        raise ValueError(f"entry {number} has no {', '.join(repr(m) for m in missing)}")
    if not isinstance(data["port"], int) or isinstance(data["port"], bool):
        raise ValueError(f"entry {number} has port {data['port']!r}, not a whole number")
    path = data.get("connection_file")
    if path is not None and not isinstance(path, str):
        raise ValueError(f"entry {number} has connection_file {path!r}, not a path")
    return ConnectionInfo.from_dict(data, path)


def read_cluster_file(path: str | Path) -> list[ConnectionInfo]:
    """The connection infos of a cluster file, target 0 first.

    Each info's ``path`` is the kernel's own connection file. ValueError says what is
    wrong with a file that cannot be read or does not hold a cluster.
    """
    path = Path(path).expanduser()
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, list):
            raise ValueError("it does not hold a JSON list (one object per kernel)")
        if not data:
            raise ValueError("it lists no kernels")
        return [_parse_entry(number, entry) for number, entry in enumerate(data)]
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"cannot read cluster file {path}: {e}") from None


def is_cluster_file(path: str | Path) -> bool:
    """Whether ``path`` is a readable cluster file (a JSON list), not a kernel's own
    connection file (a JSON object) or anything else.

    The one place that tells the two apart: both live in ``security/`` and both hold keys.
    """
    try:
        return isinstance(json.loads(Path(path).expanduser().read_text()), list)
    except (OSError, ValueError):
        return False


def read_kernels(path: str | Path) -> list[ConnectionInfo]:
    """The kernels a cluster file lists, or the one of a connection file; ValueError
    says what is wrong with a file that is neither."""
    if is_cluster_file(path):
        return read_cluster_file(path)
    return [read_connection_file(path)]
