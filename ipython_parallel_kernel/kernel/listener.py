"""The kernel's listening port: Twisted's ``tcp.Port``, except when out of descriptors.

When ``accept`` fails for lack of file descriptors (EMFILE for the process, ENFILE
for the system), Twisted closes every waiting connection unread, so a client learns
only that the kernel hung up, and logs each one where a kernel's log never shows it.
``KernelPort`` does what Twisted does, a reserve descriptor freed to accept each
waiting connection, but sends each client an alert saying why, and logs the
exhaustion once per burst. The last client told keeps the reserve's place for up to
``REFUSAL_LINGER`` seconds, until another is waiting: closed at once, its socket
would answer the connect_request still on its way with a reset, which can destroy
the alert before the client reads it. When not even the reserve helps, the port
stops accepting for ``PAUSE`` seconds rather than spin on a socket that stays
readable.

It also accepts at most ``ACCEPTS_PER_TURN`` connections per turn of the reactor, so
under a flood the connections already accepted are read between batches, and asks
the OS for a long accept queue (``BACKLOG``), so a flood does not make it drop the
connection attempts of legitimate clients.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
from collections.abc import Callable
from typing import Any

from twisted.internet import tcp

from ..core.transport import REFUSAL_LINGER
from ..core.wire import encode_alert
from .events import BurstLog

log = logging.getLogger("ipython_parallel_kernel.kernel")

#: Connections accepted per turn of the reactor.
ACCEPTS_PER_TURN = 32
#: Waiting connections told "out of file descriptors" per turn of the reactor.
REFUSALS_PER_TURN = 1000
#: Seconds the port stops accepting when it cannot get a descriptor even to refuse.
PAUSE = 0.1
#: Connections the OS may queue for ``accept`` (it caps this at net.core.somaxconn).
BACKLOG = 1024

_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)
_OUT_OF_MEMORY = (errno.ENOBUFS, errno.ENOMEM)
_RETRY = (errno.ECONNABORTED, errno.EPERM)


class KernelPort(tcp.Port):
    """A listening TCP port that tells clients it cannot take why it cannot.

    ``out_of_descriptors()`` gives the alert's text; ``events`` logs the bursts.
    Create it, then ``startListening()``.
    """

    reactor: Any

    def __init__(
        self,
        port: int,
        factory: Any,
        *,
        interface: str,
        reactor: Any,
        out_of_descriptors: Callable[[], str],
        events: BurstLog,
    ) -> None:
        super().__init__(port, factory, BACKLOG, interface, reactor)
        self.out_of_descriptors = out_of_descriptors
        self.events = events
        self._reserve: int | None = None
        #: The last client told we are out of descriptors, in the reserve's place.
        self._told: socket.socket | None = None
        self._told_timer: Any = None

    def startListening(self) -> None:
        super().startListening()
        self._reserve = _reserve()

    def connectionLost(self, reason: Any) -> None:
        self._forget_told()
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None
        super().connectionLost(reason)

    def doRead(self) -> None:
        """Accept the waiting connections, at most ``ACCEPTS_PER_TURN`` of them."""
        for _ in range(ACCEPTS_PER_TURN):
            try:
                client, address = self.socket.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in _RETRY:
                    continue
                if e.errno in _OUT_OF_DESCRIPTORS:
                    self._refuse_waiting(e)
                elif e.errno in _OUT_OF_MEMORY:
                    self.events.event("failed accepts", "cannot accept clients: %s", e)
                    self._pause()
                else:
                    log.exception("accepting a client failed")
                    self._pause()
                return
            try:
                self._serve(client, address)
            except Exception:
                log.exception("setting up the connection of %s failed", address)

    def _serve(self, client: socket.socket, address: Any) -> None:
        # As Twisted's Port.doRead does for each client.
        if len(address) == 4:  # IPv6: keep the scope id
            host, _ = socket.getnameinfo(address, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
            address = (host, *address[1:])
        assert self.factory is not None  # set by the constructor
        protocol = self.factory.buildProtocol(self._buildAddr(address))
        if protocol is None:
            client.close()
            return
        session, self.sessionno = self.sessionno, self.sessionno + 1
        protocol.makeConnection(
            self.transport(client, protocol, address, self, session, self.reactor)
        )

    def _refuse_waiting(self, error: OSError) -> None:
        alert = encode_alert(self.out_of_descriptors())
        for _ in range(REFUSALS_PER_TURN):
            if self._told is not None and not _readable(self.socket):
                return  # nobody else waits: the last one told keeps its place
            if not self._free_a_descriptor():
                self.events.event("failed accepts", "cannot accept clients: %s", error)
                self._pause()
                return
            try:
                client, _ = self.socket.accept()
            except OSError as e:
                self._reserve = _reserve()
                if not isinstance(e, BlockingIOError):
                    self._pause()  # the freed descriptor went elsewhere
                return
            self.events.event(
                "clients refused for lack of file descriptors",
                "out of file descriptors (%s): telling clients so and disconnecting them",
                os.strerror(error.errno or 0),
            )
            _tell(client, alert)
            self._told = client
            self._told_timer = self.reactor.callLater(REFUSAL_LINGER, self._release_told)

    def _free_a_descriptor(self) -> bool:
        if self._told is not None:
            self._forget_told()
            return True
        if self._reserve is None:
            self._reserve = _reserve()
        if self._reserve is None:
            return False
        os.close(self._reserve)
        self._reserve = None
        return True

    def _forget_told(self) -> None:
        if self._told_timer is not None and self._told_timer.active():
            self._told_timer.cancel()
        self._told_timer = None
        if self._told is not None:
            _drain(self._told)
            self._told.close()
            self._told = None

    def _release_told(self) -> None:
        self._told_timer = None
        self._forget_told()
        self._reserve = _reserve()

    def _pause(self) -> None:
        self.stopReading()
        self.reactor.callLater(PAUSE, self._resume)

    def _resume(self) -> None:
        if self.connected:
            self.startReading()


def _reserve() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _readable(sock: socket.socket) -> bool:
    # poll, not select: it works for any descriptor number and needs no descriptor itself.
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _tell(client: socket.socket, alert: bytes) -> None:
    with contextlib.suppress(OSError):
        client.setblocking(False)
        client.send(alert)
        client.shutdown(socket.SHUT_WR)


def _drain(client: socket.socket) -> None:
    # Closing a socket with unread input resets the connection: read it first.
    with contextlib.suppress(OSError):
        while client.recv(65536):
            pass
