"""ipyparallel's ``LoadBalancedView``: tasks go to whichever kernel is free.

There is no scheduler process: this client keeps the queue. Each kernel has a
bounded number of tasks outstanding (at least 2: one running, one waiting behind it
so the round trip is hidden; more for tasks so short that two would leave it idle,
see ``Balancer``), and a task is sent to the least loaded kernel as soon as one has
room. So a slow kernel never holds work a free one
could do, and a map of uneven tasks finishes close to the ideal time::

    >>> lview = rc.load_balanced_view()
    >>> lview.map_sync(lambda x: x + 1, range(10_000))      # chunksize=1: one task each
    >>> ar = lview.map_async(slow, items, chunksize=4, ordered=False)
    >>> for value in ar: ...                                 # in the order they finish

A task on a kernel that dies is sent again to another one; when none is left, the
tasks still to run fail with KernelDied.

Thread rules: ``submit`` runs on the caller's thread, a task's completion on whichever
thread completes its reply (the reactor's, or a caller reading its own reply); all
of the queue and the counts are under ``_lock``, and requests are sent outside it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from ..core import serialize
from ..core.tasks import Chunk
from ..errors import CompositeError, KernelDied, KernelTimeout, NoKernels
from .bridges import ViewExecutor, register_joblib_backend
from .cluster import parse_targets
from .kernel import AsyncResult, Blocking, FutureResult, RemoteKernel, pick

if TYPE_CHECKING:
    from .client import Client

#: Tasks outstanding on one kernel at the least: one running, one queued behind it.
IN_FLIGHT = 2


@dataclass
class Task:
    """One request to run somewhere: the calls of ``chunk``."""

    chunk: Chunk
    future: Future = field(default_factory=Future)
    #: The id of the kernel it ran on, once it has.
    engine_id: int | None = None
    #: The request that runs it (whose ``data`` its code publishes), once sent.
    reply: AsyncResult | None = None


class Balancer:
    """The queue of one view's tasks and the kernels that take them.

    How many tasks a kernel may have outstanding follows how fast it finishes them:
    enough to keep about ``BUFFERED`` seconds of work queued on it (so a round trip
    never leaves it idle), between ``in_flight`` and ``MOST_IN_FLIGHT``. Short tasks
    are thus pipelined deeply; long ones are held back here, where any kernel that
    frees up can take them.
    """

    #: Seconds of work kept outstanding on each kernel.
    BUFFERED = 0.002
    #: Most tasks outstanding on one kernel, however short they are.
    MOST_IN_FLIGHT = 32

    def __init__(self, kernels: Sequence[RemoteKernel], ids: Sequence[int], in_flight: int):
        self._kernels = dict(zip(ids, kernels, strict=True))
        self._outstanding = {engine_id: 0 for engine_id in ids}
        self._limit = {engine_id: in_flight for engine_id in ids}
        self._in_flight = in_flight
        # Per kernel: when it last finished a task, and the mean time between two.
        self._last_done: dict[int, float] = {}
        self._interval: dict[int, float] = {}
        self._queue: deque[Task] = deque()
        self._lock = threading.Lock()

    @property
    def pickler(self) -> str:
        """The pickler of these kernels' connections (``use_dill()`` and its kin set it
        on every kernel of a view at once): the first kernel's."""
        first = next(iter(self._kernels.values()), None)
        return serialize.DEFAULT_PICKLER if first is None else first.pickler

    def submit(self, tasks: list[Task]) -> None:
        """Queue ``tasks`` and send what the kernels have room for."""
        with self._lock:
            self._queue.extend(tasks)
            ready = self._take_ready()
        self._send(ready)

    def _take_ready(self) -> list[tuple[int, Task]]:
        """Pair queued tasks with the least loaded kernels that have room (lock held)."""
        ready = []
        while self._queue and self._outstanding:
            engine_id = min(self._outstanding, key=self._load)
            if self._outstanding[engine_id] >= self._limit[engine_id]:
                break
            self._outstanding[engine_id] += 1
            ready.append((engine_id, self._queue.popleft()))
        if not self._outstanding:
            lost, self._queue = list(self._queue), deque()
            for task in lost:
                task.future.set_exception(
                    NoKernels(
                        "every kernel of this view has gone: make a view of a Client "
                        "connected to running kernels"
                    )
                )
        return ready

    def _load(self, engine_id: int) -> float:
        return self._outstanding[engine_id] / self._limit[engine_id]

    def _finished_one(self, engine_id: int) -> None:
        """Learn how fast ``engine_id`` works from when its tasks finish (lock held)."""
        now = time.monotonic()
        last = self._last_done.get(engine_id)
        self._last_done[engine_id] = now
        if last is None:
            return
        interval = self._interval.get(engine_id, now - last)
        interval += 0.2 * (now - last - interval)
        self._interval[engine_id] = interval
        wanted = int(self.BUFFERED / max(interval, 1e-6)) + 1
        self._limit[engine_id] = min(self.MOST_IN_FLIGHT, max(self._in_flight, wanted))

    def _send(self, ready: list[tuple[int, Task]]) -> None:
        for engine_id, task in ready:
            task.engine_id = engine_id
            reply = self._kernels[engine_id].apply_async(task.chunk)
            task.reply = reply
            reply.add_done_callback(partial(self._done, engine_id, task))

    def _done(self, engine_id: int, task: Task, reply: Future) -> None:
        error = reply.exception()
        with self._lock:
            if isinstance(error, KernelDied):
                # Not the task's fault: it goes to another kernel, this one takes no more.
                self._outstanding.pop(engine_id, None)
                self._queue.appendleft(task)
            elif engine_id in self._outstanding:
                self._outstanding[engine_id] -= 1
                self._finished_one(engine_id)
            ready = self._take_ready()
        if not isinstance(error, KernelDied):
            if error is None:
                task.future.set_result(reply.result())
            else:
                task.future.set_exception(error)
        self._send(ready)


