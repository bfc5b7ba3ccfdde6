"""The execution engine: one namespace, a FIFO queue and the thread that runs it.

No Twisted here. Anything may ``submit`` work from any thread; one thread (the
kernel's main thread, or the GUI thread in a GUI kernel) takes jobs off the queue in
order and runs them, so one client's execute, push, pull and apply take effect in the
order sent.

Interrupting: ``interrupt()`` raises KeyboardInterrupt in the running job. When the
engine runs on the main thread it does so with a real SIGINT sent to that thread,
which also wakes blocking calls such as ``time.sleep``; elsewhere (tests, helpers) it
sets an asynchronous exception, which takes effect at the next bytecode. When no job
runs yet, the interrupt is for the next one to run, submitted before it: an interrupt
sent right behind a command stops that command even if it had not started.

IPython syntax (``%timeit f(x)``, ``!hostname``) runs too: a source that is not
Python but has IPython's marks is turned into Python by IPython's transformers, and
run with an IPython shell whose namespace is the engine's, made the first time a
command needs one (see ``ipython_syntax``). Plain Python never loads IPython for it.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import linecache
import os
import signal
import threading
import time
import traceback
import types
from collections import OrderedDict, deque
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.records import CommandRecord
from ..core.references import resolve_arguments
from ..core.requirements import Dependent
from ..core.tasks import Chunk
from . import ipython_syntax
from .capture import CapturedStream
from .rich import RichOutput

#: Seconds between two SIGINTs sent for one interrupt whose first has not been handled.
INTERRUPT_RESEND = 0.05
#: How many times, at most, one interrupt's SIGINT is sent again.
RESENDS = 20
#: The kind of the job ``stop`` queues: an interrupt never cancels it.
STOP = "stop"
#: Sent to the main thread to have it handle a stop signal that another thread received:
#: the kernel has no other use for it, and its default action is to do nothing.
WAKE_SIGNAL = signal.SIGURG


class EngineShutdown(BaseException):
    """Raised in the engine thread to stop it; never caught as a user error."""


@dataclass
class PrintedOutput:
    """What code printed while ``Engine.captured_output`` collected it."""

    stdout: str = ""
    stderr: str = ""


@dataclass
class Job:
    """One queued unit of work: ``action`` runs on the engine thread, then ``done``.

    ``done(value, error)`` receives the action's return value, or the error record
    of the exception it raised.
    """

    kind: str
    action: Callable[[], Any]
    done: Callable[[Any, dict[str, Any] | None], None]
    submitted: float = field(default_factory=time.time)
    #: Whose request it is, for ``abort`` of some requests only.
    tag: Any = None


def _set_async_exception(ident: int, exc_type: type[BaseException] | None) -> None:
    """Raise ``exc_type`` in thread ``ident`` at its next bytecode (None withdraws it)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(ident), ctypes.py_object(exc_type) if exc_type else ctypes.c_void_p(0)
    )


