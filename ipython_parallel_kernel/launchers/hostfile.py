"""Hosts files: which machines the ``ssh`` launcher starts kernels on, and how many.

One host per line, as ``ssh`` is given it, optionally with a count of kernels::

    # two kernels on node1, one on node2 as user alice
    node1:2
    alice@node2
    [fe80::1%eth0]:4

``#`` starts a comment; blank lines are ignored. A host without a count has one slot;
an IPv6 address goes in brackets.

``-n N`` kernels are dealt out over the slots in rounds, one per host per round, so a
small ``-n`` still spreads over the machines; once every slot is taken the next round
starts again from the first host (more kernels than slots, as mpiexec's oversubscribe).
With ``node1:2`` and ``node2``: ``-n 3`` gives node1, node2, node1; ``-n 4`` adds
another node1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# host or user@host, or an IPv6 address in brackets (its own colons would otherwise
# read as a count), then an optional :count.
_LINE = re.compile(r"(?P<target>[^\s:\[\]]+|(?:[^\s@\[\]]+@)?\[[^\s\]]+\])(?::(?P<count>\d+))?")


@dataclass(frozen=True)
class Host:
    """One line of a hosts file: how to reach the machine, and its number of slots."""

    #: What ``ssh`` is given: ``host``, ``user@host`` (brackets of IPv6 addresses dropped).
    target: str
    slots: int = 1

    @property
    def hostname(self) -> str:
        """The machine's name or address, without the user."""
        return self.target.rpartition("@")[2]


def parse_hosts(text: str, source: str = "hosts file") -> list[Host]:
    """The hosts of a hosts file's ``text``; ValueError names the line that is wrong."""
    hosts = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise ValueError(
                f"{source}, line {number}: {raw.strip()!r} is not host, host:N, user@host "
                "or user@host:N"
            )
        slots = int(match["count"]) if match["count"] is not None else 1
        if slots < 1:
            raise ValueError(f"{source}, line {number}: {raw.strip()!r} asks for no kernels")
        hosts.append(Host(match["target"].replace("[", "").replace("]", ""), slots))
    if not hosts:
        raise ValueError(f"{source} names no hosts")
    return hosts


def read_hosts_file(path: str | Path) -> list[Host]:
    """The hosts listed in the file at ``path``; ValueError says what is wrong with it."""
    path = Path(path).expanduser()
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"cannot read hosts file {path}: {e.strerror}") from None
    return parse_hosts(text, f"hosts file {path}")


def slot_order(hosts: list[Host]) -> list[Host]:
    """Every slot once, in the order kernels take them: one per host per round."""
    rounds = max(host.slots for host in hosts)
    return [host for r in range(rounds) for host in hosts if host.slots > r]


def place(hosts: list[Host], first: int, n: int) -> list[Host]:
    """The host of each of kernels ``first``...``first + n - 1``.

    Kernel ``i`` takes slot ``i`` of ``slot_order``, wrapping around, so kernels added
    to a running cluster continue where its first ones stopped.
    """
    slots = slot_order(hosts)
    return [slots[index % len(slots)] for index in range(first, first + n)]
