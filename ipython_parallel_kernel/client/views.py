"""ipyparallel's ``DirectView``, on an ``InteractiveCluster``'s fan-out.

A view is some of a ``Client``'s kernels (``targets``: an int, a list, a slice or
``'all'``, numbered as ``Client.ids``) and a ``block`` flag, False by default as in
ipyparallel. Every verb sends its request to every target before it waits; with
``block`` it returns the values (one per target, or the value itself when ``targets``
is an int), without it a ``ClusterResult``, which speaks ipyparallel's AsyncResult::

    >>> dview = rc[:]
    >>> dview.apply_sync(lambda: 6 * 7)          # [42, 42, 42, 42]
    >>> ar = dview.map_async(lambda x: x**2, range(8)); ar.get()
    [0, 1, 4, 9, 16, 25, 36, 49]
    >>> dview.scatter("part", range(16)); dview.execute("s = sum(part)").wait()
    >>> sum(dview.gather("s", block=True))
    120

Where ipyparallel and ``InteractiveCluster`` differ in a signature, the view follows
ipyparallel: ``apply`` gives every keyword argument to the function, ``push`` takes a
dict, ``execute`` and ``run`` return their result object even when blocking.
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core import serialize
from .cluster import (
    ClusterResult,
    InteractiveCluster,
    Targets,
    activate,
    join,
    parse_targets,
    split,
)
from .futures import OutputRelay
from .kernel import Blocking

if TYPE_CHECKING:
    from .client import Client

#: ``scatter``/``gather`` distributions: contiguous blocks, or round robin.
DISTRIBUTIONS = ("b", "r")


class DirectView(Blocking):
    """Some of a client's kernels, each addressed directly (ipyparallel's DirectView)."""

    def __init__(self, client: Client, targets: Targets = "all", block: bool = False) -> None:
        self.client = client
        self._cluster = InteractiveCluster(timeout=client.timeout, block=False)
        self._cluster.kernels = client.kernels
        self.block = self._blocking(block)
        self.targets = targets

    @property
    def targets(self) -> Targets:
        """The kernels this view uses: an int, a list of ids, a slice, or ``'all'``."""
        return self._targets

    @targets.setter
    def targets(self, targets: Targets) -> None:
        parse_targets(targets, len(self.client.kernels))  # refuse a bad one now
        self._targets = targets

    def set_flags(self, *, block: bool | None = None, targets: Targets = None) -> None:
        """Set ``block`` and ``targets`` (those given)."""
        if block is not None:
            self.block = self._blocking(block)
        if targets is not None:
            self.targets = targets

    @contextmanager
    def temp_flags(self, block: bool | None = None, targets: Targets = None) -> Iterator[None]:
        """Within the ``with`` block, ``block`` and ``targets`` (those given) are set."""
        saved = self.block, self.targets
        self.set_flags(block=block, targets=targets)
        try:
            yield
        finally:
            self.block, self.targets = saved

    def __len__(self) -> int:
        return len(self._ids(None))

    def __repr__(self) -> str:
        return (
            f"<DirectView {self._ids(None) if not isinstance(self.targets, int) else self.targets}>"
        )

    # -- plumbing --------------------------------------------------------------------

    def _ids(self, targets: Targets) -> list[int]:
        return parse_targets(self.targets if targets is None else targets, len(self.client.kernels))

    def _run(
        self,
        targets: Targets,
        block: bool | None,
        send: Callable[[list[int]], ClusterResult],
        wait_only: bool = False,
        valueless: bool = False,
    ) -> Any:
        """Send to the chosen targets; wait for the values (or, ``wait_only``, for the
        result object) as ``block`` says. ``valueless``: a blocking call gives None
        from each target, as ipyparallel's ``push`` and ``scatter`` do."""
        chosen = self.targets if targets is None else targets
        result = send(self._ids(targets))
        result.single = isinstance(chosen, int)
        if not self._blocking(block):
            return result
        values = result.get(self.client.timeout)
        if valueless:
            return None if result.single else [None] * len(values)
        return result if wait_only else values

    # -- running code --------------------------------------------------------------------

    def apply(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``f(*args, **kwargs)`` on every target, blocking as ``block`` says; every
        keyword argument is ``f``'s."""
        return self._apply(None, f, args, kwargs)

    def apply_sync(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """As ``apply``, waiting for the values."""
        return self._apply(True, f, args, kwargs)

    def apply_async(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> ClusterResult:
        """As ``apply``, returning a ClusterResult at once."""
        return self._apply(False, f, args, kwargs)

    def _apply(self, block: bool | None, f: Callable, args: tuple, kwargs: dict) -> Any:
        if not callable(f):
            raise TypeError(f"apply() needs a callable, not {type(f).__name__}")
        # Through the fan-out itself: InteractiveCluster.apply keeps ``targets`` and
        # ``block`` for itself, and here they may be ``f``'s.
        return self._run(
            None,
            block,
            lambda ids: self._cluster._each(
                "apply", ids, lambda _, k: k.apply_async(f, *args, **kwargs), False
            ),
        )

    def map(self, f: Callable[..., Any], *sequences: Sequence, block: bool | None = None) -> Any:
        """``list(map(f, *sequences))``, computed in one block per target."""
        if not sequences:
            raise TypeError("map() needs at least one sequence")
        return self._run(
            [*self._ids(None)],
            block,
            lambda ids: self._cluster.map(f, *sequences, targets=ids, block=False),
        )

    def map_sync(self, f: Callable[..., Any], *sequences: Sequence) -> list[Any]:
        """As ``map``, waiting for the values."""
        return self.map(f, *sequences, block=True)

    def map_async(self, f: Callable[..., Any], *sequences: Sequence) -> ClusterResult:
        """As ``map``, returning a ClusterResult at once."""
        return self.map(f, *sequences, block=False)

    def execute(
        self, code: str, silent: bool = True, targets: Targets = None, block: bool | None = None
    ) -> ClusterResult:
        """Run ``code`` on the targets; the ClusterResult of their ExecuteResults, once
        they are done if blocking (a failure then raises). ``silent`` is accepted for
        ipyparallel's sake: results never print here; the records carry them. What
        the code prints streams back as it runs, for ``stream_output()``."""

        def send(ids: list[int]) -> ClusterResult:
            relay = OutputRelay()
            result = self._cluster.execute(code, targets=ids, block=False, on_output=relay)
            result.relay = relay
            return result

        return self._run(targets, block, send, wait_only=True)

    def run(
        self, filename: str | Path, targets: Targets = None, block: bool | None = None
    ) -> ClusterResult:
        """``execute`` the contents of a local file."""
        return self.execute(Path(filename).read_text(), targets=targets, block=block)

    # -- namespaces --------------------------------------------------------------------------

    def push(self, ns: dict[str, Any], targets: Targets = None, block: bool | None = None) -> Any:
        """Bind every name of ``ns`` on the targets: all or none on each. Blocking, None
        from each target; else a result whose ``get()`` gives the names bound on each."""
        if not isinstance(ns, dict):
            raise TypeError(f"push() takes a dict of names and values, not {type(ns).__name__}")
        return self._run(
            targets,
            block,
            lambda ids: self._cluster.push(ns, targets=ids, block=False),
            valueless=True,
        )

    update = push

    def pull(
        self, names: str | Iterable[str], targets: Targets = None, block: bool | None = None
    ) -> Any:
        """The value of ``names`` (a name, or a list of names) on each target."""
        names = names if isinstance(names, str) else list(names)
        return self._run(
            targets, block, lambda ids: self._cluster.pull(names, targets=ids, block=False)
        )

    def get(self, names: str | Iterable[str]) -> Any:
        """``pull(names, block=True)``."""
        return self.pull(names, block=True)

    def __getitem__(self, name: str) -> Any:
        """``dview['a']``: pull ``a`` from the targets, waiting for it."""
        if not isinstance(name, str):
            raise TypeError(f"a view is indexed by names, not {name!r} (use rc[...] for kernels)")
        return self.pull(name, block=True)

    def __setitem__(self, name: str, value: Any) -> None:
        """``dview['a'] = 5``: push to the targets, waiting until it is done."""
        self.push({name: value}, block=True)

    def scatter(
        self,
        key: str,
        seq: Sequence,
        dist: str = "b",
        flatten: bool = False,
        targets: Targets = None,
        block: bool | None = None,
    ) -> Any:
        """Bind to ``key`` on each target its part of ``seq``: contiguous blocks
        (``dist='b'``) or every n-th item (``'r'``). ``flatten``: a part of one item
        is bound as that item. Blocking, None from each target, as ``push``."""
        ids = self._ids(targets)
        parts = partition(seq, len(ids), dist)
        if flatten:
            parts = [part[0] if len(part) == 1 else part for part in parts]
        return self._run(
            ids,
            block,
            lambda ids: self._cluster._each(
                "scatter", ids, lambda position, k: k.push(parts[position], key, block=False), False
            ),
            valueless=True,
        )

    def gather(
        self, key: str, dist: str = "b", targets: Targets = None, block: bool | None = None
    ) -> Any:
        """Put ``key``'s parts from the targets back together, as ``scatter`` split them."""
        _check_distribution(dist)
        ids = self._ids(targets)
        # The joiner goes in with the requests: the replies may all be in before
        # anything could be set on the result afterwards.
        return self._run(
            ids,
            block,
            lambda ids: self._cluster._each(
                "gather", ids, lambda _, k: k.pull(key, block=False), False, joiner(dist)
            ),
        )

    # -- decorators and imports ---------------------------------------------------------------

    def _call_on_parts(
        self, function: ParallelFunction, sequences: tuple[Sequence, ...], kwargs: dict
    ) -> Any:
        """``ParallelFunction.__call__`` here: one part of each sequence per kernel."""
        ids = self._ids(None)
        parts = [partition(seq, len(ids), function.dist) for seq in sequences]

        def call(position: int, kernel: Any) -> Any:
            return kernel.apply_async(function.func, *[p[position] for p in parts], **kwargs)

        return self._run(
            ids,
            function.block,
            lambda ids: self._cluster._each("parallel", ids, call, False, joiner(function.dist)),
        )

    def remote(self, block: bool | None = None) -> Callable[[Callable[..., Any]], RemoteFunction]:
        """Decorate a function to run on the view's kernels when called::

        @dview.remote(block=True)
        def getpid():
            import os
            return os.getpid()
        """
        return lambda f: RemoteFunction(self, f, block)

    def parallel(
        self, dist: str = "b", block: bool | None = None
    ) -> Callable[[Callable[..., Any]], ParallelFunction]:
        """Decorate a function to run on parts of its arguments, one part per kernel,
        the parts of the result put back together (``dist`` as ``scatter``)::

            @dview.parallel(block=True)
            def pmul(A, B):
                return A * B


            pmul(A, A)  # == A * A, each kernel multiplying its rows
        """
        _check_distribution(dist)
        return lambda f: ParallelFunction(self, f, dist, block)

    @contextmanager
    def sync_imports(self, local: bool = True, quiet: bool = False) -> Iterator[None]:
        """Modules imported in the ``with`` block are imported on the kernels too (and,
        with ``local``, here)::

            with dview.sync_imports():
                import numpy
        """
        statements: list[str] = []
        original = builtins.__import__

        def recording(
            name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
        ) -> Any:
            if level == 0:
                wanted = (
                    f"from {name} import {', '.join(fromlist)}" if fromlist else f"import {name}"
                )
                if wanted not in statements:
                    statements.append(wanted)
            return original(name, globals, locals, fromlist, level) if local else None

        builtins.__import__ = recording
        try:
            yield
        finally:
            builtins.__import__ = original
        for statement in statements:
            if not quiet:
                print(f"{statement} on the kernels")
            self.execute(statement, block=True)

    # -- serializers --------------------------------------------------------------------------

    def use_dill(self) -> Any:
        """Pickle with dill what goes to this view's kernels, and have them pickle with it
        what they send back (pulled values, results, published data): dill ships more
        than cloudpickle (a closure over a lock, for one), but numpy arrays inside the
        pickle stream. ImportError (``pip install dill``) if dill is missing here.

        A setting of these kernels' connections in this client (every view of them
        follows it), not of the process. Returns, as ipyparallel does, the result of
        checking on each kernel that it has dill too, blocking as ``block`` says (and
        then leaving the setting as it was if a kernel lacks it)::

            dview.use_dill().get()  # RemoteError from a kernel that lacks dill
        """
        return self._use_pickler("dill")

    def use_cloudpickle(self) -> Any:
        """Pickle with cloudpickle (the default) both ways; as ``use_dill``."""
        return self._use_pickler("cloudpickle")

    def use_pickle(self) -> Any:
        """Pickle with the standard library's pickle both ways: the least work per
        object, but functions and classes only by reference (a lambda, or a function
        defined at the prompt, then fails to pickle; ``use_cloudpickle()`` ships them).
        As ``use_dill``."""
        return self._use_pickler("pickle")

    def _use_pickler(self, name: str) -> Any:
        serialize.require_pickler(name)  # before anything changes
        kernels = [self.client.kernels[i] for i in self._ids(None)]
        # Sent before the switch, so it is pickled as before: a kernel without the
        # pickler says so, rather than failing to load it.
        checked = self._run(
            None,
            False,
            lambda ids: self._cluster._each(
                f"use_{name}",
                ids,
                lambda _, k: k.apply_async(serialize.require_pickler, name),
                False,
            ),
        )
        blocking = self._blocking(None)
        # Blocking, a kernel that lacks the pickler raises here, and nothing changes.
        values = checked.get(self.client.timeout) if blocking else None
        for kernel in kernels:
            kernel.pickler = name
        return values if blocking else checked

    # -- control -----------------------------------------------------------------------------

    def wait(self, jobs: Any = None, timeout: float | None = None) -> bool:
        """Wait for ``jobs`` (results of this client; default: everything outstanding)."""
        return self.client.wait(jobs, timeout)

    def abort(self, targets: Targets = None, block: bool | None = None) -> Any:
        """Drop the requests queued on the targets behind the running one."""
        return self._run(targets, block, lambda ids: self._cluster.abort(targets=ids, block=False))

    def shutdown(self, targets: Targets = None, block: bool | None = None) -> Any:
        """Shut the targets' kernels down."""
        return self._run(targets, block, lambda ids: self._cluster.kill(targets=ids, block=False))

    def activate(self, suffix: str = "") -> DirectView:
        """Make this view what ``%px`` (``%px<suffix>`` and its family, with a suffix)
        runs on in this IPython session: its targets and ``block`` flag are then the
        magics' defaults. Returns self."""
        activate(self, suffix)
        return self


class BroadcastView(DirectView):
    """ipyparallel's BroadcastView: a DirectView by another name.

    ipyparallel sends a broadcast through its scheduler to save the client sending one
    message per engine; here there is no scheduler, and the client writes to each
    kernel's connection itself, so the two views are one. ``is_coalescing`` is kept
    for code that sets it: results are always gathered per kernel.
    """

    def __init__(
        self,
        client: Client,
        targets: Targets = "all",
        block: bool = False,
        is_coalescing: bool = False,
    ) -> None:
        super().__init__(client, targets, block)
        self.is_coalescing = is_coalescing

    def __repr__(self) -> str:
        return super().__repr__().replace("<DirectView", "<BroadcastView", 1)


def _check_distribution(dist: str) -> None:
    if dist not in DISTRIBUTIONS:
        raise ValueError(f"dist={dist!r}: 'b' (contiguous blocks) or 'r' (round robin)")


def partition(seq: Sequence, parts: int, dist: str) -> list[Any]:
    """``seq`` in ``parts`` parts: contiguous blocks (``dist='b'``) or every n-th item
    (``'r'``)."""
    _check_distribution(dist)
    if dist == "b":
        return split(seq, parts)
    return [seq[i::parts] for i in range(parts)]


def joiner(dist: str) -> Callable[[list[Any]], Any]:
    """What puts the results of ``partition``'s parts back together."""
    if dist == "b":
        return join

    def interleave(parts: list[Any]) -> list[Any]:
        lists = [list(p) for p in parts]
        total = sum(len(p) for p in lists)
        return [lists[i % len(lists)][i // len(lists)] for i in range(total)]

    return interleave


class RemoteFunction:
    """A function that runs on a view's kernels when called (``DirectView.remote``)."""

    def __init__(self, view: DirectView, func: Callable[..., Any], block: bool | None) -> None:
        self.view = view
        self.func = func
        self.block = block
        functools.update_wrapper(self, func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.view.temp_flags(block=self.block):
            return self.view.apply(self.func, *args, **kwargs)


class ParallelFunction(RemoteFunction):
    """A function run on parts of its arguments (``DirectView.parallel``: one part per
    kernel; ``LoadBalancedView.parallel``: parts of ``chunksize`` items, one task each),
    the parts of the result put back together; ``.map`` applies it item by item."""

    def __init__(
        self,
        view: Any,
        func: Callable[..., Any],
        dist: str,
        block: bool | None,
        chunksize: int | None = None,
    ) -> None:
        super().__init__(view, func, block)
        self.dist = dist
        self.chunksize = chunksize

    def __call__(self, *sequences: Any, **kwargs: Any) -> Any:
        if not sequences:
            raise TypeError(f"{self.func.__name__}() needs sequences to split over the kernels")
        return self.view._call_on_parts(self, sequences, kwargs)

    def map(self, *sequences: Sequence) -> Any:
        """``list(map(func, *sequences))`` through the view's ``map``, item by item."""
        return self.view.map(self.func, *sequences, block=self.block)
