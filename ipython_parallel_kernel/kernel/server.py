"""The kernel's side of the protocol: requests in, engine jobs and replies out.

The requests are those declared in ``core.messages``; ``HANDLERS`` maps each to
``handle_<verb>``. A request is validated against its declaration on arrival: a
malformed field is an error reply naming it, and the connection carries on. Handlers
read the validated fields. Requests that touch the namespace (execute, push, pull, apply,
keys, delete, reset) become engine jobs, so they run one at a time in the order
they arrived, and their replies are sent from the engine thread the moment the job
ends. Control requests (status, interrupt, abort, result, allow, deny, notify,
shutdown) are answered at once on the reactor thread, even while a job runs.

Every reply has ``status`` ``"ok"`` or ``"error"``; an error reply carries
``error = {ename, evalue, traceback}``.

Before a connection is authenticated (its first message, a valid connect_request),
it costs the kernel a descriptor and little else, within bounds: it has
``handshake_timeout`` seconds, at most ``max_unauthenticated`` wait at once (a new
one past that closes the oldest, so a flood delays clients instead of locking them
out), and refused ones linger in ``KernelService.lingering``. What such peers cause
is logged once per burst (``BurstLog``).
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from .. import __version__
from ..core import messages, serialize
from ..core.connection import Address, format_address, parse_address
from ..core.reactors import tls_failure
from ..core.records import CommandRecord
from ..core.transport import FrameProtocol, Lingering
from ..core.wire import Buffer, Channel, Message
from ..errors import InvalidSignature, WireError
from .access import AccessList
from .datapub import publishing
from .engine import Engine, PrintedOutput, error_record, main_thread_id
from .events import BurstLog
from .mpi import MPIWorld
from .notifier import Notifier
from .peer import push_to_kernels

log = logging.getLogger("ipython_parallel_kernel.kernel")

#: A request's fields, validated against its declaration in ``core.messages``.
Fields = dict[str, Any]

#: Seconds between two batches of a running command's output sent to its client.
STREAM_INTERVAL = 0.1
#: Seconds a kernel-to-kernel copy may take before the targets still missing are reported.
COPY_TIMEOUT = 600.0
#: Seconds a new connection has to authenticate (send a valid connect_request).
HANDSHAKE_TIMEOUT = 5.0
#: Most connections waiting to authenticate at once, whatever the descriptor limit.
MAX_UNAUTHENTICATED = 256


def unauthenticated_limit() -> int:
    """How many connections may wait to authenticate at once, by default: a quarter of
    this process's file descriptor limit, at most ``MAX_UNAUTHENTICATED``."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_UNAUTHENTICATED
    return max(1, min(MAX_UNAUTHENTICATED, soft // 4))


class KernelService:
    """What all connections to one kernel share: engine, key, access list, watchers,
    and the bounds on connections that have not authenticated.

    ``max_unauthenticated`` 0 means ``unauthenticated_limit()``, read at each new
    connection, so a descriptor limit changed at run time is followed.

    Thread rules: everything here belongs to the reactor thread, except ``publish``,
    which the engine's thread calls when a command completes: it reads only
    ``watchers``, a tuple the reactor replaces whole (never mutates), and hands the
    record to the reactor.
    """

    def __init__(
        self,
        engine: Engine,
        key: str,
        address: Address,
        reactor: Any,
        access: AccessList | None = None,
        gui: str = "none",
        max_frame: int | None = None,
        max_head: int | None = None,
        sign_buffers: bool = False,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        max_unauthenticated: int = 0,
        mpi_world: MPIWorld | None = None,
    ) -> None:
        self.engine = engine
        self.key = key
        self.address = address
        self.reactor = reactor
        self.access = access or AccessList()
        self.gui = gui
        self.max_frame = max_frame
        self.max_head = max_head
        self.sign_buffers = sign_buffers
        self.handshake_timeout = handshake_timeout
        self.max_unauthenticated = max_unauthenticated
        #: This kernel's MPI world, when it runs as an MPI rank.
        self.mpi_world = mpi_world
        self.connections: set[KernelProtocol] = set()
        #: Connections that have not authenticated yet, oldest first.
        self.waiting: dict[KernelProtocol, None] = {}
        self.lingering = Lingering(reactor)
        self.events = BurstLog(log, reactor)
        #: Gatherers to send records to, sorted. Replaced, never mutated, by the
        #: reactor thread; read by the engine's thread in ``publish``.
        self.watchers: tuple[Address, ...] = ()
        self.notifier: Notifier | None = None
        self._streaming: Any = None

    @property
    def name(self) -> str:
        return format_address(self.address)

    def new_channel(self) -> Channel:
        """A channel for one new connection: with ``sign_buffers`` it refuses unsigned buffers."""
        limits = {"max_frame": self.max_frame, "max_head": self.max_head}
        options = {name: value for name, value in limits.items() if value is not None}
        return Channel(self.key, sign_buffers=self.sign_buffers, **options)

    def describe(self) -> dict[str, Any]:
        """Who this kernel is: sent on connect and with every status."""
        return {
            "address": list(self.address),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "gui": self.gui,
            "version": __version__,
            "python": sys.version.split()[0],
            **(self.mpi_world.describe() if self.mpi_world else {}),
        }

    def status(self) -> dict[str, Any]:
        """State, queue, counters and settings, for ``status()``."""
        engine = self.engine
        return {
            **self.describe(),
            "state": "busy" if engine.busy else "idle",
            "queued": engine.queued,
            "commands_run": engine.commands_run,
            "clients": len(self.connections),
            "notify": [format_address(w) for w in self.watchers],
            "records_dropped": self.notifier.dropped if self.notifier else 0,
            **self.access.describe(),
        }

    def publish(self, record: CommandRecord) -> None:
        """Hand a completed command's record to the notifier (any thread; never blocks)."""
        watchers, notifier = self.watchers, self.notifier
        if not watchers or notifier is None:
            return
        data = record.to_dict()
        data.pop("displays", None)
        data["result"] = (record.result or {}).get("text/plain")
        data["kernel"] = self.name
        data["pid"] = os.getpid()
        self.reactor.callFromThread(notifier.publish, data, list(watchers))

    def stream_while_busy(self) -> None:
        """Forward streamed commands' output every ``STREAM_INTERVAL`` s until the
        engine has nothing left to run (reactor thread)."""
        if self._streaming is not None and self._streaming.running:
            return

        def tick() -> None:
            self.engine.stream_output()
            if not self.engine.busy:
                self._streaming.stop()

        self._streaming = LoopingCall(tick)
        self._streaming.clock = self.reactor
        self._streaming.start(STREAM_INTERVAL, now=False)

    def admit(self, protocol: KernelProtocol) -> None:
        """Count ``protocol`` as waiting to authenticate; if that makes too many, close
        the oldest waiting (reactor thread)."""
        limit = self.max_unauthenticated or unauthenticated_limit()
        while self.waiting and len(self.waiting) >= limit:
            oldest = next(iter(self.waiting))
            oldest.stop_waiting()
            self.events.event(
                "connections closed before they authenticated",
                "closing %s before it authenticated: %d newer connections are waiting",
                oldest.peer_name(),
                limit,
            )
            oldest.refuse(
                f"kernel {self.name} closed this connection before it authenticated, to make "
                f"room: {limit} newer connections were waiting; try again"
            )
        self.waiting[protocol] = None

    def drop_denied(self) -> None:
        """Close the connections of hosts the access list now refuses, telling each why
        (reactor thread)."""
        for connection in list(self.connections):
            host = getattr(connection.transport.getPeer(), "host", "")
            if connection.open and not self.access.allowed(host):
                log.warning("disconnecting %s: %s is now denied", connection.peer_name(), host)
                connection.refuse(f"{host} is now denied by kernel {self.name}")

    def out_of_descriptors(self) -> str:
        """The alert for a client the kernel cannot take for lack of file descriptors."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return (
            f"kernel {self.name} is out of file descriptors (limit {soft}) and cannot take "
            "this connection; try again later, or restart it with a higher limit (ulimit -n)"
        )

    def needs_tls(self) -> str:
        """The alert for a client that connects to this TLS kernel without TLS."""
        return (
            f"kernel {self.name} serves TLS, but this client connected without it: "
            "use the kernel's connection file, which says so and holds its certificate"
        )

    def say_goodbye(self) -> None:
        """Tell every client the kernel is shutting down, then hang up (reactor thread)."""
        for connection in list(self.connections):
            if connection.greeted:
                notice = messages.NOTICES["shutdown_notice"]
                connection.send(notice.msg_type, notice.build(reason="the kernel is shutting down"))
                connection.close()
            else:
                connection.refuse(f"kernel {self.name} is shutting down")


class KernelProtocol(FrameProtocol):
    """One client's connection to the kernel."""

    #: A TCP or TLS transport once connected: getPeer, abortConnection...
    transport: Any

    def __init__(self, service: KernelService, refusal: str | None = None) -> None:
        super().__init__(service.new_channel(), service.reactor, service.lingering)
        self.service = service
        self.refusal = refusal
        self.greeted = False
        self._deadline: Any = None

    def connectionMade(self) -> None:
        super().connectionMade()
        if self.refusal:
            self.service.events.event(
                "refused connections", "refusing %s: %s", self.peer_name(), self.refusal
            )
            self.refuse(self.refusal)
            return
        self.service.connections.add(self)
        self.service.admit(self)
        self._deadline = self.reactor.callLater(
            self.service.handshake_timeout, self._handshake_expired
        )
        # A client's connect_request is usually here by the time it is accepted: read it
        # now, before a flood of newer connections can push this one out of the waiting.
        self.read_now()

    def stop_waiting(self) -> None:
        """No longer count this connection as waiting to authenticate (reactor thread)."""
        self.service.waiting.pop(self, None)
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _handshake_expired(self) -> None:
        self.stop_waiting()
        timeout = self.service.handshake_timeout
        self.service.events.event(
            "connections that did not authenticate in time",
            "closing %s: no valid connect_request within %g s",
            self.peer_name(),
            timeout,
        )
        self.refuse(
            f"kernel {self.service.name} closed the connection: "
            f"no valid connect_request within {timeout:g} s"
        )

    def connection_closed(self, reason: Failure | None) -> None:
        self.stop_waiting()
        self.service.connections.discard(self)
        failure = tls_failure(self.transport, reason)
        if failure is not None:
            self.service.events.event(
                "failed TLS handshakes",
                "TLS handshake with client %s failed: %s",
                self.peer_name(),
                "it does not speak TLS" if failure.kind == "plain" else failure.detail,
            )
        if self.greeted:
            log.info("client %s disconnected", self.peer_name())

    def wire_error(self, error: WireError) -> None:
        self.stop_waiting()
        self.service.events.event(
            "refused messages", "refusing message from %s: %s", self.peer_name(), error
        )
        # Only a bad signature points at the key; a version mismatch or altered buffers
        # say what they are by themselves.
        hint = (
            " Is the key the one in this kernel's connection file?"
            if isinstance(error, InvalidSignature)
            else ""
        )
        self.refuse(f"kernel {self.service.name} refused a message: {error}.{hint}")

    def alert_received(self, text: str) -> None:
        self.stop_waiting()
        self.service.events.event(
            "alerts from clients",
            "disconnecting %s, which sent an alert: %s",
            self.peer_name(),
            text,
        )
        self.transport.abortConnection()

    def tls_hello_received(self) -> None:
        self.stop_waiting()
        self.service.events.event(
            "TLS clients", "refusing %s: it speaks TLS, this kernel does not", self.peer_name()
        )
        self.refuse(
            f"kernel {self.service.name} does not serve TLS, but the client's connection file "
            "says it does: is the file another kernel's, from an earlier run on this port?"
        )

    def message_received(self, message: Message) -> None:
        if not self.greeted:
            self.greet(message)
            return
        try:
            declared, fields = messages.validate(message.type, message.content)
        except LookupError as e:
            self.reply_error(message, messages.UNKNOWN, str(e))
            return
        except TypeError as e:
            self.reply_error(message, messages.MALFORMED, str(e))
            return
        try:
            HANDLERS[declared.verb](self, message, fields)
        except Exception as exc:
            log.exception("handling %s", message.type)
            self.reply(message, {"status": "error", "error": error_record(exc)})

    def greet(self, message: Message) -> None:
        self.stop_waiting()
        try:
            nonce = messages.CONNECT.validate(message.content)["nonce"]
        except TypeError:
            nonce = None
        if message.type != messages.CONNECT.msg_type or nonce is None:
            self.refuse(f"kernel {self.service.name} expected a connect_request first")
            return
        self.channel.peer_nonce = nonce
        self.greeted = True
        log.info("client %s connected", self.peer_name())
        self.reply(
            message, {"status": "ok", "nonce": self.channel.nonce, **self.service.describe()}
        )

    # -- replies (any thread) ---------------------------------------------------------

    def reply(
        self,
        request: Message,
        content: dict[str, Any],
        payload: Buffer = b"",
        buffers: Sequence[Buffer] = (),
    ) -> None:
        """Answer ``request`` (``x_request`` -> ``x_reply``, same id)."""
        reply_type = request.type.removesuffix("_request") + "_reply"
        busy = self.service.engine.queued > 0  # more replies follow: let them travel together
        self.send(reply_type, content, payload, buffers, defer=busy, id=request.id)

    def reply_error(self, request: Message, ename: str, evalue: str) -> None:
        """Answer ``request`` with an error that has no traceback."""
        error = {"ename": ename, "evalue": evalue, "traceback": [f"{ename}: {evalue}\n"]}
        self.reply(request, {"status": "error", "error": error})

    def queue(
        self,
        request: Message,
        action: Callable[[], Any],
        with_payload: bool = False,
        pickler: str = serialize.DEFAULT_PICKLER,
    ) -> None:
        """Run ``action`` as an engine job; reply with its value (pickled by ``pickler``
        if ``with_payload``)."""

        def pickled() -> tuple[bytes, list[memoryview]]:
            # Pickling runs the value's own code (``__reduce__``): inside the job, so
            # whatever it raises, SystemExit included, is an error reply, and an
            # interrupt reaches it.
            return serialize.dumps(action(), pickler)

        def done(value: Any, error: dict[str, Any] | None) -> None:
            if error is not None:
                self.reply(request, {"status": "error", "error": error})
            elif with_payload:
                payload, buffers = value
                self.reply(request, {"status": "ok"}, payload, buffers)
            else:
                self.reply(request, {"status": "ok", "value": value})

        job = pickled if with_payload else action
        self.service.engine.submit(request.type, job, done, self.tag(request))

    def data_publisher(self, request: Message, pickler: str) -> Callable[[dict[Any, Any]], None]:
        """What ``publish_data`` calls while ``request`` runs: sends the dict, pickled by
        ``pickler``, to this client with the request's id (engine thread, before the reply)."""

        def publish(data: dict[Any, Any]) -> None:
            payload, buffers = serialize.dumps(data, pickler)
            content = messages.DATA_PUB.build(keys=[str(key) for key in data])
            self.send(messages.DATA_PUB.msg_type, content, payload, buffers, id=request.id)

        return publish

    # -- handlers: namespace work, queued ----------------------------------------------

    def handle_execute(self, request: Message, fields: Fields) -> None:
        engine = self.service.engine
        source, filename = fields["source"], fields["filename"]
        on_output = None
        if fields["stream"]:

            def on_output(name: str, text: str) -> None:
                notice = messages.NOTICES["stream"]
                self.send(notice.msg_type, notice.build(name=name, text=text), id=request.id)

            self.service.stream_while_busy()

        def done(record: Any, error: dict[str, Any] | None) -> None:
            if error is not None:
                self.reply(request, {"status": "error", "error": error})
                return
            status = "error" if record.error else "ok"
            sent = record.to_dict()
            del sent["source"]  # the client has it
            self.reply(request, {"status": status, "record": sent})
            self.service.publish(record)

        def run() -> CommandRecord:
            with publishing(self.data_publisher(request, fields["pickler"])):
                return engine.execute(source, filename, on_output)

        engine.submit("execute", run, done, self.tag(request))

    def handle_push(self, request: Message, fields: Fields) -> None:
        engine = self.service.engine
        self.queue(request, lambda: engine.push(_load(request)))

    def handle_pull(self, request: Message, fields: Fields) -> None:
        engine = self.service.engine
        names = fields["names"]
        self.queue(request, lambda: engine.pull(names), True, fields["pickler"])

    def handle_apply(self, request: Message, fields: Fields) -> None:
        """Call the function; what it prints, and when it started and completed, come
        back in the reply, also on error."""
        engine = self.service.engine
        printed = PrintedOutput()
        started = completed = 0.0
        pickler = fields["pickler"]

        def call() -> tuple[bytes, list[memoryview]]:
            nonlocal printed, started, completed
            started = time.time()
            # Unpickling and pickling run code of their own (``__reduce__``): inside too.
            try:
                with (
                    engine.captured_output() as printed,
                    publishing(self.data_publisher(request, pickler)),
                ):
                    func, args, kwargs = _load(request)
                    return serialize.dumps(engine.apply(func, args, kwargs), pickler)
            finally:
                completed = time.time()

        def done(value: Any, error: dict[str, Any] | None) -> None:
            output = {
                "stdout": printed.stdout,
                "stderr": printed.stderr,
                "started": started,
                "completed": completed,
            }
            if error is not None:
                self.reply(request, {"status": "error", "error": error, **output})
                return
            payload, buffers = value
            self.reply(request, {"status": "ok", **output}, payload, buffers)

        engine.submit(request.type, call, done, self.tag(request))

    def handle_keys(self, request: Message, fields: Fields) -> None:
        self.queue(request, self.service.engine.keys)

    def handle_delete(self, request: Message, fields: Fields) -> None:
        engine = self.service.engine
        names = fields["names"]
        self.queue(request, lambda: engine.delete(names))

    def handle_reset(self, request: Message, fields: Fields) -> None:
        self.queue(request, self.service.engine.reset)

    def handle_copy(self, request: Message, fields: Fields) -> None:
        engine, reactor = self.service.engine, self.service.reactor
        name, targets = fields["name"], fields["targets"]
        timeout = COPY_TIMEOUT if fields["timeout"] is None else float(fields["timeout"])

        def copy() -> list[str]:
            (value,) = engine.pull([name])
            payload, buffers = serialize.dumps({name: value})
            return push_to_kernels(reactor, targets, payload, buffers, timeout)

        self.queue(request, copy)

    def handle_mpi_bcast(self, request: Message, fields: Fields) -> None:
        engine, world = self.service.engine, self.service.mpi_world
        name, root, ranks = fields["name"], fields["root"], fields["ranks"]

        def broadcast() -> str:
            if world is None:
                raise RuntimeError("this kernel is not an MPI rank")
            world.broadcast(engine.namespace, name, root, ranks)
            return self.service.name

        self.queue(request, broadcast)

    # -- handlers: control, answered at once -------------------------------------------

    def handle_ping(self, request: Message, fields: Fields) -> None:
        self.reply(request, {"status": "ok"})

    def handle_status(self, request: Message, fields: Fields) -> None:
        self.reply(request, {"status": "ok", "value": self.service.status()})

    def handle_result(self, request: Message, fields: Fields) -> None:
        try:
            record = self.service.engine.result(fields["number"])
        except LookupError as e:
            self.reply_error(request, "LookupError", str(e))
            return
        self.reply(request, {"status": "ok", "record": record.to_dict()})

    def handle_interrupt(self, request: Message, fields: Fields) -> None:
        interrupted = self.service.engine.interrupt()
        self.reply(request, {"status": "ok", "value": interrupted})

    def tag(self, request: Message) -> tuple[int, int]:
        """What names ``request`` among the engine's jobs: this connection and its id."""
        return (id(self), request.id)

    def handle_abort(self, request: Message, fields: Fields) -> None:
        ids = fields["ids"]
        tags = None if ids is None else {(id(self), i) for i in ids}
        dropped = self.service.engine.abort(tags)
        error = {
            "ename": "Aborted",
            "evalue": f"aborted on kernel {self.service.name} before it ran",
            "traceback": [],
        }
        for job in dropped:
            job.done(None, error)
        self.reply(request, {"status": "ok", "value": len(dropped)})

    def handle_allow(self, request: Message, fields: Fields) -> None:
        self._change_access(request, fields["network"], self.service.access.allow)

    def handle_deny(self, request: Message, fields: Fields) -> None:
        self._change_access(request, fields["network"], self.service.access.deny)

    def _change_access(self, request: Message, network: str, change: Callable[[str], None]) -> None:
        try:
            change(network)
        except ValueError as e:
            self.reply_error(request, "ValueError", str(e))
            return
        log.info("%s: %s", request.type.removesuffix("_request"), network)
        self.reply(request, {"status": "ok", "value": self.service.access.describe()})
        self.service.drop_denied()

    def handle_notify(self, request: Message, fields: Fields) -> None:
        try:
            address = parse_address(fields["address"])
        except ValueError as e:
            self.reply_error(request, "ValueError", str(e))
            return
        try:
            # Datagrams go to addresses, not names: resolve once, here.
            address = (socket.gethostbyname(address[0]), address[1])
        except OSError as e:
            self.reply_error(request, "ValueError", f"cannot resolve {address[0]}: {e}")
            return
        if fields["flag"]:
            if self.service.notifier is None:
                self.service.notifier = Notifier(
                    self.service.reactor, self.service.key, self.service.name
                )
            self.service.watchers = tuple(sorted({*self.service.watchers, address}))
        else:
            self.service.watchers = tuple(w for w in self.service.watchers if w != address)
        watchers = [format_address(w) for w in self.service.watchers]
        self.reply(request, {"status": "ok", "value": watchers})

    def handle_shutdown(self, request: Message, fields: Fields) -> None:
        log.info("shutdown requested by %s", self.peer_name())
        self.reply(request, {"status": "ok"})
        # To the main thread, whose handler stops the kernel (even in a running job): sent
        # to the process, the signal could land on this thread instead.
        signal.pthread_kill(main_thread_id(), signal.SIGTERM)


def _load(request: Message) -> Any:
    return serialize.loads(request.payload, request.buffers)


#: The handler of each declared request, by verb: only these can be called.
HANDLERS: dict[str, Callable[[KernelProtocol, Message, Fields], None]] = {
    verb: getattr(KernelProtocol, f"handle_{verb}") for verb in messages.REQUESTS
}


class KernelFactory(Factory):
    """Builds a protocol per connection; refuses clients the access list rejects."""

    def __init__(self, service: KernelService) -> None:
        self.service = service

    def buildProtocol(self, addr: Any) -> KernelProtocol:
        host = getattr(addr, "host", "")
        refusal = None
        if not self.service.access.allowed(host):
            refusal = f"{host} is not allowed by kernel {self.service.name}"
        protocol = KernelProtocol(self.service, refusal)
        protocol.factory = self
        return protocol