class MapResult(FutureResult):
    """The result of tasks sent through a ``LoadBalancedView``: ipyparallel's
    AsyncResult (``get``, ``ready``, ``wait``, ``successful``, ``r``, ``progress``,
    ``len``, ``[i]``, iteration as results arrive, ``engine_id``)."""

    def __init__(
        self, what: str, tasks: list[Task], single: bool = False, ordered: bool = True
    ) -> None:
        super().__init__()
        self.what = what
        self.tasks = tasks
        #: One task of one call (``apply``): ``get`` gives its value, not a list.
        self.single = single
        self.ordered = ordered
        self._lock = threading.Lock()
        self._finished: list[Task] = []
        for task in tasks:
            task.future.add_done_callback(partial(self._one_done, task))

    @property
    def progress(self) -> int:
        """How many tasks have finished."""
        return len(self._finished)

    @property
    def engine_id(self) -> Any:
        """The kernel each task ran on (None while it has not run)."""
        ids = [task.engine_id for task in self.tasks]
        return ids[0] if self.single else ids

    @property
    def data(self) -> Any:
        """What each task's code published so far (``publish_data``): one dict per task,
        in order (the dict itself for ``apply``)."""
        published = [{} if task.reply is None else task.reply.data for task in self.tasks]
        return published[0] if self.single else published

    def _one_done(self, task: Task, future: Future) -> None:
        with self._lock:
            self._finished.append(task)
            if len(self._finished) < len(self.tasks):
                return
        values, errors = [], []
        for index, task in enumerate(self.tasks):
            error = task.future.exception()
            if error is None:
                values += task.future.result()
            else:
                values += [error] * len(task.chunk)
                errors.append((index, f"kernel {task.engine_id}", error))
        if self.single:
            # A future of one call, as concurrent.futures has it: its value or its error.
            if errors:
                self.set_exception(errors[0][2])
            else:
                self.set_result(values[0])
        elif errors:
            self.set_exception(CompositeError(self.what, errors, values))
        else:
            self.set_result(values)

    def get(self, timeout: float | None = None, return_exceptions: bool = False) -> Any:
        """The values, waiting at most ``timeout`` seconds; with ``return_exceptions``,
        a failed task's exception takes its place instead of being raised."""
        try:
            return super().get(timeout)
        except KernelTimeout:
            raise
        except Exception as e:
            if not return_exceptions:
                raise
            return e.results if isinstance(e, CompositeError) else e

    def __len__(self) -> int:
        return sum(len(task.chunk) for task in self.tasks)

    def __getitem__(self, index: int | slice) -> Any:
        return pick(self.get(return_exceptions=True), index, self.single)

    def __iter__(self) -> Iterator[Any]:
        """Each value as soon as it is there: in order, or (``ordered=False``) in the
        order the tasks finish."""
        if self.ordered:
            for task in self.tasks:
                yield from task.future.result()
            return
        seen = 0
        arrived = threading.Condition()
        for task in self.tasks:
            task.future.add_done_callback(lambda _: _notify(arrived))
        while seen < len(self.tasks):
            with arrived:
                arrived.wait_for(partial(self._finished_beyond, seen))
                batch = self._finished[seen:]
            seen += len(batch)
            for task in batch:
                yield from task.future.result()

    def _finished_beyond(self, count: int) -> bool:
        return len(self._finished) > count

    def still_running(self, timeout: float | None) -> str:
        return (
            f"{self.what}: {self.progress} of {len(self.tasks)} tasks finished within "
            f"{timeout} s; the others are still queued or running"
        )

    def __repr__(self) -> str:
        return f"<MapResult {self.what}: {self.progress}/{len(self.tasks)} tasks done>"