class SignalRelay:
    """Has the main thread handle some signals at once, whichever thread receives them.

    Python runs a signal's handler on the main thread, the next time that thread runs
    Python code; but the OS may deliver a signal sent to the process to any thread that
    does not block it (Linux prefers the sender, so a thread's ``os.kill(os.getpid(), ...)``
    lands on that thread). The main thread, waiting for a job or sleeping in one, would
    see it only when that wait ends, if ever. Whatever thread it interrupts, a signal's
    number is written to the wakeup file descriptor; a relay thread reads it and sends
    ``WAKE_SIGNAL`` to the main thread, which breaks its wait and runs every pending
    handler. As with interrupts, it is sent again until handled: one that lands just
    before the main thread starts to wait is only handled when the wait ends.

    Create on the main thread, once the handlers of ``signals`` are installed.
    """

    def __init__(self, signals: Iterable[int]) -> None:
        self.signals = frozenset(signals)
        #: How many times the main thread has handled ``WAKE_SIGNAL``.
        self.wakes_handled = 0
        self._main = main_thread_id()
        self._read_end, self._write_end = os.pipe()
        os.set_blocking(self._write_end, False)
        self._passed_on_to: int | None = None
        signal.signal(WAKE_SIGNAL, self._on_wake)
        self.install()
        threading.Thread(target=self._relay, name="ipk-signal-relay", daemon=True).start()

    def install(self) -> None:
        """Make the relay's pipe the wakeup file descriptor, again if something replaced
        it; what it reads is passed on to the one it replaces. Main thread only."""
        previous = signal.set_wakeup_fd(self._write_end, warn_on_full_buffer=False)
        if previous not in (-1, self._write_end):
            self._passed_on_to = previous

    def _on_wake(self, signum: int, frame: Any) -> None:
        self.wakes_handled += 1

    def _relay(self) -> None:
        while True:
            numbers = os.read(self._read_end, 512)
            if self._passed_on_to is not None:
                with contextlib.suppress(OSError):
                    os.write(self._passed_on_to, numbers)
            if self.signals.intersection(numbers):
                self._wake_main_thread()

    def _wake_main_thread(self) -> None:
        handled = self.wakes_handled
        for _ in range(RESENDS):
            signal.pthread_kill(self._main, WAKE_SIGNAL)
            time.sleep(INTERRUPT_RESEND)
            if self.wakes_handled != handled:
                return


def error_record(exc: BaseException, skip_frames: int = 0) -> dict[str, Any]:
    """An exception as data: name, value and traceback lines, without engine frames."""
    tb = exc.__traceback__
    for _ in range(skip_frames):
        if tb is not None:
            tb = tb.tb_next
    return {
        "ename": type(exc).__name__,
        "evalue": str(exc),
        "traceback": traceback.format_exception(type(exc), exc, tb),
    }


def message_record(exc: BaseException) -> dict[str, Any]:
    """An exception as data, its message alone for a traceback: how IPython shows a
    ``UsageError`` (a magic that does not exist, or options it does not take)."""
    name = type(exc).__name__
    return {"ename": name, "evalue": str(exc), "traceback": [f"{name}: {exc}\n"]}


def main_thread_id() -> int:
    """The id of the process's main thread, which runs user code and takes signals."""
    ident = threading.main_thread().ident
    assert ident is not None  # the main thread has always started
    return ident


@dataclass(frozen=True)
class CompiledCommand:
    """A command's code: its statements, and a trailing expression whose value is the result."""

    body: types.CodeType
    last: types.CodeType | None
    #: Whether the code calls ``get_ipython()`` (IPython syntax), so needs the shell.
    uses_shell: bool

    def renamed(self, filename: str) -> CompiledCommand:
        """The same code, as if compiled from ``filename``."""
        last = None if self.last is None else _renamed(self.last, filename)
        return CompiledCommand(_renamed(self.body, filename), last, self.uses_shell)


#: Sources whose compiled code is kept, most recently run first.
COMPILED_SOURCES = 256
_compiled: OrderedDict[str, CompiledCommand] = OrderedDict()
_compiled_lock = threading.Lock()


def _compile(source: str, filename: str) -> CompiledCommand:
    """The code of a command's source: Python, or IPython syntax turned into Python.

    Compiling is most of what running a short command costs, and clients often send
    the same source again (``%px`` in a loop, a benchmark): the code of the last
    ``COMPILED_SOURCES`` sources is reused, renamed for this command. So a compile-time
    warning (a ``SyntaxWarning``) is shown the first time only, as for an imported module,
    and IPython syntax is transformed once. A source that is Python is never
    transformed; one that is not, without IPython's marks, raises its SyntaxError
    without IPython being loaded; one whose transformed code is not Python either
    raises the SyntaxError of that code, whose lines are the source's.
    """
    with _compiled_lock:
        code = _compiled.get(source)
        if code is not None:
            _compiled.move_to_end(source)
    if code is not None:
        return code.renamed(filename)
    try:
        code = _compile_python(source, filename)
    except SyntaxError:
        if not ipython_syntax.may_be_ipython(source):
            raise
        code = None
    if code is None:  # outside the except: its SyntaxError is the only one shown
        code = _compile_python(ipython_syntax.to_python(source), filename)
    with _compiled_lock:
        _compiled[source] = code
        if len(_compiled) > COMPILED_SOURCES:
            _compiled.popitem(last=False)
    return code


