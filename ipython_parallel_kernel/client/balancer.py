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

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

from ..core import serialize
from ..core.tasks import Chunk
from ..errors import (
    CompositeError,
    ImpossibleDependency,
    KernelDied,
    KernelTimeout,
    NoKernels,
    RemoteError,
    TaskAborted,
)
from .bridges import ViewExecutor, register_joblib_backend
from .cluster import parse_targets
from .dependencies import Dependencies, dependencies
from .futures import FutureResult, Part
from .kernel import AsyncResult, Blocking, RemoteKernel, pick
from .views import ParallelFunction, joiner, partition

if TYPE_CHECKING:
    from .client import Client

#: Tasks outstanding on one kernel at the least: one running, one queued behind it.
IN_FLIGHT = 2
#: What ``set_flags`` and ``temp_flags`` set.
FLAGS = ("block", "retries", "after", "follow", "timeout")


class Task(Part):
    """One request to run somewhere: the calls of ``chunk``, and where it may run.

    ``on_done(task)`` is called once, when it has its values or its error.
    """

    def __init__(
        self,
        chunk: Chunk,
        on_done: Callable[[Task], None],
        retries: int = 0,
        depends: Dependencies | None = None,
    ) -> None:
        super().__init__()
        self.chunk = chunk
        self.msg_id = f"task-{next(_task_numbers)}"
        self.on_done = on_done
        self.values: list[Any] | None = None
        self.failure: BaseException | None = None
        self.finished = False
        #: How many more times it is sent again after failing.
        self.retries = retries
        self.depends = depends
        #: The kernels it may run on (``follow``), once its dependencies are done.
        self.allowed: set[int] | None = None
        #: Kernels it is not sent to again: it failed there, or its dependency was unmet.
        self.refused: set[int] = set()
        self.refusal: BaseException | None = None
        #: Withdrawn (``abort``) while it waited for its dependencies.
        self.withdrawn = False
        #: The request that runs it (whose ``data`` its code publishes), once sent.
        self.reply: AsyncResult | None = None

    def finish(self, values: list[Any] | None, failure: BaseException | None) -> None:
        """Give the task its outcome and tell its result (call without the balancer's lock)."""
        self.values, self.failure, self.finished = values, failure, True
        self.on_done(self)


_task_numbers = itertools.count()


