"""Twisted glue: a protocol that carries wire frames in linear time, zero-copy.

Thread rules, for kernel and client alike:

- Twisted calls this protocol (``connectionMade``, ``dataReceived``,
  ``connectionLost``, ``resumeProducing``) on the reactor thread only.
- ``send`` may be called from any thread. Under the connection's lock it seals the
  message and writes it straight to the socket with ``sendmsg``, so a reply leaves
  the kernel's execution thread, and a request the caller's thread, without waking
  the reactor. What the socket cannot take at once waits in a backlog that the
  reactor thread sends as the socket drains. A sender with more messages right
  behind (a busy queue, a burst of non-blocking requests) defers instead: the
  reactor then sends the whole batch with one system call.

Reading on the waiting thread: a thread that waits for one reply, with nothing else
outstanding, may read the socket itself (``claim_reading``, then ``read_until``)
instead of having the reactor thread read the reply and wake it: that saves a
cross-thread wake-up per round trip. One reader at a time, under ``_read_lock``:
``_reader`` says whether the reactor, a waiting thread or nobody reads. The lock is
held while bytes are read and decoded into an inbox; messages are delivered from it,
in order, after it is released (``_deliver``), so a callback may send requests or
wait for locks of its own. The reactor
stops watching the socket the first time it finds another reader in charge; once the
waiter has its reply, nobody reads until the reactor is asked to again
(``want_reactor_reading``, for any request the sender will not wait for on its own
thread) or finds input waiting on its next look (``reclaim_reading``). Plain TCP only;
under TLS the reactor always reads.

Receiving: Twisted reads at most 64 KiB at a time and hands it to ``dataReceived``.
When the decoder is inside a large buffer, the protocol keeps reading from the same
socket with ``recv_into`` straight into the buffer's final memory until the socket is
empty, so a 1 GiB array is received without being copied through ``bytes`` objects.

Under TLS the socket belongs to the TLS layer: frames are written with the
transport's own ``writeSequence`` from the reactor thread, and read through
``dataReceived`` alone.

Ending a connection: whatever the decoder holds of a partly received frame is
released the moment the connection is lost, not when the garbage collector runs. A
peer's alert ends the connection: its text is logged once, escaped and cut short
(``shown``), and nothing more is read. A refusal sends an alert and then lingers so
the peer can read it, but only for ``REFUSAL_LINGER`` seconds and, per
``Lingering``, only so many at once: a flood of refused connections cannot hold
more than that many descriptors.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet import interfaces
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from ..errors import WireError
from .wire import Buffer, Channel, Message, encode_alert

log = logging.getLogger(__name__)

# sendmsg takes at most IOV_MAX (1024 on Linux) pieces at once.
_MAX_PIECES = 1024
#: Messages up to this size are joined into one piece before they are written.
_JOIN_BELOW = 16 * 1024
#: Seconds a refused peer has to read our alert and hang up before we cut it off.
REFUSAL_LINGER = 1.0
#: Refused connections lingering at once, per ``Lingering``; a new one cuts off the oldest.
MAX_LINGERING = 32
#: Characters of a peer's text (an alert) that are logged or shown; the rest is cut.
SHOWN_TEXT = 300
#: Seconds a waiting thread sleeps in ``poll`` before it looks at its reply again: a
#: reply the connection's loss completed is noticed within this time.
WAITER_POLL = 0.25
#: Bytes read at a time, by the reactor (Twisted's default) and by a waiting thread.
READ_SIZE = 65536

# Who reads a plain TCP connection's socket (see "Reading on the waiting thread").
_REACTOR, _WAITER, _NOBODY = "reactor", "waiter", "nobody"


def shown(text: str, limit: int = SHOWN_TEXT) -> str:
    r"""Text from a peer made safe to log or show: control characters escaped, cut short.

    >>> print(shown("\x1b[2Jhi\n" + "x" * 500, 10))
    \x1b[2Jhi\nxxx... (497 more characters)
    """
    cut = text[:limit]
    safe = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in cut
    )
    if len(text) > limit:
        safe += f"... ({len(text) - limit} more characters)"
    return safe


class Lingering:
    """Refused connections left open so their peers can read why, within bounds.

    Each is cut off (``abortConnection``) after ``seconds``; holding one more than
    ``limit`` cuts off the oldest at once. Reactor thread only.
    """

    def __init__(self, reactor: Any, seconds: float = REFUSAL_LINGER, limit: int = MAX_LINGERING):
        self.reactor = reactor
        self.seconds = seconds
        self.limit = limit
        self._timers: dict[Any, Any] = {}  # transport -> its DelayedCall, oldest first

    def __len__(self) -> int:
        return len(self._timers)

    def hold(self, transport: Any) -> None:
        """Let ``transport`` linger, cutting off the oldest if that makes too many."""
        while self._timers and len(self._timers) >= self.limit:
            self.cut(next(iter(self._timers)))
        self._timers[transport] = self.reactor.callLater(self.seconds, self.cut, transport)

    def cut(self, transport: Any) -> None:
        """Stop waiting for the peer of ``transport``: abort the connection."""
        self.release(transport)
        transport.abortConnection()

    def release(self, transport: Any) -> None:
        """``transport`` is closed: forget it."""
        timer = self._timers.pop(transport, None)
        if timer is not None and timer.active():
            timer.cancel()


@implementer(interfaces.IPullProducer)
class FrameProtocol(Protocol):
    """A connection that sends and receives ``wire`` messages.

    Subclasses implement ``message_received`` (and may override ``alert_received``,
    ``wire_error``, ``tls_hello_received`` and ``connection_closed``); all of these
    run on the reactor thread. Refused connections linger in ``lingering``, which a
    server shares between all its connections to bound them together.
    """

    #: Set by Twisted when connected: TCP, TLS or a test's transport, each with its own methods.
    transport: Any

    def __init__(self, channel: Channel, reactor: Any, lingering: Lingering | None = None) -> None:
        self.channel = channel
        self.reactor = reactor
        self.lingering = lingering if lingering is not None else Lingering(reactor)
        self.decoder = channel.decoder()
        self.open = False
        self._lock = threading.Lock()
        self._backlog: deque[memoryview] = deque()
        # The reactor thread is writing a batch taken off the backlog (see resumeProducing).
        self._sending = False
        self._socket: socket.socket | None = None
        self._reactor_thread: int | None = None
        # Who reads the socket now, and whether the reactor asked to again meanwhile.
        # Held while bytes are read and decoded, never while messages are delivered.
        self._read_lock = threading.Lock()
        # Decoded messages (and a refusal) waiting to be delivered, in order.
        self._inbox: deque[Message | WireError | _Alert] = deque()
        self._inbox_lock = threading.Lock()
        self._delivering = False
        # An alert or refused frame taken off the inbox, for the reactor to handle once:
        # on its next turn, or in connectionLost at the latest (see ``_end``).
        self._ending: WireError | _Alert | None = None
        # Set by the reading thread while it decodes under the read lock: deliver after.
        self._holding_delivery = False
        self._reader = _REACTOR
        self._reactor_wanted = False
        self._close_when_sent = False
        self._refused = False
        self._tls = False
        # Set once we refused the peer or it sent an alert: what it sends is not read.
        self._discarding = False
        #: Bytes the peer has received from us or sent to us: a long transfer is not silence.
        self.progress = 0

    # -- Twisted's hooks (reactor thread) -------------------------------------------

    def connectionMade(self) -> None:
        self._reactor_thread = threading.get_ident()
        self.open = True
        transport = self.transport
        if interfaces.ITCPTransport.providedBy(transport):
            transport.setTcpNoDelay(True)
        handle = transport.getHandle() if hasattr(transport, "getHandle") else None
        # Under TLS the handle is the TLS connection, and the socket is not ours to use.
        self._tls = handle is not None and not isinstance(handle, socket.socket)
        if isinstance(handle, socket.socket) and not interfaces.ISSLTransport.providedBy(transport):
            self._socket = handle
            transport.registerProducer(self, False)
            transport.doRead = self._reactor_read(transport.doRead)

    def dataReceived(self, data: bytes) -> None:
        self._take_in(data)
        if not self._holding_delivery:
            self._deliver()

    def _take_in(self, data: bytes) -> None:
        """Decode ``data`` (and what follows it straight into large buffers) into the
        inbox, in order; the reading thread, holding the read lock where there is one."""
        if self._discarding:
            return
        first = self.progress == 0
        self.progress += len(data)
        if first and _looks_like_tls_hello(data):
            self._discarding = True
            self.tls_hello_received()
            return
        try:
            messages = self.decoder.feed(data)
            if self._socket is not None:
                messages += self._receive_into_buffers()
        except WireError as e:
            self._discarding = True
            with self._inbox_lock:
                self._inbox.append(e)
            return
        alert = self.decoder.alert
        if alert is not None:
            # An alert ends the connection: one per connection is all a peer gets heard.
            self._discarding = True
        with self._inbox_lock:
            self._inbox.extend(messages)
            if alert is not None:
                # Its text is whatever the peer chose: escaped and cut short here, once.
                self._inbox.append(_Alert(shown(alert)))

    def _deliver(self) -> None:
        """Hand what the inbox holds to ``message_received`` (and the other hooks), in
        order, holding no lock meanwhile: what a message sets off (a callback that
        sends a request, or waits for a lock of its own) cannot deadlock the reading.
        One thread delivers at a time; one that finds another at it leaves it the rest.
        """
        while True:
            with self._inbox_lock:
                if self._delivering or not self._inbox:
                    return
                item = self._inbox.popleft()
                self._delivering = True
            try:
                if isinstance(item, (WireError, _Alert)):
                    with self._inbox_lock:
                        self._ending = item
                    self._in_reactor(self._end)
                elif self.open:
                    self.message_received(item)
            finally:
                with self._inbox_lock:
                    self._delivering = False

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        with self._lock:
            self.open = False
            self._backlog.clear()
            self._socket = None
        self.lingering.release(self.transport)
        self.decoder.close()
        with self._inbox_lock:
            last = self._inbox[-1] if self._inbox else None
            if isinstance(last, (WireError, _Alert)):
                self._ending = last
                self._inbox.pop()
        # The peer's last words go first: they say why the connection is gone.
        self._end()
        self.connection_closed(reason)

    def resumeProducing(self) -> None:
        """Twisted's "the socket can take more": send the backlog.

        Outside the lock, so senders are not held up by a long write: what they send
        meanwhile queues behind it (``_sending``) and goes next.
        """
        with self._lock:
            batch, self._backlog = self._backlog, deque()
            self._sending = bool(batch)
        # Room appeared only because the peer read: that is a sign of life.
        sent = self._send_now(batch) if batch else 0
        with self._lock:
            self._sending = False
            self.progress += sent
            if batch and self.open:
                batch.extend(self._backlog)
                self._backlog = batch
            if self._backlog:
                self.transport.startWriting()
            elif self._close_when_sent:
                self._close_now()

    def stopProducing(self) -> None:
        with self._lock:
            self._backlog.clear()

    # -- for subclasses ----------------------------------------------------------------

    def message_received(self, message: Message) -> None:
        """A verified message arrived (on the reactor thread, or on a waiting thread
        that reads for itself: see ``claim_reading``)."""
        raise NotImplementedError

    def alert_received(self, text: str) -> None:
        """The peer refused us and said why (``text`` already escaped and cut short):
        by default, log it and hang up."""
        log.warning("%s refused the connection: %s", self.peer_name(), text)
        self.transport.abortConnection()

    def wire_error(self, error: WireError) -> None:
        """A frame had to be refused: by default, tell the peer why and hang up."""
        log.warning("refusing %s: %s", self.peer_name(), error)
        self.refuse(str(error))

    def tls_hello_received(self) -> None:
        """The peer opened this plain connection with a TLS handshake: by default, say
        that this end does not speak TLS, and hang up."""
        log.warning("refusing %s: it speaks TLS, this end does not", self.peer_name())
        self.refuse("this end does not speak TLS")

    def connection_closed(self, reason: Failure | None) -> None:
        """The connection is gone (reactor thread)."""

    # -- any thread ----------------------------------------------------------------------

    def peer_name(self) -> str:
        """``host:port`` of the other end."""
        peer = self.transport.getPeer()
        return f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"

    def read_now(self) -> None:
        """Read what the peer has sent so far without waiting for the reactor's next turn
        (reactor thread; plain TCP only, a no-op under TLS)."""
        with self._read_lock:
            if self._socket is None or self._reader != _REACTOR:
                return
            try:
                data = self._socket.recv(READ_SIZE)
            except OSError:
                return  # nothing yet, or an error Twisted's next read reports
            if data:
                self._take_in(data)
        self._deliver()

    def claim_reading(self) -> bool:
        """Make this thread the socket's reader, to wait for a reply with ``read_until``;
        False if it cannot be (TLS, the reactor's own thread, another waiter reading).

        Claim before sending the request, so the reply cannot reach the reactor first.
        """
        with self._read_lock:
            if (
                self._socket is None
                or not self.open
                or self._close_when_sent
                or self._reader == _WAITER
                or threading.get_ident() == self._reactor_thread
            ):
                return False
            self._reader = _WAITER
            self._reactor_wanted = False
            return True

    def read_until(self, done: Callable[[], bool], deadline: float | None) -> None:
        """Read and handle messages on this thread until ``done()`` or ``deadline`` (a
        ``time.monotonic()`` time); then stop reading (see ``claim_reading``).

        The end of the stream or an error is left for the reactor to read and report,
        as are messages after a timeout.
        """
        sock = self._socket
        hand_over = True
        try:
            if sock is None:
                return
            poller = select.poll()
            try:
                poller.register(sock, select.POLLIN)
            except (ValueError, OSError):
                return  # closed meanwhile: the reactor reports why
            while not done():
                wait = WAITER_POLL if deadline is None else deadline - time.monotonic()
                if wait <= 0:
                    return
                if not poller.poll(1000 * min(wait, WAITER_POLL)):
                    continue
                with self._read_lock:
                    if done():
                        break
                    try:
                        data = sock.recv(READ_SIZE)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        return
                    if not data:
                        return
                    self._take_in(data)
                self._deliver()
            hand_over = False
        finally:
            self._stop_reading_here(hand_over)

    def want_reactor_reading(self) -> None:
        """Have the reactor read again, for replies nobody waits for on their own thread
        (any thread)."""
        with self._read_lock:
            if self._reader == _NOBODY:
                self._reader = _REACTOR
                self._in_reactor(self._resume_reading)
            elif self._reader == _WAITER:
                self._reactor_wanted = True

    def reclaim_reading(self) -> None:
        """If nobody reads and input is waiting (a notice, the end of the stream), read
        it on the reactor again (reactor thread; for a periodic check)."""
        with self._read_lock:
            sock = self._socket
            if self._reader != _NOBODY or sock is None:
                return
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                self._reader = _REACTOR
                self._resume_reading()

    def send(
        self,
        msg_type: str,
        content: dict[str, Any] | None = None,
        payload: Buffer = b"",
        buffers: Sequence[Buffer] = (),
        defer: bool = False,
        **header: Any,
    ) -> bool:
        """Seal and send one message from any thread; False if the connection is gone.

        ``defer`` leaves the writing to the reactor thread, which sends everything
        deferred by then in one system call: for a sender with more to send right away.
        """
        with self._lock:
            if not self.open or self._close_when_sent:
                return False
            pieces = self.channel.seal(msg_type, content, payload, buffers, **header)
            if self._socket is None:
                self._in_reactor(self.transport.writeSequence, [bytes(p) for p in pieces])
                return True
            # A small message (most requests and replies) is cheaper to queue and to
            # write as one piece than as several; joining a large one would copy it.
            if not buffers and memoryview(payload).nbytes <= _JOIN_BELOW:
                views = deque((memoryview(b"".join(pieces)),))  # bytes, and the payload
            else:
                views = deque(_flat(p) for p in pieces)
                if sum(v.nbytes for v in views) <= _JOIN_BELOW:
                    views = deque((memoryview(b"".join(views)),))
            was_idle = not self._backlog and not self._sending
            if was_idle and not defer:
                self._send_now(views)
            if views:
                self._backlog.extend(views)
                if was_idle:
                    self._in_reactor(self._start_writing)
        return True

    def refuse(self, reason: str) -> None:
        """Send an alert saying why, then close (any thread).

        Our side stops writing but keeps reading (and discarding) until the peer hangs
        up or ``lingering`` cuts it off: closing a socket with unread input makes the OS
        reset the connection, which can destroy the alert before the peer reads it.
        """
        with self._lock:
            if not self.open:
                return
            self._refused = True
            self._discarding = True
            if self._socket is None:
                self._in_reactor(self.transport.write, encode_alert(reason))
            else:
                self._backlog.append(memoryview(encode_alert(reason)))
                if not self._sending:
                    self._send_now(self._backlog)
            self.open = False
        self.close()

    def close(self) -> None:
        """Close once everything queued so far has been sent (any thread)."""
        with self._lock:
            self._close_when_sent = True
            if not self._backlog and not self._sending:
                self._in_reactor(self._close_now)

    # -- internals ---------------------------------------------------------------------

    def _end(self) -> None:
        """Handle the pending alert or refused frame, if any, exactly once (reactor thread).

        A waiting thread that decodes the peer's alert hands it to the reactor, which may
        find the end of the stream before that hand-over runs: ``connectionLost`` calls
        this first, so the alert's reason is known when the loss is reported.
        """
        with self._inbox_lock:
            item, self._ending = self._ending, None
        if isinstance(item, WireError):
            self.wire_error(item)
        elif isinstance(item, _Alert):
            self.alert_received(item.text)

    def _start_writing(self) -> None:
        """Have the reactor send the backlog, unless the connection is gone meanwhile
        (reactor thread, as is ``connectionLost``, which lets go of the socket)."""
        if self._socket is not None:
            self.transport.startWriting()

    def _in_reactor(self, func: Any, *args: Any) -> None:
        if threading.get_ident() == self._reactor_thread:
            func(*args)
        else:
            self.reactor.callFromThread(func, *args)

    def _reactor_read(self, read: Callable[[], Any]) -> Callable[[], Any]:
        """Twisted's ``doRead`` for our socket, run only while the reactor is its reader:
        otherwise the reactor stops watching the socket until it is asked to again."""

        def read_if_ours() -> Any:
            with self._read_lock:
                if self._reader != _REACTOR:
                    self.transport.pauseProducing()
                    return None
                self._holding_delivery = True
                try:
                    outcome = read()
                finally:
                    self._holding_delivery = False
            self._deliver()
            return outcome

        return read_if_ours

    def _stop_reading_here(self, hand_over: bool) -> None:
        with self._read_lock:
            if self._reader != _WAITER:
                return
            if hand_over or self._reactor_wanted:
                self._reader = _REACTOR
                self._in_reactor(self._resume_reading)
            else:
                self._reader = _NOBODY

    def _resume_reading(self) -> None:
        if self.open and self._reader == _REACTOR:
            self.transport.resumeProducing()

    def _close_now(self) -> None:
        transport = self.transport
        if getattr(transport, "producer", None) is self:
            transport.unregisterProducer()
        if not self._refused:
            transport.loseConnection()
            return
        if hasattr(transport, "loseWriteConnection") and not self._tls:
            transport.loseWriteConnection()
        else:
            # Under TLS, half-closing the socket would cut the TLS layer's pending writes.
            transport.loseConnection()
        self.lingering.hold(transport)

    def _send_now(self, views: deque[memoryview]) -> int:
        """Write what the socket takes now; leave the rest in ``views``; return the bytes
        written. Lock held, or on the reactor thread with ``_sending`` set."""
        assert self._socket is not None
        total = 0
        while views:
            try:
                if len(views) == 1:
                    sent = self._socket.send(views[0])
                else:
                    sent = self._socket.sendmsg(_first(views, _MAX_PIECES))
            except (BlockingIOError, InterruptedError):
                return total
            except OSError:
                views.clear()  # the reading side sees the broken connection and closes
                return total
            total += sent
            while sent:
                head = views[0]
                if sent >= head.nbytes:
                    sent -= head.nbytes
                    views.popleft()
                else:
                    views[0] = head[sent:]
                    sent = 0
        return total

    def _receive_into_buffers(self) -> list[Message]:
        assert self._socket is not None
        messages: list[Message] = []
        while (target := self.decoder.buffer_to_fill()) is not None:
            try:
                n = self._socket.recv_into(target)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break  # Twisted's next read reports the error and closes
            if n == 0:
                break  # end of stream: Twisted's next read sees it too
            self.progress += n
            messages += self.decoder.filled(n)
        return messages


@dataclass(frozen=True)
class _Alert:
    """A refusal the peer sent, in the inbox after the messages before it."""

    text: str


def alert_text(data: bytes) -> str | None:
    """The text of the alert ``data`` begins with, or None if it does not hold one."""
    decoder = Channel(b"").decoder()  # alerts are not signed: any key reads them
    try:
        decoder.feed(data)
    except WireError:
        return None
    return decoder.alert


def _looks_like_tls_hello(data: bytes) -> bool:
    # A TLS record: handshake (22), protocol major version 3, minor 0 (SSL 3) to 4.
    return len(data) >= 3 and data[0] == 22 and data[1] == 3 and data[2] <= 4


def _flat(piece: Buffer) -> memoryview:
    view = memoryview(piece)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _first(views: deque[memoryview], count: int) -> list[memoryview]:
    if len(views) <= count:
        return list(views)
    return [views[i] for i in range(count)]
