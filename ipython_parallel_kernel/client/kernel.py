"""``RemoteKernel``: one kernel, driven from this process.

Every method sends one request. Whether it waits for the reply follows one rule: an
explicit ``block=`` wins, else the object's ``block`` attribute (True unless set);
blocking returns the reply's value, ``block=False`` returns an ``AsyncResult`` at once
(``temp_flags(block=False)`` sets the default for a ``with`` block). Requests from one
client take effect on the kernel in the order they were sent::

    >>> rk = RemoteKernel(("127.0.0.1", 10105))
    >>> rk.execute("a = 5")
    >>> rk.push(10, "b")
    >>> rk.pull("b")
    10
    >>> rk["c"] = [1, 2]; rk["c"]
    [1, 2]
    >>> rk.apply(lambda x: x + a, 1)
    6
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, overload

from twisted.python.failure import Failure

from ..core import messages, serialize
from ..core.connection import (
    ANY_ADDRESS,
    Address,
    ConnectionInfo,
    find_connection,
    format_address,
    parse_address,
    read_connection_file,
    stale_key_hint,
)
from ..core.reactors import (
    OneShotFactory,
    TLSFailure,
    tls_client_options,
    tls_failure,
    tls_wrapped,
)
from ..core.records import CommandRecord
from ..core.tasks import Chunk
from ..core.transport import FrameProtocol
from ..core.wire import Buffer, Channel, Message
from ..errors import (
    ConnectionFailed,
    ConnectionRefused,
    KernelDied,
    KernelTimeout,
    RemoteError,
)
from . import liveness
from .futures import FutureResult, Part
from .reactor import call, get_reactor

log = logging.getLogger(__name__)

#: Deadline, in seconds, for requests the kernel answers at once (status, interrupt...).
CONTROL_TIMEOUT = 10.0
#: Seconds of silence after which a kernel counts as lost (pings keep a quiet one talking).
HEARTBEAT = 5.0


def pick(values: Any, index: int | slice, single: bool) -> Any:
    """``values[index]`` of a result's values (its one value when ``single``), raising
    the exception found in place of a value that failed."""
    picked = ([values] if single else values)[index]
    for value in picked if isinstance(index, slice) else [picked]:
        if isinstance(value, BaseException):
            raise value
    return picked


class AsyncResult(FutureResult, Part):
    """The future result of one request to one kernel: its one part."""

    single = True

    def __init__(self, kernel: str, what: str, convert: Callable[[Message], Any]) -> None:
        FutureResult.__init__(self)
        Part.__init__(self)
        self.kernel = kernel
        self.what = what
        self._convert = convert
        #: ``on_output(stream_name, text)``, called as output streams: on the reactor
        #: thread, or on the thread waiting for this result if that one reads its reply.
        self.on_output: Callable[[str, str], None] | None = None
        #: Whether the requesting thread reads the reply itself (see ``request``).
        self.read_here = False
        #: The request's id on its connection, and the RemoteKernel that sent it.
        self.request_id = 0
        self.owner: RemoteKernel | None = None
        #: Everything the request's code published so far (``publish_data``), merged.
        self.data: dict[Any, Any] = {}

    def still_running(self, timeout: float | None) -> str:
        return (
            f"{self.what} on kernel {self.kernel} did not finish within {timeout} s; "
            "it is still running (interrupt() stops it)"
        )

    def deliver(self, message: Message) -> None:
        """Turn the reply into the result (reactor thread)."""
        if self.done():
            return
        self.take_reply_details(message.content.get("record") or message.content)
        try:
            value = self._convert(message)
        except BaseException as e:
            self.set_exception(e)
        else:
            self.set_result(value)

    def parts_details(self) -> list[tuple[Part, BaseException | None, bool]]:
        done = self.done()
        return [(self, self.exception() if done else None, done)]

    def withdraw(self) -> None:
        """Ask the kernel to drop this request if it has not started (it then fails
        with RemoteError ``Aborted``); it runs on if it has."""
        if self.owner is not None and not self.done():
            self.owner.abort([self.request_id], block=False)

    def data_published(self, data: dict[Any, Any]) -> None:
        """Merge what the request's code published into ``data`` (the reading thread)."""
        # A new dict, not an update in place: a thread reading ``data`` meanwhile sees
        # one whole dict, never one that changes while it iterates.
        self.data = {**self.data, **data}

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"<AsyncResult {self.what} on {self.kernel}: {state}>"