class Balancer:
    """The queue of one view's tasks and the kernels that take them.

    How many tasks a kernel may have outstanding follows how fast it finishes them:
    enough to keep about ``BUFFERED`` seconds of work queued on it (so a round trip
    never leaves it idle), between ``in_flight`` and ``MOST_IN_FLIGHT``. Short tasks
    are thus pipelined deeply; long ones are held back here, where any kernel that
    frees up can take them.

    A task whose ``after`` or ``follow`` results are not done waits outside the queue
    until they are; one with ``follow`` then runs only where those ran; one whose
    function's dependency (``@require``, ``@depend``) is unmet on a kernel is sent to
    another; one that fails with ``retries`` left is sent again, elsewhere if it can be.
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
        #: Whether a queued task may run only on some kernels: the queue is then
        #: searched for tasks that fit, instead of taken in order.
        self._restricted = 0
        self._lock = threading.Lock()

    @property
    def pickler(self) -> str:
        """The pickler of these kernels' connections (``use_dill()`` and its kin set it
        on every kernel of a view at once): the first kernel's."""
        first = next(iter(self._kernels.values()), None)
        return serialize.DEFAULT_PICKLER if first is None else first.pickler

    def submit(self, tasks: list[Task]) -> None:
        """Queue ``tasks`` (each once its dependencies are done) and send what the
        kernels have room for."""
        waiting = [task for task in tasks if task.depends is not None]
        if waiting:
            tasks = [task for task in tasks if task.depends is None]
            for task in waiting:
                assert task.depends is not None
                task.depends.when_settled(partial(self._dependencies_settled, task))
        with self._lock:
            self._queue.extend(tasks)
            ready, failed = self._take_ready()
        self._send(ready, failed)

    def _dependencies_settled(self, task: Task, outcome: BaseException | set[int] | None) -> None:
        """``task``'s ``after``/``follow`` results are done (any thread): queue it, with
        the kernels ``follow`` allows, or fail it if they can no longer be met."""
        if task.withdrawn:
            outcome = TaskAborted(f"{task.msg_id} was withdrawn before it was sent")
        if isinstance(outcome, BaseException):
            task.finish(None, outcome)
            return
        with self._lock:
            task.allowed = outcome
            self._queue_restricted(task, front=False)
            ready, failed = self._take_ready()
        self._send(ready, failed)

    def withdraw(self, tasks: list[Task]) -> None:
        """Take ``tasks`` out of the queue (those sent already run on): they fail with
        TaskAborted, and so do those still waiting for their dependencies."""
        wanted = set(map(id, tasks))
        with self._lock:
            taken = [task for task in self._queue if id(task) in wanted]
            if taken:
                self._queue = deque(task for task in self._queue if id(task) not in wanted)
                self._restricted = sum(1 for t in self._queue if t.allowed is not None or t.refused)
            for task in tasks:
                task.withdrawn = not task.finished
        for task in taken:
            task.finish(None, TaskAborted(f"{task.msg_id} was withdrawn before it was sent"))

    def _queue_restricted(self, task: Task, front: bool) -> None:
        if task.allowed is not None or task.refused:
            self._restricted += 1
        if front:
            self._queue.appendleft(task)
        else:
            self._queue.append(task)

    def _take_ready(self) -> tuple[list[tuple[int, Task]], list[Task]]:
        """Pair queued tasks with the least loaded kernels that have room, and pick out
        those that can run nowhere (lock held)."""
        ready: list[tuple[int, Task]] = []
        failed: list[Task] = []
        if not self._outstanding:
            for task in self._queue:
                task.refusal = NoKernels(
                    "every kernel of this view has gone: make a view of a Client "
                    "connected to running kernels"
                )
            failed, self._queue, self._restricted = list(self._queue), deque(), 0
            return ready, failed
        if self._restricted:
            return self._take_fitting(ready, failed)
        while self._queue:
            engine_id = min(self._outstanding, key=self._load)
            if self._outstanding[engine_id] >= self._limit[engine_id]:
                break
            self._outstanding[engine_id] += 1
            ready.append((engine_id, self._queue.popleft()))
        return ready, failed

    def _take_fitting(
        self, ready: list[tuple[int, Task]], failed: list[Task]
    ) -> tuple[list[tuple[int, Task]], list[Task]]:
        """As ``_take_ready``, for a queue with tasks that may run only on some kernels."""
        kept: deque[Task] = deque()
        for task in self._queue:
            candidates = [
                engine_id
                for engine_id in self._outstanding
                if engine_id not in task.refused
                and (task.allowed is None or engine_id in task.allowed)
            ]
            if not candidates:
                failed.append(task)
                task.refusal = task.refusal or ImpossibleDependency(
                    f"{task.msg_id}: no kernel of this view is left where it may run"
                )
                continue
            engine_id = min(candidates, key=self._load)
            if self._outstanding[engine_id] >= self._limit[engine_id]:
                kept.append(task)
                continue
            self._outstanding[engine_id] += 1
            ready.append((engine_id, task))
        self._queue = kept
        self._restricted = sum(1 for t in kept if t.allowed is not None or t.refused)
        return ready, failed

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

    def _send(self, ready: list[tuple[int, Task]], failed: list[Task]) -> None:
        for task in failed:
            task.finish(None, task.refusal)
        for engine_id, task in ready:
            task.engine_id = engine_id
            task.submitted = time.time()
            reply = self._kernels[engine_id].apply_async(task.chunk)
            task.reply = reply
            task.reply = reply
            reply.add_done_callback(partial(self._done, engine_id, task))

    def _done(self, engine_id: int, task: Task, reply: AsyncResult) -> None:
        error = reply.exception()
        task.copy_details(reply)
        finished = True
        with self._lock:
            if isinstance(error, KernelDied):
                # Not the task's fault: it goes to another kernel, this one takes no more.
                self._outstanding.pop(engine_id, None)
                finished = False
            elif engine_id in self._outstanding:
                self._outstanding[engine_id] -= 1
                self._finished_one(engine_id)
            if isinstance(error, RemoteError) and error.ename == "UnmetDependency":
                task.refused.add(engine_id)
                task.refusal = ImpossibleDependency(
                    f"{task.msg_id}: its dependency is unmet on every kernel of this view"
                )
                finished = False
            elif error is not None and not isinstance(error, KernelDied) and task.retries > 0:
                task.retries -= 1
                if len(self._outstanding) > 1:
                    task.refused.add(engine_id)
                task.refusal = error
                finished = False
            if not finished:
                self._queue_restricted(task, front=True)
            ready, failed = self._take_ready()
        if finished:
            task.finish(None if error is not None else reply.result(), error)
        self._send(ready, failed)