def _compile_python(source: str, filename: str) -> CompiledCommand:
    tree = ast.parse(source, filename, "exec")
    last = None
    if tree.body and isinstance(final := tree.body[-1], ast.Expr):
        tree.body.pop()
        last = compile(ast.Expression(final.value), filename, "eval")
    body = compile(tree, filename, "exec")
    return CompiledCommand(body, last, ipython_syntax.calls_shell(source))


def _renamed(code: types.CodeType, filename: str) -> types.CodeType:
    """``code`` and the code nested in it (functions, classes...) as if compiled from
    ``filename``, where tracebacks and ``inspect`` look for its source."""
    consts = tuple(
        _renamed(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts
    )
    return code.replace(co_filename=filename, co_consts=consts)


class Engine:
    """Runs jobs one at a time, in submission order, in one namespace.

    >>> engine = Engine()
    >>> engine.execute("a = 5; a * 2").result["text/plain"]
    '10'
    """

    def __init__(
        self,
        namespace: dict[str, Any] | None = None,
        streams: tuple[CapturedStream, CapturedStream] | None = None,
        history_length: int = 10_000,
    ) -> None:
        #: Called (from the submitting thread) after each ``submit``: how a GUI event
        #: loop learns it has work, instead of a thread waiting in ``serve``.
        self.on_submit: Callable[[], None] | None = None
        self.namespace: dict[str, Any] = namespace if namespace is not None else {}
        #: What this engine's commands display, and the shell that lets display() reach it.
        self.rich = RichOutput()
        self.namespace.setdefault("__name__", "__main__")
        self.streams = streams
        self.history: OrderedDict[int, CommandRecord] = OrderedDict()
        self.history_length = history_length
        #: The linecache entry each command in the history put there, by number.
        self._sources: dict[int, tuple[str, tuple[Any, ...]]] = {}
        self.commands_run = 0
        self.thread_id: int | None = None
        self._queue: deque[Job] = deque()
        self._wake = threading.Condition()
        #: The job taken off the queue, until its ``done`` has returned.
        self._current: Job | None = None
        #: Whether ``_current`` has started its action (or is past it).
        self._began = False
        #: A job that was interrupted before it started: it fails as it would start.
        self._interrupt_target: Job | None = None
        self._interruptible = False
        self._interrupt_requested = False
        self._interrupt_signals_until = 0.0
        self._shutdown_requested = False
        #: Set by ``install_signal_handlers``.
        self.signal_relay: SignalRelay | None = None
        self._interrupt_lock = threading.Lock()
        self._async_interrupt_pending = False
        self._output_sink: Callable[[str, str], None] | None = None
        self._output_lock = threading.Lock()
        self._next_number = 1

    # -- any thread -----------------------------------------------------------------

    def submit(
        self, kind: str, action: Callable[[], Any], done: Callable[..., None], tag: Any = None
    ) -> None:
        """Queue ``action`` to run after everything submitted before it."""
        with self._wake:
            self._queue.append(Job(kind, action, done, tag=tag))
            self._wake.notify()
        if self.on_submit is not None:
            self.on_submit()

    @property
    def busy(self) -> bool:
        """True while a job runs or waits to run."""
        return self._current is not None or bool(self._queue)

    @property
    def queued(self) -> int:
        """Jobs waiting behind the running one."""
        return len(self._queue)

    def abort(self, tags: Container[Any] | None = None) -> list[Job]:
        """Drop the queued jobs (not the running one) whose tag is in ``tags``, or every
        queued job; return them, oldest first."""
        with self._interrupt_lock, self._wake:
            dropped: list[Job] = []
            kept: list[Job] = []
            for job in self._queue:
                (dropped if tags is None or job.tag in tags else kept).append(job)
            self._queue.clear()
            self._queue.extend(kept)
            if self._interrupt_target in dropped:
                self._interrupt_target = None
        return dropped

    def interrupt(self) -> bool:
        """Raise KeyboardInterrupt in the running job, or, when none has started yet, in
        the next one as it starts; False when no job runs or waits."""
        with self._interrupt_lock:
            ident = self.thread_id
            if not self._interruptible or ident is None:
                return self._interrupt_next()
            if ident == threading.main_thread().ident:
                self._interrupt_requested = True
                self._send_interrupt_signal()
                threading.Thread(
                    target=self._resend_until_taken, args=(self._current,), daemon=True
                ).start()
            else:
                _set_async_exception(ident, KeyboardInterrupt)
                self._async_interrupt_pending = True
        return True

    def _interrupt_next(self) -> bool:
        """Mark the job that runs next (taken off the queue, or first in it) to fail as it
        starts. ``_interrupt_lock`` held."""
        with self._wake:
            if self._current is not None and not self._began:
                target = self._current
            elif self._queue:
                target = self._queue[0]
            else:
                return False
        if target.kind == STOP:
            return False
        self._interrupt_target = target
        return True

    def _send_interrupt_signal(self) -> None:
        self._interrupt_signals_until = time.monotonic() + INTERRUPT_RESEND * (RESENDS + 10)
        signal.pthread_kill(main_thread_id(), signal.SIGINT)

    def _resend_until_taken(self, job: Job | None) -> None:
        """Send SIGINT again until the handler has run, while ``job`` still runs.

        A signal that lands just before the main thread enters a blocking call (a
        ``time.sleep``, a wait in C) is only handled once the call returns; another one
        interrupts the call.
        """
        for _ in range(RESENDS):
            time.sleep(INTERRUPT_RESEND)
            with self._interrupt_lock:
                if not (self._interrupt_requested and self._interruptible and self._current is job):
                    return
                self._send_interrupt_signal()

    # -- the engine thread ----------------------------------------------------------

    def install_signal_handlers(self, on_shutdown: Callable[[], None] | None = None) -> None:
        """SIGTERM, and a SIGINT from outside, stop the engine; our own SIGINT interrupts.

        Call from the main thread, which must be the one running jobs. A stop signal
        raises EngineShutdown there, whichever thread received it (see ``SignalRelay``);
        but between jobs, when given, ``on_shutdown()`` is called instead (a GUI event
        loop, which must not see the exception, stops itself).
        """

        def on_signal(signum: int, frame: Any) -> None:
            if signum == signal.SIGINT and self._interrupt_requested:
                self._interrupt_requested = False
                if self._interruptible:
                    raise KeyboardInterrupt
                return
            if signum == signal.SIGINT and time.monotonic() < self._interrupt_signals_until:
                return  # one of ours, sent again after the first was taken
            if on_shutdown is not None and self._current is None:
                # No job may start after this, even one already on its way to run.
                self._shutdown_requested = True
                on_shutdown()
                return
            raise EngineShutdown(signal.Signals(signum).name)

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        self.signal_relay = SignalRelay((signal.SIGINT, signal.SIGTERM))

    def serve(self) -> None:
        """Run jobs until ``EngineShutdown`` is raised in this thread (by ``stop``)."""
        self.thread_id = threading.get_ident()
        while True:
            with self._wake:
                while not self._queue:
                    self._wake.wait()
                job = self._take()
            self.run_job(job)

    def run_next(self) -> None:
        """Run the oldest queued job, if there is one, on this thread."""
        with self._wake:
            if not self._queue:
                return
            job = self._take()
        self.run_job(job)

    def _take(self) -> Job:
        """The oldest queued job, now current: an interrupt from here on is for it.
        ``_wake`` held."""
        job = self._queue.popleft()
        self._current, self._began = job, False
        return job

    def stop(self) -> None:
        """Make ``serve`` return: queues a job that raises EngineShutdown."""

        def halt() -> None:
            raise EngineShutdown

        self.submit(STOP, halt, lambda value, error: None)

    def run_job(self, job: Job) -> None:
        """Run one job on this thread and hand its outcome to ``job.done``.

        Only the job's action can be interrupted: an interrupt that arrives as it ends
        is withdrawn under the same lock ``interrupt`` takes, so it can never land in
        the engine's own code.
        """
        self.thread_id = threading.get_ident()
        with self._wake:
            if self._current is not job:  # given here, not taken off the queue
                self._current, self._began = job, False
        value, error = None, None
        try:
            try:
                if self._shutdown_requested:
                    raise EngineShutdown("stop requested before this job started")
                with self._interrupt_lock:
                    self._began = self._interruptible = True
                    interrupted = self._interrupt_target is job
                    if interrupted:
                        self._interrupt_target = None
                if interrupted:
                    raise KeyboardInterrupt("interrupted before it started")
                value = job.action()
            finally:
                self._end_interruptible()
        except EngineShutdown:
            raise
        except BaseException as exc:
            error = error_record(exc, skip_frames=2)
        finally:
            self._current = None
        job.done(value, error)

    def _end_interruptible(self) -> None:
        with self._interrupt_lock:
            self._interruptible = False
            if self._async_interrupt_pending:
                self._async_interrupt_pending = False
                _set_async_exception(threading.get_ident(), None)

    # -- operations (run on the engine thread, inside a job) ------------------------

    def execute(
        self,
        source: str,
        filename: str | None = None,
        on_output: Callable[[str, str], None] | None = None,
    ) -> CommandRecord:
        """Run ``source`` as a numbered command; errors are recorded, not raised.

        ``on_output(stream_name, text)`` receives output while the command runs, each
        time ``stream_output`` is called, and the rest before this returns. Display data
        the command publishes (``display()``, matplotlib figures) goes to
        ``record.displays``; see ``RichOutput``.
        """
        record = CommandRecord(self._next_number, source, submitted=time.time())
        self._next_number += 1
        name = f"<ipk-input-{record.number}>" if filename is None else filename
        self._remember(record, name)
        with self.captured_output() as printed:
            self._output_sink = on_output
            self.rich.begin_command()
            record.started = time.time()
            try:
                value = self._run_source(source, name)
                if value is not None:
                    record.result = self.format(value)
            except SyntaxError as exc:
                record.error = error_record(exc, skip_frames=99)
            except EngineShutdown:
                raise
            except BaseException as exc:
                if ipython_syntax.is_usage_error(exc):
                    record.error = message_record(exc)
                else:
                    record.error = error_record(exc, skip_frames=2)
            finally:
                try:
                    # Before the streams stop: drawing a figure may print a warning or error.
                    record.displays = self.rich.end_command()
                finally:
                    record.completed = time.time()
                    self.stream_output()
                    self._output_sink = None
                    self.commands_run += 1
        record.stdout, record.stderr = printed.stdout, printed.stderr
        return record

    @contextlib.contextmanager
    def captured_output(self) -> Iterator[PrintedOutput]:
        """Collect what the code run inside the block prints; the text is in the yielded
        ``PrintedOutput`` once the block has ended (empty without captured streams)."""
        printed = PrintedOutput()
        for stream in self.streams or ():
            stream.start()
        try:
            yield printed
        finally:
            if self.streams:
                printed.stdout, printed.stderr = (s.stop() for s in self.streams)

    def stream_output(self) -> None:
        """Hand the running command's new output to its ``on_output`` (any thread)."""
        with self._output_lock:
            sink = self._output_sink
            if sink is None or not self.streams:
                return
            for stream in self.streams:
                text = stream.take_unsent()
                if text:
                    sink(stream.name, text)

    def _run_source(self, source: str, filename: str) -> Any:
        code = _compile(source, filename)
        if code.uses_shell:
            self.rich.interactive_shell(self.namespace)
        exec(code.body, self.namespace)
        return None if code.last is None else eval(code.last, self.namespace)

    def format(self, value: Any) -> dict[str, Any]:
        """Display data of a value: text/plain always, richer types where it has them.

        JSON-ready (binary data base64-encoded), with the formatter ``display()`` uses,
        so a matplotlib Figure gives image/png. IPython is imported on first use.
        """
        return self.rich.format_value(value)

    def _remember(self, record: CommandRecord, filename: str) -> None:
        """Keep the record, and its source where tracebacks find it, while in the history."""
        source = record.source
        entry = (len(source), None, source.splitlines(True), filename)
        linecache.cache[filename] = entry
        self._sources[record.number] = (filename, entry)
        self.history[record.number] = record
        while len(self.history) > self.history_length:
            number, _ = self.history.popitem(last=False)
            name, old = self._sources.pop(number)
            # A later command run from the same file has replaced the entry: keep that one.
            if linecache.cache.get(name) is old:
                del linecache.cache[name]

    def result(self, number: int | None = None) -> CommandRecord:
        """Command ``number`` from the history; the last one by default."""
        if not self.history:
            raise LookupError("no command has run on this kernel yet")
        if number is None:
            return next(reversed(self.history.values()))
        if number < 0:
            number = self._next_number + number
        try:
            return self.history[number]
        except KeyError:
            first = next(iter(self.history))
            raise LookupError(
                f"no command {number} in the history (it holds {first} to {self._next_number - 1})"
            ) from None

    def push(self, values: Mapping[str, Any]) -> list[str]:
        """Bind names in the namespace, all or none; return the names bound."""
        bad = [name for name in values if not (isinstance(name, str) and name.isidentifier())]
        if bad:
            raise NameError(f"not valid Python names: {', '.join(map(repr, bad))}")
        self.namespace.update(values)
        return list(values)

    def pull(self, names: Iterable[str]) -> list[Any]:
        """The values bound to ``names``; NameError names the first one missing."""
        try:
            return [self.namespace[name] for name in names]
        except KeyError as e:
            raise NameError(f"name {e.args[0]!r} is not defined") from None

    def delete(self, names: Iterable[str]) -> None:
        """Unbind ``names``; NameError (and nothing deleted) if one is missing."""
        names = list(names)
        self.pull(names)
        for name in names:
            del self.namespace[name]

    def keys(self) -> list[str]:
        """User-visible names in the namespace: not dunder names, nor the IPython shell's
        own (``get_ipython``, ``In``...) unless the user has rebound them."""
        shell = self.rich.interactive
        hidden = {} if shell is None else shell.user_ns_hidden
        return [
            name
            for name, value in self.namespace.items()
            if not name.startswith("__") and (name not in hidden or hidden[name] is not value)
        ]

    def apply(self, func: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
        """Call ``func(*args, **kwargs)`` here (or run a ``Chunk`` of such calls).

        A function defined interactively on the client (module ``__main__``, or marked
        ``@interactive``) runs with this kernel's namespace as its globals, as in
        ipyparallel: ``apply(lambda: a)`` reads the kernel's ``a`` and ``global``
        statements bind there. Names it captured on the client are added where the
        namespace lacks them. ``Reference`` arguments are replaced by the values they
        name here.
        """
        if isinstance(func, Chunk):
            return func.run(self._bound, self._resolved)
        args, kwargs = self._resolved(args, kwargs)
        return self._bound(func)(*args, **kwargs)

    def _resolved(self, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        return resolve_arguments(args, kwargs, self.namespace)

    def _bound(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """``func``, with this namespace as its globals if it is interactive (and
        checking its ``@require``/``@depend`` first, if it has one)."""
        if isinstance(func, Dependent):
            return func.bound(self._bound, self.namespace)
        if not (isinstance(func, types.FunctionType) and func.__module__ == "__main__"):
            return func
        for name, value in func.__globals__.items():
            if not name.startswith("__"):
                self.namespace.setdefault(name, value)
        rebound = types.FunctionType(
            func.__code__, self.namespace, func.__name__, func.__defaults__, func.__closure__
        )
        rebound.__kwdefaults__ = func.__kwdefaults__
        return rebound

    def reset(self) -> None:
        """Empty the namespace (history and numbering stay, and the IPython shell's names
        once a command has used IPython syntax)."""
        kept = {k: v for k, v in self.namespace.items() if k in ("__name__", "__builtins__")}
        self.namespace.clear()
        self.namespace.update(kept)
        shell = self.rich.interactive
        if shell is not None:
            shell.init_user_ns()
