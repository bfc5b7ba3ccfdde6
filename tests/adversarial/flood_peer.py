"""A connection flood against one kernel, run as its own process by test_floods.py.

    python flood_peer.py HOST PORT STATUS_FILE SOURCE:HOLD [SOURCE:HOLD ...]

From each SOURCE address (127.0.0.0/8 only) it keeps opening connections that never
send a byte, holding the newest HOLD of them open and closing older ones, as fast as
it can. Every 100 connections it writes the total opened so far to STATUS_FILE. It
stops after MAX_CONNECTIONS connections or MAX_SECONDS, whichever comes first, or
when the test stops it by pid.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import time
from collections import deque
from pathlib import Path

MAX_CONNECTIONS = 500_000
MAX_SECONDS = 120.0
#: Connections opened from each source before the next source gets a turn.
BATCH = 20


def open_one(source: str, target: tuple[str, int]) -> socket.socket:
    """A non-blocking connection attempt from ``source`` to ``target``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.bind((source, 0))
    sock.connect_ex(target)
    return sock


def report(status: Path, opened: int) -> None:
    """Write the count to ``status`` whole: a reader never sees it half written."""
    partial = status.with_suffix(".partial")
    partial.write_text(str(opened))
    os.replace(partial, status)


def flood(target: tuple[str, int], status: Path, sources: dict[str, int]) -> None:
    """Open and hold connections from ``sources`` (address -> how many to hold)."""
    for address in [target[0], *sources]:
        if not ipaddress.ip_address(address).is_loopback:
            raise SystemExit(f"{address} is not a loopback address")
    held = {source: deque() for source in sources}
    opened = 0
    deadline = time.monotonic() + MAX_SECONDS
    while opened < MAX_CONNECTIONS and time.monotonic() < deadline:
        for source, hold in sources.items():
            for _ in range(BATCH):
                try:
                    held[source].append(open_one(source, target))
                except OSError:
                    time.sleep(0.01)  # out of ports or descriptors for a moment
                    break
                opened += 1
                if opened % 100 == 0:
                    report(status, opened)
                while len(held[source]) > hold:
                    held[source].popleft().close()
        time.sleep(0.001)


if __name__ == "__main__":
    host, port, status_file, *specs = sys.argv[1:]
    flood(
        (host, int(port)),
        Path(status_file),
        {source: int(hold) for source, hold in (spec.split(":") for spec in specs)},
    )
