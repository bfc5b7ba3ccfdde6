"""What every result says, in ipyparallel's AsyncResult vocabulary.

A result is a ``concurrent.futures.Future`` of one or more requests, its *parts*: one
per target of a DirectView call, one per task of a load-balanced map, or just one
(``RemoteKernel.apply_async``). Besides its value (``get``, ``ready``, ``wait``, ``r``,
``successful``) it tells, part by part, what ipyparallel's metadata tells: where and
when each part ran, and what it printed::

    >>> ar = dview.apply_async(work)
    >>> ar.get()
    >>> ar.engine_id, ar.stdout                  # one item per part
    >>> ar.wall_time, ar.serial_time             # seconds: first submitted to last
    ...                                          # received; the sum of the run times
    >>> ar.metadata[0].started                   # a datetime, as ipyparallel has it
    >>> ar.display_outputs()                     # [stdout:0] ..., as %px shows it
    >>> ar.wait_interactive()                    # a progress bar while it runs

Timestamps are taken as Unix times (the kernel's clock for ``started`` and
``completed``, this process's for ``submitted`` and ``received``) and turned into
timezone-aware datetimes only when asked for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from ..core.records import CommandRecord
from ..errors import KernelTimeout
from . import display


class Metadata(dict):
    """One part's metadata: a dict whose keys also read as attributes.

    Keys: ``msg_id``, ``engine_id``, ``submitted``, ``started``, ``completed`` and
    ``received`` (datetimes, None until known), ``stdout``, ``stderr``, ``outputs``
    (display data published), ``execute_result`` (the display data of an executed
    command's result), ``error`` (the exception, or None) and ``status``.
    """

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"no metadata {key!r}; there are {', '.join(self)}") from None


def when(stamp: float | None) -> datetime | None:
    """A Unix time as a timezone-aware datetime (None stays None)."""
    return None if not stamp else datetime.fromtimestamp(stamp, UTC)


class Part:
    """What one request learnt about itself, as it was sent, ran and came back.

    ``submitted`` and ``received`` are set on this side; ``started``, ``completed``,
    ``stdout``, ``stderr``, ``outputs`` and ``execute_result`` come with the reply.
    """

    def __init__(self) -> None:
        #: An id unique in this process, as ipyparallel's msg_id is.
        self.msg_id = ""
        self.engine_id: int | None = None
        self.submitted: float | None = time.time()
        self.started: float | None = None
        self.completed: float | None = None
        self.received: float | None = None
        self.stdout = ""
        self.stderr = ""
        self.outputs: tuple[dict[str, Any], ...] = ()
        self.execute_result: dict[str, Any] | None = None

    def take_reply_details(self, details: dict[str, Any]) -> None:
        """Keep what a reply (or the record it carries) says of the request's run."""
        self.received = time.time()
        self.started = details.get("started")
        self.completed = details.get("completed")
        self.stdout = details.get("stdout", "")
        self.stderr = details.get("stderr", "")
        self.outputs = tuple(details.get("displays", ()))
        self.execute_result = details.get("result")

    def copy_details(self, other: Part) -> None:
        """Take ``other``'s details (a task keeps those of the request that ran it)."""
        self.started, self.completed, self.received = other.started, other.completed, other.received
        self.stdout, self.stderr = other.stdout, other.stderr
        self.outputs, self.execute_result = other.outputs, other.execute_result

    def describe(self, error: BaseException | None, done: bool) -> Metadata:
        """This part's metadata (``error``: its exception, if it failed)."""
        return Metadata(
            msg_id=self.msg_id,
            engine_id=self.engine_id,
            submitted=when(self.submitted),
            started=when(self.started),
            completed=when(self.completed),
            received=when(self.received),
            stdout=self.stdout,
            stderr=self.stderr,
            outputs=list(self.outputs),
            execute_result=self.execute_result,
            error=error,
            status=("error" if error is not None else "ok") if done else "pending",
        )

    def record(self) -> CommandRecord:
        """What this part printed and displayed, as a command's record (for display)."""
        return CommandRecord(
            number=0,
            source="",
            stdout=self.stdout,
            stderr=self.stderr,
            result=self.execute_result,
            started=self.started or 0.0,
            completed=self.completed or 0.0,
            displays=list(self.outputs),
        )


class MetadataField:
    """A result attribute that reads one metadata key of every part (of the one part,
    for a ``single`` result): ``ar.engine_id``, ``ar.stdout``, ``ar.started``..."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name

    def __get__(self, result: FutureResult | None, owner: type) -> Any:
        if result is None:
            return self
        return result.metadata_key(self.key)


class FutureResult(Future):
    """A ``concurrent.futures.Future`` that speaks ipyparallel's AsyncResult.

    Subclasses say what their parts are (``parts_details``) and how many items the
    result holds (``__len__``); ``single`` results (one request to one kernel, or to
    a target given as an int) give one value, one metadata, instead of lists.
    """

    #: One part whose value is the result itself rather than a list of one.
    single = False

    # -- the value ---------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> Any:
        """The result, waiting at most ``timeout`` seconds; raises the remote error."""
        try:
            return self.result(timeout)
        except FutureTimeout:
            raise KernelTimeout(self.still_running(timeout)) from None

    def ready(self) -> bool:
        """True once every part is done."""
        return self.done()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until done; True if it finished within ``timeout`` seconds."""
        try:
            self.exception(None if timeout is None or timeout < 0 else timeout)
        except FutureTimeout:
            return False
        return True

    @property
    def r(self) -> Any:
        """``get()``, as ipyparallel has it."""
        return self.get()

    def successful(self) -> bool:
        """Whether it succeeded; RuntimeError while it is still running."""
        if not self.done():
            raise RuntimeError("successful() needs the result: it is still running")
        return self.exception() is None

    def still_running(self, timeout: float | None) -> str:
        """What a KernelTimeout from ``get`` says."""
        raise NotImplementedError

    # -- the parts ---------------------------------------------------------------------

    def parts_details(self) -> list[tuple[Part, BaseException | None, bool]]:
        """Each part, its exception if it failed, and whether it is done."""
        raise NotImplementedError

    @property
    def progress(self) -> int:
        """How many parts are done."""
        return sum(done for _, _, done in self.parts_details())

    @property
    def metadata(self) -> Any:
        """Each part's ``Metadata`` (the one part's, for a single result)."""
        found = [part.describe(error, done) for part, error, done in self.parts_details()]
        return found[0] if self.single else found

    def metadata_key(self, key: str) -> Any:
        """One metadata key of every part (of the one part, for a single result)."""
        found = [part.describe(error, done)[key] for part, error, done in self.parts_details()]
        return found[0] if self.single else found

    msg_id = MetadataField()
    engine_id = MetadataField()
    submitted = MetadataField()
    started = MetadataField()
    completed = MetadataField()
    received = MetadataField()
    stdout = MetadataField()
    stderr = MetadataField()
    outputs = MetadataField()
    execute_result = MetadataField()
    error = MetadataField()

    @property
    def msg_ids(self) -> list[str]:
        """The id of every part's request."""
        return [part.msg_id for part, _, _ in self.parts_details()]

    # -- timings -------------------------------------------------------------------------

    def timedelta(
        self,
        start: Any,
        end: Any,
        start_key: Callable[[list[datetime]], datetime] = min,
        end_key: Callable[[list[datetime]], datetime] = max,
    ) -> float:
        """Seconds from ``start`` to ``end``: datetimes, or lists of them reduced by
        ``start_key`` (earliest) and ``end_key`` (latest), e.g.
        ``ar.timedelta(ar.started, ar.completed)``."""
        first = start if isinstance(start, datetime) else start_key(start)
        last = end if isinstance(end, datetime) else end_key(end)
        return (last - first).total_seconds()

    @property
    def wall_time(self) -> float:
        """Seconds from the first part submitted to the last one received (once done)."""
        self._check_done("wall_time")
        parts = [part for part, _, _ in self.parts_details()]
        return max(p.received or 0.0 for p in parts) - min(p.submitted or 0.0 for p in parts)

    @property
    def serial_time(self) -> float:
        """The parts' run times added up, as the kernels measured them (once done)."""
        self._check_done("serial_time")
        return sum(
            max(0.0, (p.completed or 0.0) - (p.started or 0.0)) for p, _, _ in self.parts_details()
        )

    @property
    def elapsed(self) -> float:
        """Seconds since the first part was submitted (``wall_time`` once done)."""
        if self.done():
            return self.wall_time
        stamps = [p.submitted for p, _, _ in self.parts_details() if p.submitted]
        return time.time() - min(stamps) if stamps else 0.0

    def _check_done(self, what: str) -> None:
        if not self.done():
            raise RuntimeError(f"{what} is known once every part is done: wait() first")

    # -- showing it ----------------------------------------------------------------------

    def wait_interactive(
        self, interval: float = 0.1, timeout: float | None = None, widget: bool | None = None
    ) -> None:
        """Wait, with a progress bar of the parts done: a widget in a notebook (where
        ipywidgets is installed, or ``widget=True``), else a text bar. KernelTimeout
        after ``timeout`` seconds (None or negative: no limit)."""
        limit = None if timeout is None or timeout < 0 else timeout
        deadline = None if limit is None else time.monotonic() + limit
        bar = display.progress_bar(len(self), self._label(), "tasks", widget)
        try:
            while not self.wait(interval):
                bar.update(self.progress - bar.n)
                if deadline is not None and time.monotonic() >= deadline:
                    raise KernelTimeout(self.still_running(limit))
            bar.update(self.progress - bar.n)
        finally:
            bar.close()

    def _label(self) -> str:
        return getattr(self, "what", type(self).__name__)

    def display_outputs(self, groupby: str = "type", result_only: bool = False) -> None:
        """Show what the parts printed and displayed, labelled by kernel as ``%px``
        does: ``groupby='type'`` (all stdout, then all stderr), ``'engine'`` (each
        kernel's together) or ``'order'`` (each kernel's together, in the order they
        finished). ``result_only``: only the results of executed commands."""
        if groupby not in display.GROUPINGS:
            raise ValueError(f"groupby={groupby!r}: one of {', '.join(display.GROUPINGS)}")
        self.wait()
        details = self.parts_details()
        targets = [part.engine_id if part.engine_id is not None else 0 for part, _, _ in details]
        records = [part.record() for part, _, _ in details]
        display.show_outputs(targets, records, streamed=result_only, group=groupby)

    @contextmanager
    def stream_output(self) -> Iterator[None]:
        """Within the ``with`` block, show each part's output as it arrives, labelled
        by kernel: streamed while it runs where the request streams (``execute``),
        else as each part finishes::

            with ar.stream_output():
                ar.wait()
        """
        showing = threading.Event()
        showing.set()
        shown: set[int] = set()
        lock = threading.Lock()

        def show_finished(_: Future) -> None:
            with lock:
                for index, (part, _failure, done) in enumerate(self.parts_details()):
                    if done and index not in shown and showing.is_set():
                        shown.add(index)
                        for name in ("stdout", "stderr"):
                            text = getattr(part, name)
                            if text:
                                display.print_stream(part.engine_id or 0, name, text)

        relay = getattr(self, "relay", None)
        if relay is not None:
            with relay.listening(display.print_stream):
                yield
            return
        for future in self.part_futures() or [self]:
            future.add_done_callback(show_finished)
        try:
            yield
        finally:
            showing.clear()

    def part_futures(self) -> list[Future]:
        """The futures that complete as each part does (for callbacks)."""
        return []

    def abort(self) -> None:
        """Withdraw the parts that have not started; those fail (RemoteError
        ``Aborted``, or TaskAborted for load-balanced tasks still queued here), the
        others run on. RuntimeError once it is done."""
        if self.done():
            raise RuntimeError("abort(): it is done already")
        self.withdraw()

    def withdraw(self) -> None:
        """Withdraw the parts not started (``abort`` without its check)."""
        for future in self.part_futures():
            if isinstance(future, FutureResult):
                future.withdraw()

    def __len__(self) -> int:
        return len(self.parts_details())


class OutputRelay:
    """Output streamed by the requests of one result: kept, and passed on to whoever
    listens (``stream_output``), each listener first given what came before it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: list[tuple[int, str, str]] = []
        self._listeners: list[Callable[[int, str, str], None]] = []

    def __call__(self, target: int, name: str, text: str) -> None:
        """One piece of output of ``target`` (reactor thread, or a reading caller)."""
        with self._lock:
            self._seen.append((target, name, text))
            listeners = list(self._listeners)
        for listener in listeners:
            listener(target, name, text)

    @contextmanager
    def listening(self, listener: Callable[[int, str, str], None]) -> Iterator[None]:
        """Give ``listener`` every piece so far, then each new one, within the block."""
        with self._lock:
            for piece in self._seen:
                listener(*piece)
            self._listeners.append(listener)
        try:
            yield
        finally:
            with self._lock:
                self._listeners.remove(listener)