class MapResult(FutureResult):
    """The result of tasks sent through a ``LoadBalancedView``: ipyparallel's
    AsyncResult (``get``, ``ready``, ``wait``, ``successful``, ``r``, ``progress``,
    ``len``, ``[i]``, iteration as results arrive, and each task's metadata)."""

    def __init__(self, what: str, single: bool = False, ordered: bool = True) -> None:
        super().__init__()
        self.what = what
        self.tasks: list[Task] = []
        #: One task of one call (``apply``): ``get`` gives its value, not a list.
        self.single = single
        self.ordered = ordered
        self._finished: list[Task] = []
        self._arrived = threading.Condition(threading.Lock())
        #: The balancer its tasks were given to (for ``abort``).
        self.balancer: Balancer | None = None

    def task_done(self, task: Task) -> None:
        """One of the tasks has its outcome (any thread)."""
        with self._arrived:
            self._finished.append(task)
            self._arrived.notify_all()
            if len(self._finished) < len(self.tasks):
                return
        values, errors = [], []
        for index, each in enumerate(self.tasks):
            if each.failure is None:
                values += each.values or []
            else:
                values += [each.failure] * len(each.chunk)
                errors.append((index, f"kernel {each.engine_id}", each.failure))
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

    def parts_details(self) -> list[tuple[Part, BaseException | None, bool]]:
        return [(task, task.failure, task.finished) for task in self.tasks]

    @property
    def data(self) -> Any:
        """What each task's code published so far (``publish_data``): one dict per task,
        in order (the dict itself for ``apply``)."""
        published = [{} if task.reply is None else task.reply.data for task in self.tasks]
        return published[0] if self.single else published

    def withdraw(self) -> None:
        """Withdraw the tasks not yet sent to a kernel (those sent run on)."""
        if self.balancer is not None:
            self.balancer.withdraw(self.tasks)

    @property
    def progress(self) -> int:
        """How many tasks have finished."""
        return len(self._finished)

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

    def __getitem__(self, index: int | slice | str) -> Any:
        """``ar[i]``: the ``i``-th value (once all are in); ``ar['engine_id']``: that
        metadata key of every task."""
        if isinstance(index, str):
            return self.metadata_key(index)
        return pick(self.get(return_exceptions=True), index, self.single)

    def __iter__(self) -> Iterator[Any]:
        """Each value as soon as it is there: in order, or (``ordered=False``) in the
        order the tasks finish."""
        return self.each()

    def each(self, timeout: float | None = None) -> Iterator[Any]:
        """As iteration; TimeoutError if the values are not all in within ``timeout``
        seconds (``Executor.map``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = 0
        while seen < len(self.tasks):
            with self._arrived:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not self._arrived.wait_for(partial(self._next_in, seen), left):
                    raise TimeoutError(self.still_running(timeout))
                batch = [self.tasks[seen]] if self.ordered else self._finished[seen:]
            seen += len(batch)
            for task in batch:
                if task.failure is not None:
                    raise task.failure
                yield from task.values or []

    def _next_in(self, seen: int) -> bool:
        """Whether the next value to iterate after ``seen`` tasks is there (lock held)."""
        if self.ordered:
            return self.tasks[seen].finished
        return len(self._finished) > seen

    def still_running(self, timeout: float | None) -> str:
        return (
            f"{self.what}: {self.progress} of {len(self.tasks)} tasks finished within "
            f"{timeout} s; the others are still queued or running"
        )

    def __repr__(self) -> str:
        return f"<MapResult {self.what}: {self.progress}/{len(self.tasks)} tasks done>"


class LoadBalancedView(Blocking):
    """Tasks to whichever of the client's kernels (or ``targets``) has room first.

    Flags, set with ``set_flags`` or for a ``with`` block with ``temp_flags``, as in
    ipyparallel: ``block``; ``retries`` (times a failed task is sent again, to another
    kernel where there is one); ``after`` and ``follow`` (results the tasks wait for,
    and whose kernels they run on: see ``client.dependencies``); ``timeout`` (seconds
    a task waits for those before failing with DependencyTimeout)::

        with lview.temp_flags(after=setup, retries=2):
            ar = lview.map_async(work, items)
    """

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
        self.retries = 0
        self.after: Any = None
        self.follow: Any = None
        self.timeout: float | None = None
        self._balancer = Balancer([client.kernels[i] for i in ids], ids, in_flight)

    def __repr__(self) -> str:
        return f"<LoadBalancedView {self.targets if self.targets is not None else 'all'}>"

    def set_flags(self, **flags: Any) -> LoadBalancedView:
        """Set ``block``, ``retries``, ``after``, ``follow`` and ``timeout`` (those
        given); returns the view, so ``lview.set_flags(retries=1).map(...)`` works."""
        unknown = set(flags) - set(FLAGS)
        if unknown:
            raise TypeError(f"no flag {', '.join(sorted(unknown))}; there are {', '.join(FLAGS)}")
        retries = flags.get("retries", self.retries)
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise TypeError(f"retries={retries!r}: a number of times, 0 or more")
        timeout = flags.get("timeout", self.timeout)
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
            raise ValueError(f"timeout={timeout!r}: seconds, 0 or more, or None for no limit")
        for name in ("after", "follow"):
            if name in flags:
                dependencies(flags[name], None, None, self._known)  # refuse a bad one now
        for name, value in flags.items():
            setattr(self, name, self._blocking(value) if name == "block" else value)
        return self

    @contextmanager
    def temp_flags(self, **flags: Any) -> Iterator[None]:  # type: ignore[override]
        """Within the ``with`` block, the flags given are set (see ``set_flags``)."""
        saved = {name: getattr(self, name) for name in FLAGS}
        self.set_flags(**flags)
        try:
            yield
        finally:
            for name, value in saved.items():
                setattr(self, name, value)

    def _known(self, msg_id: str) -> FutureResult:
        """The result holding the load-balanced task ``msg_id`` (for ``after='task-3'``)."""
        for result in list(self.client.task_results):
            if msg_id in result.msg_ids:
                return result
        raise ValueError(f"no task {msg_id!r} among this client's load-balanced results")

    def _tasks(self, chunks: list[Chunk], result: MapResult) -> list[Task]:
        depends = dependencies(self.after, self.follow, self.timeout, self._known)
        tasks = [Task(chunk, result.task_done, self.retries, depends) for chunk in chunks]
        result.tasks = tasks
        result.balancer = self._balancer
        self.client.task_results.add(result)
        return tasks

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
        result = MapResult(f"apply({getattr(f, '__name__', 'function')})", single=True)
        self._balancer.submit(self._tasks([Chunk(f, [args], kwargs)], result))
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
        chunks = [Chunk(shipped, items[i : i + chunksize]) for i in range(0, len(items), chunksize)]
        result = MapResult(f"map({getattr(f, '__name__', 'function')})", ordered=ordered)
        tasks = self._tasks(chunks, result)
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

    def parallel(
        self, dist: str = "b", block: bool | None = None, chunksize: int | None = None
    ) -> Callable[[Callable[..., Any]], ParallelFunction]:
        """Decorate a function to run on parts of its arguments, each part a task for
        the first kernel with room (``chunksize`` items a part; default: one part per
        kernel), the parts of the result put back together when blocking (else the
        MapResult gives one value per part); ``.map`` runs it item by item::

            @lview.parallel()
            def f(x):
                return 10.0 * x**4


            f.map(range(32))  # [0.0, 10.0, 160.0, ...]
        """
        return lambda f: ParallelFunction(self, f, dist, block, chunksize)

    def _call_on_parts(
        self, function: ParallelFunction, sequences: tuple[Sequence, ...], kwargs: dict
    ) -> Any:
        """``ParallelFunction.__call__`` here: each part of the sequences one task."""
        length = min(len(seq) for seq in sequences)
        kernels = len(parse_targets(self.targets, len(self.client.kernels)))
        size = function.chunksize or -(-length // kernels)
        count = max(1, -(-length // max(1, size)))
        parts = [partition(seq, count, function.dist) for seq in sequences]
        func = partial(function.func, **kwargs) if kwargs else function.func
        result = self.map(func, *parts, block=False)
        if not self._blocking(function.block):
            return result
        return joiner(function.dist)(result.get(self.client.timeout))

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