@dataclass
class ExecuteResult(CommandRecord):
    """What one executed command did: number, output, display data, timings."""

    kernel: str = field(default="", compare=False)

    @property
    def text(self) -> str | None:
        """The result's text/plain form, or None if the command had no result."""
        return None if self.result is None else self.result.get("text/plain")

    @property
    def elapsed(self) -> float:
        """Seconds the command ran on the kernel."""
        return max(0.0, self.completed - self.started)

    def __repr__(self) -> str:
        lines = [f"<ExecuteResult In[{self.number}] on {self.kernel}>"]
        if self.stdout:
            lines.append(f"[stdout] {self.stdout.rstrip()}")
        if self.stderr:
            lines.append(f"[stderr] {self.stderr.rstrip()}")
        if self.text is not None:
            lines.append(f"Out[{self.number}]: {self.text}")
        if self.error:
            lines.append(f"{self.error['ename']}: {self.error['evalue']}")
        return "\n".join(lines)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


class KernelClientProtocol(FrameProtocol):
    """The client end of one connection: handshake, then replies matched to requests.

    A heartbeat runs on the reactor thread: every ``heartbeat / 4`` seconds without
    word from the kernel it sends a ping. After ``heartbeat`` seconds of silence it asks
    the OS whether the kernel can still answer (see ``liveness``): a kernel that is
    stopped (SIGSTOP) or whose host vanished is declared lost, and its requests fail
    instead of hanging; one that is only busy (a long C call holding the GIL) is waited
    for. Bytes moving either way count as word: a long transfer is not silence.

    Thread rules: Twisted's callbacks, the heartbeat and ``connection_closed`` run on the
    reactor thread; ``request`` and ``wait`` run on the caller's, and so does
    ``message_received`` while a caller reads its own reply (see ``request``). A request's
    AsyncResult is
    completed by whoever takes it out of ``pending`` (the reply, the lost connection,
    or a send that failed), so it is completed once; ``_pending_lock`` makes taking all
    of them on a lost connection and adding one in ``request`` exclude each other, so
    no request is added after the others were failed and then left waiting.
    """

    #: A TCP or TLS transport once connected: getPeer, getHandle, abortConnection...
    transport: Any

    def __init__(self, channel: Channel, reactor: Any, name: str, heartbeat: float) -> None:
        super().__init__(channel, reactor)
        self.name = name
        self.heartbeat = heartbeat
        self.ready: Future[dict[str, Any]] = Future()
        #: Requests sent and not yet answered, by id (see the thread rules above).
        self.pending: dict[int, AsyncResult] = {}
        self._pending_lock = threading.Lock()
        #: Set once, on the reactor thread, when the connection is lost.
        self.lost_error: KernelDied | ConnectionFailed | None = None
        self.lost_reason: str | None = None
        self._ids = itertools.count(1)
        self._last_heard = 0.0
        self._progress_seen = 0
        self._beat: Any = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self._last_heard = self.reactor.seconds()
        self.send("connect_request", {"nonce": self.channel.nonce})
        if self.heartbeat:
            self._beat = self.reactor.callLater(self.heartbeat / 4, self._check_heartbeat)

    def _check_heartbeat(self) -> None:
        self.reclaim_reading()
        if self.progress != self._progress_seen:
            self._progress_seen = self.progress
            self._last_heard = self.reactor.seconds()
        silence = self.reactor.seconds() - self._last_heard
        if silence >= self.heartbeat:
            why = liveness.why_lost(self._local_pid(), self._tcp_socket(), self.heartbeat)
            if why is not None:
                self.lost_reason = (
                    f"no answer for {silence:.1f} s (heartbeat {self.heartbeat} s): {why}"
                )
                self.transport.abortConnection()
                return
        if silence >= self.heartbeat / 4 and self.ready.done():
            self.send("ping_request", {}, id=0)
        self._beat = self.reactor.callLater(self.heartbeat / 4, self._check_heartbeat)

    def _local_pid(self) -> int | None:
        """The kernel's pid, if it runs on this machine (so its state can be read)."""
        if not self.ready.done() or self.ready.exception() is not None:
            return None
        described = self.ready.result()
        pid = described.get("pid")
        # A kernel in a container on this host may share its address, not its pids.
        if not isinstance(pid, int) or described.get("host") != socket.gethostname():
            return None
        peer, here = self.transport.getPeer(), self.transport.getHost()
        peer_ip = getattr(peer, "host", "")
        try:
            same_machine = ipaddress.ip_address(peer_ip).is_loopback
        except ValueError:
            return None
        return pid if same_machine or peer_ip == getattr(here, "host", None) else None

    def _tcp_socket(self) -> socket.socket | None:
        """The connection's TCP socket, under TLS too (whose transport wraps it)."""
        transport = self.transport
        while transport is not None:
            handle = transport.getHandle() if hasattr(transport, "getHandle") else None
            if isinstance(handle, socket.socket):
                return handle
            transport = getattr(transport, "transport", None)
        return None

    def message_received(self, message: Message) -> None:
        self._last_heard = self.reactor.seconds()
        if not self.ready.done():
            if message.type == "connect_reply":
                self.channel.peer_nonce = message.content["nonce"]
                self.ready.set_result(message.content)
            return
        notice = messages.NOTICES.get(message.type)
        if notice is not None:
            self.notice_received(notice, message)
            return
        waiter = self.pending.pop(message.id, None)
        if waiter is not None:
            waiter.deliver(message)

    def notice_received(self, notice: messages.Notice, message: Message) -> None:
        """A message the kernel sent unasked, checked against its declaration; one that
        does not match (or whose data cannot be unpickled here) is logged and dropped."""
        try:
            fields = notice.validate(message.content)
            if notice is messages.DATA_PUB:
                published = serialize.loads(message.payload, message.buffers)
                if not isinstance(published, dict):
                    raise TypeError(f"data_pub: payload must be a dict, got {type(published)}")
        except Exception as e:  # unpickling may raise anything
            log.warning("kernel %s: dropped a %s notice: %s", self.name, notice.msg_type, e)
            return
        if notice.msg_type == "shutdown_notice":
            self.lost_reason = fields["reason"]
            return
        running = self.pending.get(message.id)
        if running is None:
            return
        if notice is messages.DATA_PUB:
            running.data_published(published)
        elif running.on_output is not None:
            running.on_output(fields["name"], fields["text"])

    def alert_received(self, text: str) -> None:
        self.lost_reason = text
        if not self.ready.done():
            self.ready.set_exception(ConnectionRefused(self.lost_reason))
        self.transport.abortConnection()

    def wire_error(self, error: Exception) -> None:
        self.lost_reason = f"it sent a message that had to be refused ({error})"
        self.transport.abortConnection()

    def connection_closed(self, reason: Failure | None) -> None:
        if self._beat is not None and self._beat.active():
            self._beat.cancel()
        failure = None if self.lost_reason else tls_failure(self.transport, reason)
        if failure is not None and not self.ready.done():
            error: ConnectionFailed = self._tls_error(failure)
        else:
            if failure is not None:
                self.lost_reason = f"TLS failed ({failure.detail})"
            why = self.lost_reason or "it closed the connection"
            error = KernelDied(f"lost kernel {self.name}: {why}")
        if not self.ready.done():
            self.ready.set_exception(error)
        with self._pending_lock:
            self.lost_error = error
            waiters = list(self.pending.values())
            self.pending.clear()
        for waiter in waiters:
            waiter.set_exception(error)

    def _tls_error(self, failure: TLSFailure) -> ConnectionFailed:
        if failure.kind == "plain" and failure.detail:
            return ConnectionRefused(failure.detail)  # the kernel's own words, sent in plain
        if failure.kind == "plain":
            return ConnectionFailed(
                f"kernel {self.name} does not serve TLS, but the connection file says it "
                "does: is the file another kernel's, from an earlier run on this port?"
            )
        if failure.kind == "certificate":
            return ConnectionFailed(
                f"TLS handshake with kernel {self.name} failed: its certificate is not the "
                f"one in the connection file ({failure.detail}); use the file the kernel "
                "wrote when it started"
            )
        return ConnectionFailed(f"TLS handshake with kernel {self.name} failed: {failure.detail}")

    def request(
        self,
        msg_type: str,
        content: dict[str, Any],
        convert: Callable[[Message], Any],
        what: str,
        payload: Buffer = b"",
        buffers: Sequence[Buffer] = (),
        on_output: Callable[[str, str], None] | None = None,
        wait_here: bool = False,
    ) -> AsyncResult:
        """Send a request from any thread; the AsyncResult completes with its reply.

        ``wait_here``: the caller is about to ``wait`` for this result. If nothing else
        is outstanding, the caller's thread then reads the reply from the socket itself
        (``result.read_here``), which saves waking the reactor thread and then the
        caller; otherwise the reactor reads, as for every other request.
        """
        result = AsyncResult(self.name, what, convert)
        result.on_output = on_output
        request_id = next(self._ids)
        result.request_id = request_id
        result.msg_id = f"{self.name}#{request_id}"
        with self._pending_lock:
            if self.lost_error is not None:
                result.set_exception(self.lost_error)
                return result
            self.pending[request_id] = result
            # With requests already outstanding, this is a burst: batch the writes.
            burst = len(self.pending) > 1
        result.read_here = wait_here and not burst and self.claim_reading()
        if not result.read_here:
            self.want_reactor_reading()
        sent = self.send(msg_type, content, payload, buffers, defer=burst, id=request_id)
        if not sent and self.pending.pop(request_id, None) is not None:
            why = self.lost_reason or "the connection is closed"
            result.set_exception(KernelDied(f"lost kernel {self.name}: {why}"))
        return result

    def wait(self, result: AsyncResult, timeout: float | None) -> Any:
        """The value of ``result``, waited for at most ``timeout`` seconds (caller's
        thread): read here if ``request`` let this thread read, else as ``get``."""
        if not result.read_here:
            return result.get(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        self.read_until(result.done, deadline)
        if deadline is None:
            return result.get()
        remaining = deadline - time.monotonic()
        if remaining <= 0 and not result.done():
            raise KernelTimeout(result.still_running(timeout))
        return result.get(max(remaining, 0))


class Blocking:
    """The ``block`` flag of a client object, resolved one way for every verb."""

    #: Whether verbs called without ``block=`` wait for their replies.
    block: bool

    def _blocking(self, block: bool | None) -> bool:
        """An explicit ``block`` wins, else ``self.block``; anything else is refused."""
        if block is None:
            return self.block
        if not isinstance(block, bool):
            raise TypeError(f"block must be True, False or None, not {block!r}")
        return block

    @contextmanager
    def temp_flags(self, block: bool | None = None) -> Iterator[None]:
        """Within the ``with`` block, ``block`` (unless None) is the default."""
        saved = self.block
        self.block = self._blocking(block)
        try:
            yield
        finally:
            self.block = saved


def _resolve(addr: Any, key: str | None, profile: str | None) -> ConnectionInfo:
    if isinstance(addr, ConnectionInfo):
        return addr
    if isinstance(addr, str | os.PathLike) and (
        str(addr).endswith(".json") or os.path.isfile(addr)
    ):
        info = read_connection_file(str(addr))
        if key:
            info.key = key
        return info
    address = parse_address(addr)
    if key:
        return ConnectionInfo(ip=address[0], port=address[1], key=key)
    found = find_connection(address, profile)
    found.ip = address[0]
    return found


def _as_peer_sees_it(kernel: RemoteKernel) -> dict[str, Any]:
    """``kernel``'s connection info for another kernel to reach it by: at the address
    this client reached it at, except that one listening on all interfaces is left for
    the other kernel to find as any client would (``reachable_address``)."""
    info = kernel.info.to_dict()
    return info if kernel.info.ip in ANY_ADDRESS else dict(info, ip=kernel.address[0])


class RemoteKernel(Blocking):
    """A kernel, driven from here.

    ``addr`` is ``(ip, port)``, ``"host:port"``, a connection file or a
    ``ConnectionInfo``. Given only an
    address, the key is read from the connection file that the kernel on that port
    wrote in the profile's ``security/`` directory, unless ``key=`` is given.
    ``timeout`` bounds every blocking wait (None: wait as long as the kernel works);
    ``source_address`` picks the local address to connect from on a multi-homed host;
    ``heartbeat`` is how many seconds of silence mean the kernel is lost (0: never).
    """

    def __init__(
        self,
        addr: Address | str,
        *,
        key: str | None = None,
        timeout: float | None = None,
        profile: str | None = None,
        block: bool = True,
        connect_timeout: float = 10.0,
        source_address: str | None = None,
        heartbeat: float = HEARTBEAT,
    ) -> None:
        self.info = _resolve(addr, key, profile)
        self.address: Address = self.info.reachable_address
        self.name = format_address(self.address)
        self.timeout = timeout
        self.block = self._blocking(block)
        self.source_address = source_address
        #: The pickler (``core.serialize.PICKLERS``) this connection sends with, and
        #: asks the kernel to send back with: set by ``DirectView.use_dill()`` and kin.
        self.pickler = serialize.DEFAULT_PICKLER
        reactor = get_reactor()
        channel = Channel(self.info.key, sign_buffers=self.info.sign_buffers)
        self._protocol = KernelClientProtocol(channel, reactor, self.name, heartbeat)
        call(self._connect, reactor, connect_timeout, timeout=connect_timeout, what="connecting")
        try:
            self.kernel_info = self._protocol.ready.result(connect_timeout)
        except ConnectionRefused as e:
            if key or self.info.path is None or "signature does not match" not in str(e):
                raise
            raise ConnectionRefused(f"{e} ({stale_key_hint(self.info)})") from None
        except FutureTimeout:
            self.disconnect()
            raise KernelTimeout(
                f"kernel {self.name} did not answer within {connect_timeout} s"
            ) from None

    def _connect(self, reactor: Any, timeout: float) -> None:
        protocol = self._protocol

        def failed(reason: Failure) -> None:
            if not protocol.ready.done():
                protocol.ready.set_exception(
                    ConnectionFailed(
                        f"cannot connect to kernel {self.name}: {reason.getErrorMessage()}. "
                        f"Is it running? Start one with 'ipk-kernel --port {self.address[1]}'."
                    )
                )

        factory = OneShotFactory(protocol, failed)
        host, port = self.address
        bind = (self.source_address, 0) if self.source_address else None
        if self.info.tls:
            options = tls_client_options(self.info.tls_certificate)
            factory = tls_wrapped(reactor, factory, options, client=True)
        reactor.connectTCP(host, port, factory, timeout=timeout, bindAddress=bind)

    def __repr__(self) -> str:
        state = "connected" if self._protocol.open else "disconnected"
        return f"<RemoteKernel {self.name} pid {self.kernel_info.get('pid')} {state}>"

    # -- plumbing --------------------------------------------------------------------

    def _request(
        self,
        verb: str,
        fields: dict[str, Any],
        decode: Callable[[Message], Any],
        block: bool | None,
        what: str | None = None,
        value: Any = None,
        on_output: Callable[[str, str], None] | None = None,
        mentions: int = 0,
    ) -> Any:
        """Send the request ``verb`` with ``fields`` (and ``value``, pickled, if the verb
        carries a payload; ``mentions`` as ``serialize.dumps`` has it); ``decode`` turns
        its reply into the result.

        Blocking (``block``, else ``self.block``) waits ``self.timeout`` for a queued
        request and ``CONTROL_TIMEOUT`` for one the kernel answers at once.
        """
        blocking = self._blocking(block)
        declared = messages.REQUESTS[verb]
        pickler = self.pickler
        if pickler != serialize.DEFAULT_PICKLER and "pickler" in declared.names:
            fields = {**fields, "pickler": pickler}
        content = declared.build(**fields)
        payload, buffers = (
            serialize.dumps(value, pickler, mentions) if declared.payload else (b"", [])
        )
        result = self._protocol.request(
            declared.msg_type, content, decode, what or verb, payload, buffers, on_output, blocking
        )
        if blocking:
            return self._protocol.wait(result, self.timeout if declared.queued else CONTROL_TIMEOUT)
        result.owner = self
        return result

    def _check(self, message: Message) -> dict[str, Any]:
        content = message.content
        if content.get("status") != "ok":
            error = content.get("error") or content.get("record", {}).get("error")
            number = content.get("record", {}).get("number", 0)
            raise RemoteError.from_error(error, self.name, number)
        return content

    def _value(self, message: Message) -> Any:
        return self._check(message).get("value")

    def _payload(self, message: Message) -> Any:
        self._check(message)
        return serialize.loads(message.payload, message.buffers)

    def _record(self, source: str) -> Callable[[Message], ExecuteResult]:
        return lambda message: self._execute_result(message, source)

    def _execute_result(self, message: Message, source: str) -> ExecuteResult:
        record: dict[str, Any] = message.content.get("record") or {}
        if not record:
            self._check(message)  # an error reply without a record raises here
        result = ExecuteResult(source=source, **record, kernel=self.name)
        if result.error:
            raise RemoteError.from_error(result.error, self.name, result.number, result)
        return result

    # -- running code ------------------------------------------------------------------

    @overload
    def execute(
        self,
        source: str,
        block: Literal[True],
        on_output: Callable[[str, str], None] | None = None,
    ) -> ExecuteResult: ...
    @overload
    def execute(
        self,
        source: str,
        block: Literal[False],
        on_output: Callable[[str, str], None] | None = None,
    ) -> AsyncResult: ...
    @overload
    def execute(
        self,
        source: str,
        block: bool | None = None,
        on_output: Callable[[str, str], None] | None = None,
    ) -> ExecuteResult | AsyncResult: ...
    def execute(
        self,
        source: str,
        block: bool | None = None,
        on_output: Callable[[str, str], None] | None = None,
    ) -> ExecuteResult | AsyncResult:
        """Run ``source``; returns what it printed and its result, or raises RemoteError.

        ``on_output(stream_name, text)`` is called (on the client's reactor thread, or on
        the caller's when it waits for its own reply) with what the command prints while
        it runs, in batches a tenth of a second apart.

        >>> rk.execute("print('hi'); 6 * 7").text
        '42'
        """
        if not isinstance(source, str):
            raise TypeError(f"execute() takes source code as a str, not {type(source).__name__}")
        fields = {"source": source, "stream": on_output is not None}
        return self._request("execute", fields, self._record(source), block, on_output=on_output)

    @overload
    def run(self, filename: str | os.PathLike, block: Literal[True]) -> ExecuteResult: ...
    @overload
    def run(self, filename: str | os.PathLike, block: Literal[False]) -> AsyncResult: ...
    @overload
    def run(
        self, filename: str | os.PathLike, block: bool | None = None
    ) -> ExecuteResult | AsyncResult: ...
    def run(
        self, filename: str | os.PathLike, block: bool | None = None
    ) -> ExecuteResult | AsyncResult:
        """Run a local Python file on the kernel (tracebacks name the file)."""
        blocking = self._blocking(block)
        with open(filename, encoding="utf-8") as f:
            source = f.read()
        fields = {"source": source, "filename": os.fspath(filename)}
        return self._request("execute", fields, self._record(source), blocking, f"run {filename}")

    def apply(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``func(*args, **kwargs)`` on the kernel; lambdas and closures work too.

        Blocks as ``self.block`` says (every keyword argument is ``func``'s, so none
        is ``block``: use ``apply_async``, or ``temp_flags(block=...)``).
        """
        return self._apply(None, func, args, kwargs)

    def apply_async(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> AsyncResult:
        """As ``apply``, returning an AsyncResult at once."""
        return self._apply(False, func, args, kwargs)

    def _apply(self, block: bool | None, func: Callable, args: tuple, kwargs: dict) -> Any:
        if not callable(func):
            raise TypeError(f"apply() needs a callable, not {type(func).__name__}")
        what = f"apply({getattr(func, '__name__', 'function')})"
        mentions = func.mentions if isinstance(func, Chunk) else 0
        call = (func, args, kwargs)
        return self._request("apply", {}, self._payload, block, what, call, mentions=mentions)

    # -- the namespace -----------------------------------------------------------------

    @overload
    def push(self, value: Any, name: str | None, block: Literal[False]) -> AsyncResult: ...
    @overload
    def push(
        self, value: Any, name: str | None = None, *, block: Literal[False]
    ) -> AsyncResult: ...
    @overload
    def push(
        self, value: Any, name: str | None = None, block: bool | None = None
    ) -> AsyncResult | None: ...
    def push(
        self, value: Any, name: str | None = None, block: bool | None = None
    ) -> AsyncResult | None:
        """Bind ``name`` to ``value`` on the kernel, or push a dict of names: all or none.

        >>> rk.push(10, "b")
        >>> rk.push({"a": 1, "b": 2})
        """
        if name is None:
            if not isinstance(value, dict):
                raise TypeError("push(value, name), or push({'name': value, ...})")
            values = value
        else:
            values = {name: value}
        bad = [n for n in values if not (isinstance(n, str) and n.isidentifier())]
        if bad:
            raise ValueError(f"not valid Python names: {', '.join(map(repr, bad))}")
        result = self._request("push", {"names": list(values)}, self._value, block, value=values)
        return result if isinstance(result, AsyncResult) else None

    @overload
    def pull(self, names: str | Iterable[str], block: Literal[False]) -> AsyncResult: ...
    @overload
    def pull(self, names: str | Iterable[str], block: bool | None = None) -> Any: ...
    def pull(self, names: str | Iterable[str], block: bool | None = None) -> Any:
        """The value of ``names`` on the kernel (a list of values for a list of names)."""
        single = isinstance(names, str)
        wanted = [names] if single else list(names)

        def convert(message: Message) -> Any:
            values = self._payload(message)
            return values[0] if single else values

        return self._request("pull", {"names": wanted}, convert, block, f"pull {names!r}")

    def __setitem__(self, name: str, value: Any) -> None:
        self.push(value, name, block=True)

    def __getitem__(self, name: str) -> Any:
        try:
            return self.pull(name, block=True)
        except RemoteError as e:
            if e.ename == "NameError":
                raise KeyError(name) from None
            raise

    def __delitem__(self, name: str) -> None:
        try:
            self._request("delete", {"names": [name]}, self._value, True, f"del {name!r}")
        except RemoteError as e:
            if e.ename == "NameError":
                raise KeyError(name) from None
            raise

    def __contains__(self, name: object) -> bool:
        return name in self.keys(block=True)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys(block=True))

    @overload
    def keys(self, block: Literal[True]) -> list[str]: ...
    @overload
    def keys(self, block: Literal[False]) -> AsyncResult: ...
    @overload
    def keys(self, block: bool | None = None) -> list[str] | AsyncResult: ...
    def keys(self, block: bool | None = None) -> list[str] | AsyncResult:
        """Names defined on the kernel."""
        return self._request("keys", {}, self._value, block)

    @overload
    def reset(self, block: Literal[True]) -> None: ...
    @overload
    def reset(self, block: Literal[False]) -> AsyncResult: ...
    @overload
    def reset(self, block: bool | None = None) -> AsyncResult | None: ...
    def reset(self, block: bool | None = None) -> AsyncResult | None:
        """Empty the kernel's namespace (after everything queued before it)."""
        return self._request("reset", {}, self._value, block)

    @overload
    def copy_to(
        self, name: str, kernels: Iterable[RemoteKernel], block: Literal[True]
    ) -> list[str]: ...
    @overload
    def copy_to(
        self, name: str, kernels: Iterable[RemoteKernel], block: Literal[False]
    ) -> AsyncResult: ...
    @overload
    def copy_to(
        self, name: str, kernels: Iterable[RemoteKernel], block: bool | None = None
    ) -> list[str] | AsyncResult: ...
    def copy_to(
        self, name: str, kernels: Iterable[RemoteKernel], block: bool | None = None
    ) -> list[str] | AsyncResult:
        """Send this kernel's ``name`` straight to other kernels, not through this client.

        The kernel pickles the value once and pushes it to each of them itself, after
        everything this client queued before; they must accept connections from it.
        Returns the addresses of the kernels that received it.
        """
        if not name.isidentifier():
            raise ValueError(f"{name!r} is not a valid Python name")
        targets = [_as_peer_sees_it(kernel) for kernel in kernels]
        fields = {"name": name, "targets": targets}
        return self._request("copy", fields, self._value, block, f"copy {name!r}")

    @property
    def mpi_rank(self) -> tuple[str, int] | None:
        """``(world, rank)`` when the kernel runs as an MPI rank (kernels share a world
        when their ``world`` names match), else None."""
        world, rank = self.kernel_info.get("mpi_world"), self.kernel_info.get("rank")
        return (world, rank) if isinstance(world, str) and isinstance(rank, int) else None

    @overload
    def mpi_bcast(self, name: str, root: int, ranks: list[int], block: Literal[True]) -> str: ...
    @overload
    def mpi_bcast(
        self, name: str, root: int, ranks: list[int], block: Literal[False]
    ) -> AsyncResult: ...
    @overload
    def mpi_bcast(
        self, name: str, root: int, ranks: list[int], block: bool | None = None
    ) -> str | AsyncResult: ...
    def mpi_bcast(
        self, name: str, root: int, ranks: list[int], block: bool | None = None
    ) -> str | AsyncResult:
        """Take part in an MPI broadcast of ``name`` from rank ``root`` to ``ranks``
        (after everything queued before it); the kernel's address once it is done.

        Every kernel of ``ranks`` must be sent the same request, as
        ``InteractiveCluster.move`` does: until all have, those that have wait (idle).
        """
        if not name.isidentifier():
            raise ValueError(f"{name!r} is not a valid Python name")
        fields = {"name": name, "root": root, "ranks": ranks}
        return self._request("mpi_bcast", fields, self._value, block, f"MPI broadcast {name!r}")

    # -- history and control -------------------------------------------------------------

    @overload
    def result(self, number: int | None, block: Literal[True]) -> ExecuteResult: ...
    @overload
    def result(self, number: int | None = None, *, block: Literal[True]) -> ExecuteResult: ...
    @overload
    def result(self, number: int | None, block: Literal[False]) -> AsyncResult: ...
    @overload
    def result(self, number: int | None = None, *, block: Literal[False]) -> AsyncResult: ...
    @overload
    def result(
        self, number: int | None = None, block: bool | None = None
    ) -> ExecuteResult | AsyncResult: ...
    def result(
        self, number: int | None = None, block: bool | None = None
    ) -> ExecuteResult | AsyncResult:
        """Command ``number`` from the kernel's history (default: the last one).

        Unlike ``execute``, a recorded error is returned, not raised.
        """

        def convert(message: Message) -> ExecuteResult:
            record = self._check(message)["record"]
            return ExecuteResult(**record, kernel=self.name)

        return self._request("result", {"number": number}, convert, block)

    @overload
    def status(self, block: Literal[True]) -> dict[str, Any]: ...
    @overload
    def status(self, block: Literal[False]) -> AsyncResult: ...
    @overload
    def status(self, block: bool | None = None) -> dict[str, Any] | AsyncResult: ...
    def status(self, block: bool | None = None) -> dict[str, Any] | AsyncResult:
        """State (idle/busy), queue length, commands run, gui, pid, host..."""
        return self._request("status", {}, self._value, block)

    @overload
    def interrupt(self, block: Literal[True]) -> bool: ...
    @overload
    def interrupt(self, block: Literal[False]) -> AsyncResult: ...
    @overload
    def interrupt(self, block: bool | None = None) -> bool | AsyncResult: ...
    def interrupt(self, block: bool | None = None) -> bool | AsyncResult:
        """Raise KeyboardInterrupt in the running command; False if nothing was running."""
        return self._request("interrupt", {}, self._value, block)

    @overload
    def abort(self, ids: list[int] | None = None, *, block: Literal[True]) -> int: ...
    @overload
    def abort(self, ids: list[int] | None = None, *, block: Literal[False]) -> AsyncResult: ...
    @overload
    def abort(
        self, ids: list[int] | None = None, block: bool | None = None
    ) -> int | AsyncResult: ...
    def abort(self, ids: list[int] | None = None, block: bool | None = None) -> int | AsyncResult:
        """Drop the commands queued behind the running one (those of this client's
        requests ``ids`` only, if given: see ``AsyncResult.abort``); returns how many."""
        return self._request("abort", {"ids": ids}, self._value, block)

    @overload
    def allow(self, network: str, block: Literal[True]) -> dict[str, list[str]]: ...
    @overload
    def allow(self, network: str, block: Literal[False]) -> AsyncResult: ...
    @overload
    def allow(
        self, network: str, block: bool | None = None
    ) -> dict[str, list[str]] | AsyncResult: ...
    def allow(self, network: str, block: bool | None = None) -> dict[str, list[str]] | AsyncResult:
        """Let clients from ``network`` (an address or CIDR) connect."""
        return self._request("allow", {"network": network}, self._value, block)

    @overload
    def deny(self, network: str, block: Literal[True]) -> dict[str, list[str]]: ...
    @overload
    def deny(self, network: str, block: Literal[False]) -> AsyncResult: ...
    @overload
    def deny(
        self, network: str, block: bool | None = None
    ) -> dict[str, list[str]] | AsyncResult: ...
    def deny(self, network: str, block: bool | None = None) -> dict[str, list[str]] | AsyncResult:
        """Refuse clients from ``network``, even if allowed."""
        return self._request("deny", {"network": network}, self._value, block)

    @overload
    def notify(self, addr: Address | str, flag: bool, block: Literal[True]) -> list[str]: ...
    @overload
    def notify(
        self, addr: Address | str, flag: bool = True, *, block: Literal[True]
    ) -> list[str]: ...
    @overload
    def notify(self, addr: Address | str, flag: bool, block: Literal[False]) -> AsyncResult: ...
    @overload
    def notify(
        self, addr: Address | str, flag: bool = True, *, block: Literal[False]
    ) -> AsyncResult: ...
    @overload
    def notify(
        self, addr: Address | str, flag: bool = True, block: bool | None = None
    ) -> list[str] | AsyncResult: ...
    def notify(
        self, addr: Address | str, flag: bool = True, block: bool | None = None
    ) -> list[str] | AsyncResult:
        """Send every completed command's record to the gatherer at ``addr`` (or stop)."""
        host, port = parse_address(addr)
        return self._request("notify", {"address": [host, port], "flag": flag}, self._value, block)

    @overload
    def kill(self, block: Literal[True]) -> Any: ...
    @overload
    def kill(self, block: Literal[False]) -> AsyncResult: ...
    @overload
    def kill(self, block: bool | None = None) -> Any: ...
    def kill(self, block: bool | None = None) -> Any:
        """Shut the kernel down (it tells its other clients); this client disconnects."""
        blocking = self._blocking(block)
        done = self._request("shutdown", {}, self._value, False)
        done.add_done_callback(lambda _: self.disconnect())
        return done.get(CONTROL_TIMEOUT) if blocking else done

    def disconnect(self) -> None:
        """Close this client's connection; the kernel keeps running."""
        if self._protocol.open:
            self._protocol.close()
