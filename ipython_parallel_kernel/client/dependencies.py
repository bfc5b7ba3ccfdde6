"""When and where a load-balanced task may run: ipyparallel's ``after`` and ``follow``.

``after=`` results: the task is sent only once they are done. ``follow=`` results: it
is sent once they are done, and only to a kernel they ran on. Either takes a result
(any result of this client: a load-balanced one, a DirectView's), a msg_id of a
load-balanced task, a list of those, or a ``Dependency``, which also says whether all
of them (``all=True``) or any must be met, and whether success, failure or both meet
them::

    >>> first = lview.apply_async(setup)
    >>> lview.apply_async(work, after=first)          # once setup has succeeded
    >>> lview.apply_async(work, follow=first)         # and on the kernel it ran on
    >>> lview.apply_async(cleanup, after=Dependency([a, b], failure=True))

A dependency that can no longer be met (by default: a result it waits for failed)
fails the task with ``ImpossibleDependency``; one not met within the view's
``timeout`` seconds with ``DependencyTimeout``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ..errors import DependencyTimeout, ImpossibleDependency
from .futures import FutureResult


class Dependency:
    """Some results a task waits for, and what counts as met.

    ``all``: met when all of them are (else when any is); ``success`` and ``failure``:
    whether a result that succeeded, or failed, meets it (at least one must be true).
    """

    def __init__(
        self,
        dependencies: Any = (),
        all: bool = True,
        success: bool = True,
        failure: bool = False,
        *,
        known: Callable[[str], FutureResult] | None = None,
    ) -> None:
        if not (success or failure):
            raise ValueError("a Dependency is met by success, failure or both: not neither")
        self.all = all
        self.success = success
        self.failure = failure
        self.results = _results(dependencies, known)

    def __len__(self) -> int:
        return len(self.results)

    def __repr__(self) -> str:
        return f"<Dependency on {len(self.results)} results, all={self.all}>"

    def _meets(self, result: Future) -> bool:
        failed = result.exception() is not None
        return self.failure if failed else self.success

    def state(self) -> bool | None:
        """True once met, False once it never can be, None while it is not yet known."""
        done = [r for r in self.results if r.done()]
        met = sum(self._meets(r) for r in done)
        unmet = len(done) - met
        if self.all:
            if unmet:
                return False
            return True if met == len(self.results) else None
        if met:
            return True
        return False if unmet == len(self.results) else None

    def kernels(self) -> set[int] | None:
        """The kernels the results ran on: all of them (``all``) or any (None if none)."""
        found = []
        for result in self.results:
            if not isinstance(result, FutureResult):
                continue
            ids = {part.engine_id for part, _, _ in result.parts_details()}
            found.append({i for i in ids if i is not None})
        if not found:
            return None
        return set.intersection(*found) if self.all else set.union(*found)


def _results(dependencies: Any, known: Callable[[str], FutureResult] | None) -> list[Future]:
    if isinstance(dependencies, Dependency):
        return list(dependencies.results)
    if isinstance(dependencies, (str, Future)):
        dependencies = [dependencies]
    results: list[Future] = []
    for item in dependencies:
        if isinstance(item, Future):
            results.append(item)
        elif isinstance(item, str) and known is not None:
            results.append(known(item))
        else:
            raise TypeError(
                f"a dependency is a result, a task's msg_id, or a list of them; "
                f"not {type(item).__name__}"
            )
    return results


class Dependencies:
    """A task's ``after`` and ``follow``, and how long it may wait for them."""

    def __init__(
        self, after: Dependency | None, follow: Dependency | None, timeout: float | None
    ) -> None:
        self.after = after
        self.follow = follow
        self.timeout = timeout

    def when_settled(self, callback: Callable[[BaseException | set[int] | None], None]) -> None:
        """Call ``callback`` once (any thread) with: the kernels the task may run on
        (a set; None for any), once its dependencies are met; or the exception that
        fails it, once they cannot be, or ``timeout`` seconds passed."""
        lock = threading.Lock()
        settled = False
        timer: threading.Timer | None = None

        def settle(outcome: BaseException | set[int] | None) -> None:
            nonlocal settled
            with lock:
                if settled:
                    return
                settled = True
            if timer is not None:
                timer.cancel()
            callback(outcome)

        def check(_: Any = None) -> None:
            states = [d.state() for d in (self.after, self.follow) if d is not None]
            if False in states:
                settle(ImpossibleDependency("a result this task depends on can no longer meet it"))
            elif None not in states:
                allowed = self.follow.kernels() if self.follow is not None else None
                if allowed is not None and not allowed:
                    settle(ImpossibleDependency("the results it follows ran on no one kernel"))
                else:
                    settle(allowed)

        if self.timeout is not None:
            timer = threading.Timer(
                self.timeout,
                settle,
                [DependencyTimeout(f"its dependencies were not met within {self.timeout} s")],
            )
            timer.daemon = True
            timer.start()
        for dependency in (self.after, self.follow):
            for result in dependency.results if dependency is not None else ():
                result.add_done_callback(check)
        check()


def dependencies(
    after: Any, follow: Any, timeout: float | None, known: Callable[[str], FutureResult]
) -> Dependencies | None:
    """A task's Dependencies from what ``apply``/``map`` were given (None: none)."""
    made = [_dependency(d, known) for d in (after, follow)]
    if all(d is None for d in made):
        return None
    return Dependencies(made[0], made[1], timeout)


def _dependency(given: Any, known: Callable[[str], FutureResult]) -> Dependency | None:
    if given is None:
        return None
    made = given if isinstance(given, Dependency) else Dependency(given, known=known)
    return made if made.results else None