def _notify(condition: threading.Condition) -> None:
    with condition:
        condition.notify_all()


class LoadBalancedView(Blocking):
    """Tasks to whichever of the client's kernels (or ``targets``) has room first."""

    def __init__(
        self,
        client: Client,
        targets: Any = None,
        block: bool = False,
        in_flight: int = IN_FLIGHT,
    ) -> None:
        self.client = client
        self.block = self._blocking(block)
        ids = parse_targets(targets, len(client.kernels))
        self.targets = targets
        self._balancer = Balancer([client.kernels[i] for i in ids], ids, in_flight)

    def __repr__(self) -> str:
        return f"<LoadBalancedView {self.targets if self.targets is not None else 'all'}>"

    def _finish(self, result: MapResult, block: bool | None) -> Any:
        return result.get(self.client.timeout) if self._blocking(block) else result

    def apply(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``f(*args, **kwargs)`` on one kernel, the first with room; blocks as
        ``block`` says. Every keyword argument is ``f``'s."""
        return self._apply(None, f, args, kwargs)

    def apply_sync(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """As ``apply``, waiting for the value."""
        return self._apply(True, f, args, kwargs)

    def apply_async(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> MapResult:
        """As ``apply``, returning a MapResult at once."""
        return self._apply(False, f, args, kwargs)

    def _apply(self, block: bool | None, f: Callable, args: tuple, kwargs: dict) -> Any:
        if not callable(f):
            raise TypeError(f"apply() needs a callable, not {type(f).__name__}")
        task = Task(Chunk(f, [args], kwargs))
        result = MapResult(f"apply({getattr(f, '__name__', 'function')})", [task], single=True)
        self._balancer.submit([task])
        return self._finish(result, block)

    def map(
        self,
        f: Callable[..., Any],
        *sequences: Sequence,
        block: bool | None = None,
        chunksize: int = 1,
        ordered: bool = True,
    ) -> Any:
        """``list(map(f, *sequences))``, in tasks of ``chunksize`` items, each sent to
        the first kernel with room. ``ordered=False``: iterating the result gives
        values in the order they finish (``get`` keeps the input's order)."""
        if not sequences:
            raise TypeError("map() needs at least one sequence")
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"chunksize={chunksize!r}: a number of items, 1 or more")
        items = list(zip(*sequences, strict=False))
        shipped, _ = serialize.dumps(f, self._balancer.pickler)  # once, for every chunk
        tasks = [
            Task(Chunk(shipped, items[i : i + chunksize])) for i in range(0, len(items), chunksize)
        ]
        result = MapResult(f"map({getattr(f, '__name__', 'function')})", tasks, ordered=ordered)
        if tasks:
            self._balancer.submit(tasks)
        else:
            result.set_result([])
        return self._finish(result, block)

    def map_sync(self, f: Callable[..., Any], *sequences: Sequence, **options: Any) -> list:
        """As ``map``, waiting for the values."""
        return self.map(f, *sequences, block=True, **options)

    def map_async(self, f: Callable[..., Any], *sequences: Sequence, **options: Any) -> MapResult:
        """As ``map``, returning a MapResult at once."""
        return self.map(f, *sequences, block=False, **options)

    def imap(self, f: Callable[..., Any], *sequences: Sequence, ordered: bool = True) -> Iterator:
        """The values of ``map(f, *sequences)`` as they arrive."""
        return iter(self.map(f, *sequences, block=False, ordered=ordered))

    def wait(self, jobs: Any = None, timeout: float | None = None) -> bool:
        """Wait for ``jobs`` (default: everything this client has outstanding)."""
        return self.client.wait(jobs, timeout)

    @property
    def executor(self) -> ViewExecutor:
        """A ``concurrent.futures.Executor`` whose tasks go through this view."""
        return ViewExecutor(self)

    def register_joblib_backend(
        self, name: str = "ipyparallel", make_default: bool = False
    ) -> None:
        """Let ``joblib.Parallel(backend=name)`` run its tasks through this view."""
        register_joblib_backend(self, [name], make_default)
