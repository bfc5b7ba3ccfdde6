"""Sending every completed command's record to the gatherers watching this kernel.

Records travel as signed UDP datagrams (``wire.seal_record``). All sending happens on
the reactor thread, paced so that a large record does not overrun a gatherer's
receive buffer, and bounded: when more than ``MAX_BACKLOG`` bytes wait, new records
are dropped and counted. A gatherer that is gone, slow or unreachable therefore costs
the engine nothing: the engine only hands the record over.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from typing import Any

from twisted.internet.protocol import DatagramProtocol

from ..core.connection import Address
from ..core.records import seal_record

log = logging.getLogger("ipython_parallel_kernel.kernel")

#: Datagrams sent in one go before the notifier lets the reactor breathe.
BURST = 32
#: Seconds between bursts.
PAUSE = 0.001
#: Bytes that may wait to be sent before new records are dropped.
MAX_BACKLOG = 64 * 1024 * 1024


class Notifier(DatagramProtocol):
    """The kernel's UDP sender of command records (reactor thread only)."""

    #: Set by ``listenUDP`` before anything is sent.
    transport: Any

    def __init__(self, reactor: Any, key: str, kernel: str) -> None:
        self.reactor = reactor
        self.key = key
        self.kernel = kernel
        self.sender = int.from_bytes(os.urandom(8), "big")
        self.seq = 0
        self.dropped = 0
        self.errors = 0
        self._waiting: deque[tuple[bytes, Address]] = deque()
        self._waiting_bytes = 0
        self._pumping = False
        self._port = reactor.listenUDP(0, self)

    def publish(self, record: dict[str, Any], watchers: list[Address]) -> None:
        """Queue one record for every watcher."""
        if not watchers:
            return
        self.seq += 1
        datagrams = seal_record(
            self.key,
            self.sender,
            self.seq,
            record.get("number", 0),
            self.kernel,
            record,
            sent=time.time(),
        )
        size = sum(len(d) for d in datagrams) * len(watchers)
        if self._waiting_bytes + size > MAX_BACKLOG:
            self.dropped += 1
            log.warning(
                "gatherers are not keeping up: dropped the record of command %s",
                record.get("number"),
            )
            return
        for watcher in watchers:
            self._waiting.extend((datagram, watcher) for datagram in datagrams)
        self._waiting_bytes += size
        if not self._pumping:
            self._pumping = True
            self._pump()

    def _pump(self) -> None:
        for _ in range(min(BURST, len(self._waiting))):
            datagram, watcher = self._waiting.popleft()
            self._waiting_bytes -= len(datagram)
            try:
                self.transport.write(datagram, watcher)
            except OSError as e:
                self.errors += 1
                log.debug("record to %s not sent: %s", watcher, e)
        if self._waiting:
            self.reactor.callLater(PAUSE, self._pump)
        else:
            self._pumping = False

    def stop(self) -> None:
        """Close the UDP port."""
        self._port.stopListening()
