"""``InteractiveCluster``: many kernels driven as one.

Every verb of ``RemoteKernel`` is here too, with ``targets=``: an int, a list, a slice,
``'all'``, or the same typed as text (``"0,2"``, ``"1:3"``, ``"::2"``), which is parsed,
never evaluated. A request to N kernels is sent to all of them before any reply is
awaited, so it takes as long as the slowest kernel, not the sum; the answer is one
value per target, in target order::

    >>> ic = InteractiveCluster.from_file(path)  # written by ipk-cluster start
    >>> ic["a"] = 5                      # push to all
    >>> ic.execute("b = a * 2", targets="::2")
    >>> ic["b"]                          # pull from all
    >>> ic.scatter("chunk", range(100)); ic.execute("s = sum(chunk)"); sum(ic["s"])
    4950
    >>> ic.map(lambda x: x * x, range(8))
    [0, 1, 4, 9, 16, 25, 36, 49]

When some kernels fail, the others' results are kept and a ``CompositeError`` lists
each failure by target and address; a kernel that died is one of those failures.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Literal, overload

from ..core.clusterfile import read_cluster_file
from ..core.connection import Address, ConnectionInfo, security_dir, write_json_private
from ..errors import CompositeError
from .futures import FutureResult, OutputRelay, Part
from .kernel import HEARTBEAT, AsyncResult, Blocking, RemoteKernel, pick

Targets = int | slice | str | Sequence[int] | None

_TARGET_ITEM = re.compile(r"^\s*(-?\d+)?\s*(?::\s*(-?\d+)?\s*(?::\s*(-?\d+)?\s*)?)?$")


def parse_targets(spec: Targets, count: int) -> list[int]:
    """Kernel indices selected by ``spec`` among ``count`` kernels, in order.

    >>> parse_targets("0,2", 4), parse_targets("1:3", 4), parse_targets("::2", 4)
    ([0, 2], [1, 2], [0, 2])
    """
    if spec is None or spec == "all":
        return list(range(count))
    if isinstance(spec, bool):
        raise TypeError("targets cannot be a bool")
    if isinstance(spec, int):
        return [_index(spec, count)]
    if isinstance(spec, slice):
        return list(range(count))[spec]
    if isinstance(spec, str):
        chosen: list[int] = []
        for item in spec.split(","):
            match = _TARGET_ITEM.match(item)
            if not match or not item.strip():
                raise ValueError(
                    f"targets {spec!r}: {item.strip()!r} is not an index or a slice "
                    "(write e.g. '0,2', '1:3', '::2' or 'all')"
                )
            start, stop, step = (int(g) if g else None for g in match.groups())
            chosen += (
                [_index(start, count)]
                if ":" not in item
                else (list(range(count))[slice(start, stop, step)])
            )
        return chosen
    return [_index(i, count) for i in spec]


def _index(i: Any, count: int) -> int:
    if not isinstance(i, int) or isinstance(i, bool):
        raise TypeError(f"target {i!r} is not an int")
    if not -count <= i < count:
        raise IndexError(f"target {i} out of range: the cluster has {count} kernels")
    return i % count


def split(seq: Sequence, parts: int) -> list[Sequence]:
    """``seq`` in ``parts`` contiguous blocks whose lengths differ by at most one."""
    size, extra = divmod(len(seq), parts)
    blocks, start = [], 0
    for i in range(parts):
        stop = start + size + (1 if i < extra else 0)
        blocks.append(seq[start:stop])
        start = stop
    return blocks


def join(blocks: list[Any]) -> Any:
    """Undo ``split``: tuples and numpy arrays keep their type, anything else is a list."""
    first = blocks[0] if blocks else []
    if isinstance(first, list):
        return [x for block in blocks for x in block]
    if isinstance(first, tuple):
        return tuple(x for block in blocks for x in block)
    if type(first).__module__ == "numpy":
        import numpy

        return numpy.concatenate(blocks)
    return [x for block in blocks for x in block]


class ClusterResult(FutureResult):
    """The future results of one request to several kernels, one per target.

    Completes when every target has answered. ``get`` returns the list of values, or
    raises ``CompositeError`` listing the failures (with the other values in it);
    ``progress`` counts the targets that have answered so far. As ipyparallel's
    AsyncResult: ``get(return_exceptions=True)``, ``r``, ``get_dict()``,
    ``successful()``, ``len``, ``ar[i]``, and iteration as the targets answer. A
    request to one target given as an int (``rc[0]``) has ``single`` set: its value,
    or its own exception, instead of a list of one.
    """

    #: One target, named by an int: ``get`` returns its value rather than a list.
    single = False

    def __init__(
        self,
        what: str,
        targets: list[int],
        names: list[str],
        parts: list,
        combine: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        super().__init__()
        self.what = what
        #: Turns the list of values into the result (``map`` and ``gather`` join blocks).
        self.combine = combine
        self.targets = targets
        self.names = names
        self.parts = parts
        self._lock = threading.Lock()
        self._answered = 0
        #: Where the requests' streamed output is kept (``stream_output``), if they stream.
        self.relay: OutputRelay | None = None
        for target, part in zip(targets, parts, strict=True):
            part.engine_id = target
            part.add_done_callback(self._one_done)

    @property
    def progress(self) -> int:
        """How many targets have answered."""
        return self._answered

    def parts_details(self) -> list[tuple[Part, BaseException | None, bool]]:
        return [(p, p.exception() if p.done() else None, p.done()) for p in self.parts]

    def part_futures(self) -> list[Future]:
        return list(self.parts)

    @property
    def data(self) -> Any:
        """What the request's code published on each target so far (``publish_data``):
        one dict per target, in target order (the dict itself when ``single``)."""
        published = [getattr(part, "data", {}) for part in self.parts]
        return published[0] if self.single else published

    def _one_done(self, part: Future) -> None:
        with self._lock:
            self._answered += 1
            if self._answered < len(self.parts):
                return
        results, failures = [], []
        for target, name, part in zip(self.targets, self.names, self.parts, strict=True):
            error = part.exception()
            results.append(error if error is not None else part.result())
            if error is not None:
                failures.append((target, name, error))
        if failures:
            self.set_exception(CompositeError(self.what, failures, results))
        elif self.combine is None:
            self.set_result(results)
        else:
            try:
                self.set_result(self.combine(results))
            except BaseException as e:
                self.set_exception(e)

    def get(self, timeout: float | None = None, return_exceptions: bool = False) -> Any:
        """The values, waiting at most ``timeout`` seconds; with ``return_exceptions``,
        a failed target's exception takes its place instead of being raised."""
        try:
            values = super().get(timeout)
        except CompositeError as e:
            if return_exceptions:
                values = e.results
            elif self.single:
                raise e.errors[0][2] from None
            else:
                raise
        return values[0] if self.single else values

    def get_dict(self, timeout: float | None = None) -> dict[int, Any]:
        """The values by target number."""
        values = self.get(timeout)
        return dict(zip(self.targets, [values] if self.single else values, strict=True))

    def __len__(self) -> int:
        return len(self.parts)

    def __getitem__(self, index: int | slice) -> Any:
        """The value of the ``index``-th target (or a slice of them), once every target
        has answered. An item that failed raises its exception."""
        return pick(self.get(return_exceptions=True), index, self.single)

    def __iter__(self) -> Iterator[Any]:
        """Each target's value, in target order, as soon as that target has answered."""
        for part in self.parts:
            error = part.exception()
            if error is not None:
                raise error
            yield part.result()

    def still_running(self, timeout: float | None) -> str:
        return (
            f"{self.what}: {self.progress} of {len(self.parts)} kernels answered within "
            f"{timeout} s; the others are still working (interrupt() stops them)"
        )

    def __repr__(self) -> str:
        return f"<ClusterResult {self.what}: {self.progress}/{len(self.parts)} answered>"


class InteractiveCluster(Blocking):
    """Several kernels, driven together.

    ``addrs``: kernel addresses or connection files to connect to now (more with
    ``start``). ``key``, ``timeout``, ``profile`` and ``heartbeat`` are passed to each
    ``RemoteKernel``. Every verb follows one rule: an explicit ``block=`` wins, else
    ``block`` (this object's attribute, True unless set); blocking returns one value
    per target, ``block=False`` a ``ClusterResult`` at once (``move``, which asks one
    kernel, an ``AsyncResult``).
    """

    def __init__(
        self,
        addrs: Iterable[Address | str | ConnectionInfo] | None = None,
        *,
        key: str | None = None,
        timeout: float | None = None,
        profile: str | None = None,
        block: bool = True,
        heartbeat: float = HEARTBEAT,
    ) -> None:
        self.kernels: list[RemoteKernel] = []
        self.key = key
        self.timeout = timeout
        self.profile = profile
        self.block = self._blocking(block)
        self.heartbeat = heartbeat
        if addrs is not None:
            self.start(addrs)

    # -- building clusters ---------------------------------------------------------------

    def start(self, addrs: Iterable[Address | str | ConnectionInfo]) -> InteractiveCluster:
        """Connect to running kernels (concurrently) and add them; returns self.

        Each entry is anything ``RemoteKernel`` takes: an address, a connection file,
        or a ``ConnectionInfo``.
        """
        addrs = list(addrs)
        if not addrs:
            return self

        def connect(addr: Any) -> RemoteKernel:
            return RemoteKernel(
                addr,
                key=self.key,
                timeout=self.timeout,
                profile=self.profile,
                heartbeat=self.heartbeat,
            )

        with ThreadPoolExecutor(max_workers=min(32, len(addrs))) as pool:
            self.kernels += list(pool.map(connect, addrs))
        return self

    @classmethod
    def from_file(cls, path: str | Path, **options: Any) -> InteractiveCluster:
        """Connect to every kernel of a cluster file (as written by ``ipk-cluster``)."""
        return cls(read_cluster_file(Path(path).expanduser()), **options)

    def save(self, name: str, profile: str = "default") -> Path:
        """Remember this cluster's kernels under ``name`` (a cluster file, mode 0600)."""
        entries = [dict(k.info.to_dict(), ip=k.address[0]) for k in self.kernels]
        return write_json_private(entries, _saved_path(name, profile))

    @classmethod
    def load(cls, name: str, profile: str = "default", **options: Any) -> InteractiveCluster:
        """Reconnect to the kernels saved under ``name``."""
        return cls.from_file(_saved_path(name, profile), **options)

    def subcluster(self, targets: Targets) -> InteractiveCluster:
        """A cluster of some of these kernels (the same connections)."""
        sub = InteractiveCluster(
            key=self.key, timeout=self.timeout, profile=self.profile, block=self.block
        )
        sub.kernels = [self.kernels[i] for i in parse_targets(targets, len(self))]
        return sub

    def __add__(self, other: InteractiveCluster) -> InteractiveCluster:
        combined = self.subcluster("all")
        combined.kernels += other.kernels
        return combined

    def __len__(self) -> int:
        return len(self.kernels)

    def __iter__(self) -> Any:
        return iter(self.kernels)

    def __repr__(self) -> str:
        names = ", ".join(k.name for k in self.kernels[:4])
        more = f", ... ({len(self)} kernels)" if len(self) > 4 else ""
        return f"<InteractiveCluster [{names}{more}]>"

    # -- the fan-out ---------------------------------------------------------------------

    def _each(
        self,
        what: str,
        targets: Targets,
        call: Callable[[int, RemoteKernel], AsyncResult],
        block: bool | None,
        combine: Callable[[list[Any]], Any] | None = None,
    ) -> Any:
        """Send ``call`` to every target, then wait (as ``block`` says) for all replies."""
        blocking = self._blocking(block)
        chosen = parse_targets(targets, len(self))
        parts = [call(position, self.kernels[i]) for position, i in enumerate(chosen)]
        names = [self.kernels[i].name for i in chosen]
        result = ClusterResult(what, chosen, names, parts, combine)
        return result.get(self.timeout) if blocking else result

    # -- verbs -----------------------------------------------------------------------------

    @overload
    def execute(
        self,
        source: str,
        targets: Targets = None,
        *,
        block: Literal[True],
        on_output: Callable[[int, str, str], None] | None = None,
    ) -> list[Any]: ...
    @overload
    def execute(
        self,
        source: str,
        targets: Targets = None,
        *,
        block: Literal[False],
        on_output: Callable[[int, str, str], None] | None = None,
    ) -> ClusterResult: ...
    @overload
    def execute(
        self,
        source: str,
        targets: Targets = None,
        block: bool | None = None,
        on_output: Callable[[int, str, str], None] | None = None,
    ) -> list[Any] | ClusterResult: ...
    def execute(
        self,
        source: str,
        targets: Targets = None,
        block: bool | None = None,
        on_output: Callable[[int, str, str], None] | None = None,
    ) -> list[Any] | ClusterResult:
        """Run ``source`` on each target; one ExecuteResult per target.

        ``on_output(target, stream_name, text)`` receives output while it is printed.
        """
        chosen = parse_targets(targets, len(self))

        def send(position: int, kernel: RemoteKernel) -> AsyncResult:
            callback = None if on_output is None else partial(on_output, chosen[position])
            return kernel.execute(source, block=False, on_output=callback)

        return self._each("execute", chosen, send, block)

    @overload
    def result(
        self, number: int | None = None, targets: Targets = None, *, block: Literal[True]
    ) -> list[Any]: ...
    @overload
    def result(
        self, number: int | None = None, targets: Targets = None, *, block: Literal[False]
    ) -> ClusterResult: ...
    @overload
    def result(
        self, number: int | None = None, targets: Targets = None, block: bool | None = None
    ) -> list[Any] | ClusterResult: ...
    def result(
        self, number: int | None = None, targets: Targets = None, block: bool | None = None
    ) -> list[Any] | ClusterResult:
        """Command ``number`` (default: the last) from each target's history."""
        return self._each("result", targets, lambda _, k: k.result(number, block=False), block)

    @overload
    def run(
        self, filename: str | Path, targets: Targets = None, *, block: Literal[True]
    ) -> list[Any]: ...
    @overload
    def run(
        self, filename: str | Path, targets: Targets = None, *, block: Literal[False]
    ) -> ClusterResult: ...
    @overload
    def run(
        self, filename: str | Path, targets: Targets = None, block: bool | None = None
    ) -> list[Any] | ClusterResult: ...
    def run(
        self, filename: str | Path, targets: Targets = None, block: bool | None = None
    ) -> list[Any] | ClusterResult:
        """Run a local file on each target."""
        return self._each("run", targets, lambda _, k: k.run(filename, block=False), block)

    @overload
    def push(
        self,
        value: Any,
        name: str | None = None,
        targets: Targets = None,
        *,
        block: Literal[True],
    ) -> list[Any]: ...
    @overload
    def push(
        self,
        value: Any,
        name: str | None = None,
        targets: Targets = None,
        *,
        block: Literal[False],
    ) -> ClusterResult: ...
    @overload
    def push(
        self,
        value: Any,
        name: str | None = None,
        targets: Targets = None,
        block: bool | None = None,
    ) -> list[Any] | ClusterResult: ...
    def push(
        self,
        value: Any,
        name: str | None = None,
        targets: Targets = None,
        block: bool | None = None,
    ) -> list[Any] | ClusterResult:
        """Bind names on each target: ``push(value, name)`` or ``push({name: value})``."""
        return self._each("push", targets, lambda _, k: k.push(value, name, block=False), block)

    @overload
    def pull(
        self, names: str | Iterable[str], targets: Targets = None, *, block: Literal[True]
    ) -> list[Any]: ...
    @overload
    def pull(
        self, names: str | Iterable[str], targets: Targets = None, *, block: Literal[False]
    ) -> ClusterResult: ...
    @overload
    def pull(
        self, names: str | Iterable[str], targets: Targets = None, block: bool | None = None
    ) -> list[Any] | ClusterResult: ...
    def pull(
        self, names: str | Iterable[str], targets: Targets = None, block: bool | None = None
    ) -> list[Any] | ClusterResult:
        """The value of ``names`` on each target."""
        names = names if isinstance(names, str) else list(names)
        return self._each("pull", targets, lambda _, k: k.pull(names, block=False), block)

    @overload
    def apply(
        self,
        func: Callable[..., Any],
        *args: Any,
        targets: Targets = None,
        block: Literal[True],
        **kwargs: Any,
    ) -> list[Any]: ...
    @overload
    def apply(
        self,
        func: Callable[..., Any],
        *args: Any,
        targets: Targets = None,
        block: Literal[False],
        **kwargs: Any,
    ) -> ClusterResult: ...
    @overload
    def apply(
        self,
        func: Callable[..., Any],
        *args: Any,
        targets: Targets = None,
        block: bool | None = None,
        **kwargs: Any,
    ) -> list[Any] | ClusterResult: ...
    def apply(
        self,
        func: Callable[..., Any],
        *args: Any,
        targets: Targets = None,
        block: bool | None = None,
        **kwargs: Any,
    ) -> list[Any] | ClusterResult:
        """Call ``func(*args, **kwargs)`` on each target.

        ``targets`` and ``block`` are this method's; every other keyword is ``func``'s.
        """
        return self._each(
            "apply", targets, lambda _, k: k.apply_async(func, *args, **kwargs), block
        )

    @overload
    def keys(self, targets: Targets = None, *, block: Literal[True]) -> list[Any]: ...
    @overload
    def keys(self, targets: Targets = None, *, block: Literal[False]) -> ClusterResult: ...
    @overload
    def keys(
        self, targets: Targets = None, block: bool | None = None
    ) -> list[Any] | ClusterResult: ...
    def keys(self, targets: Targets = None, block: bool | None = None) -> list[Any] | ClusterResult:
        """The names defined on each target."""
        return self._each("keys", targets, lambda _, k: k.keys(block=False), block)

    @overload
    def status(self, targets: Targets = None, *, block: Literal[True]) -> list[Any]: ...
    @overload
    def status(self, targets: Targets = None, *, block: Literal[False]) -> ClusterResult: ...
    @overload
    def status(
        self, targets: Targets = None, block: bool | None = None
    ) -> list[Any] | ClusterResult: ...
    def status(
        self, targets: Targets = None, block: bool | None = None
    ) -> list[Any] | ClusterResult:
        """Each target's status dict."""
        return self._each("status", targets, lambda _, k: k.status(block=False), block)

    @overload
    def reset(self, targets: Targets = None, *, block: Literal[True]) -> list[Any]: ...
    @overload
    def reset(self, targets: Targets = None, *, block: Literal[False]) -> ClusterResult: ...
    @overload
    def reset(
        self, targets: Targets = None, block: bool | None = None
    ) -> list[Any] | ClusterResult: ...
    def reset(
        self, targets: Targets = None, block: bool | None = None
    ) -> list[Any] | ClusterResult:
        """Empty each target's namespace."""
        return self._each("reset", targets, lambda _, k: k.reset(block=False), block)

    @overload
    def interrupt(self, targets: Targets = None, *, block: Literal[True]) -> list[Any]: ...
    @overload
    def interrupt(self, targets: Targets = None, *, block: Literal[False]) -> ClusterResult: ...
    @overload
    def interrupt(
        self, targets: Targets = None, block: bool | None = None
    ) -> list[Any] | ClusterResult: ...
    def interrupt(
        self, targets: Targets = None, block: bool | None = None
    ) -> list[Any] | ClusterResult:
        """Interrupt the running command on each target."""
        return self._each("interrupt", targets, lambda _, k: k.interrupt(block=False), block)

    @overload
    def abort(self, targets: Targets = None, *, block: Literal[True]) -> list[Any]: ...
    @overload
    def abort(self, targets: Targets = None, *, block: Literal[False]) -> ClusterResult: ...
    @overload
    def abort(
        self, targets: Targets = None, block: bool | None = None
    ) -> list[Any] | ClusterResult: ...
    def abort(
        self, targets: Targets = None, block: bool | None = None
    ) -> list[Any] | ClusterResult:
        """Drop what is queued on each target."""
        return self._each("abort", targets, lambda _, k: k.abort(block=False), block)

    @overload
    def kill(self, targets: Targets = None, *, block: Literal[True]) -> list[Any]: ...
    @overload
    def kill(self, targets: Targets = None, *, block: Literal[False]) -> ClusterResult: ...
    @overload
    def kill(
        self, targets: Targets = None, block: bool | None = None
    ) -> list[Any] | ClusterResult: ...
    def kill(self, targets: Targets = None, block: bool | None = None) -> list[Any] | ClusterResult:
        """Shut the targets down; they are removed from this cluster."""
        blocking = self._blocking(block)
        chosen = parse_targets(targets, len(self))
        result = self._each("kill", chosen, lambda _, k: k.kill(block=False), False)
        doomed = {id(self.kernels[i]) for i in chosen}
        self.kernels = [k for k in self.kernels if id(k) not in doomed]
        return result.get(self.timeout) if blocking else result

    @overload
    def notify(
        self,
        addr: Address | str,
        flag: bool = True,
        targets: Targets = None,
        *,
        block: Literal[True],
    ) -> list[Any]: ...
    @overload
    def notify(
        self,
        addr: Address | str,
        flag: bool = True,
        targets: Targets = None,
        *,
        block: Literal[False],
    ) -> ClusterResult: ...
    @overload
    def notify(
        self,
        addr: Address | str,
        flag: bool = True,
        targets: Targets = None,
        block: bool | None = None,
    ) -> list[Any] | ClusterResult: ...
    def notify(
        self,
        addr: Address | str,
        flag: bool = True,
        targets: Targets = None,
        block: bool | None = None,
    ) -> list[Any] | ClusterResult:
        """Make each target report completed commands to the gatherer at ``addr``."""
        return self._each("notify", targets, lambda _, k: k.notify(addr, flag, block=False), block)

    @overload
    def allow(
        self, network: str, targets: Targets = None, *, block: Literal[True]
    ) -> list[Any]: ...
    @overload
    def allow(
        self, network: str, targets: Targets = None, *, block: Literal[False]
    ) -> ClusterResult: ...
    @overload
    def allow(
        self, network: str, targets: Targets = None, block: bool | None = None
    ) -> list[Any] | ClusterResult: ...
    def allow(
        self, network: str, targets: Targets = None, block: bool | None = None
    ) -> list[Any] | ClusterResult:
        """Let clients from ``network`` connect to each target."""
        return self._each("allow", targets, lambda _, k: k.allow(network, block=False), block)

    @overload
    def deny(self, network: str, targets: Targets = None, *, block: Literal[True]) -> list[Any]: ...
    @overload
    def deny(
        self, network: str, targets: Targets = None, *, block: Literal[False]
    ) -> ClusterResult: ...
    @overload
    def deny(
        self, network: str, targets: Targets = None, block: bool | None = None
    ) -> list[Any] | ClusterResult: ...
    def deny(
        self, network: str, targets: Targets = None, block: bool | None = None
    ) -> list[Any] | ClusterResult:
        """Refuse clients from ``network`` on each target."""
        return self._each("deny", targets, lambda _, k: k.deny(network, block=False), block)

    def activate(self, suffix: str = "") -> InteractiveCluster:
        """Make this cluster the target of ``%px`` (``%px<suffix>`` and its family, with
        a suffix) in the running IPython session.

        Loads the extension if needed; returns self.
        """
        activate(self, suffix)
        return self

    def disconnect(self) -> None:
        """Close every connection; the kernels keep running."""
        for kernel in self.kernels:
            kernel.disconnect()

    # -- the dictionary interface -----------------------------------------------------------

    def __getitem__(self, key: int | str) -> Any:
        """``ic[0]`` is a kernel; ``ic['a']`` pulls ``a`` from every kernel."""
        if isinstance(key, str):
            return self.pull(key, block=True)
        return self.kernels[key]

    def __setitem__(self, name: str, value: Any) -> None:
        """``ic['a'] = 5`` pushes to every kernel."""
        self.push(value, name, block=True)

    # -- data across kernels -------------------------------------------------------------------

    @overload
    def scatter(
        self, name: str, seq: Sequence, targets: Targets = None, *, block: Literal[True]
    ) -> list[Any]: ...
    @overload
    def scatter(
        self, name: str, seq: Sequence, targets: Targets = None, *, block: Literal[False]
    ) -> ClusterResult: ...
    @overload
    def scatter(
        self, name: str, seq: Sequence, targets: Targets = None, block: bool | None = None
    ) -> list[Any] | ClusterResult: ...
    def scatter(
        self, name: str, seq: Sequence, targets: Targets = None, block: bool | None = None
    ) -> list[Any] | ClusterResult:
        """Split ``seq`` into contiguous blocks, one bound to ``name`` on each target.

        Lists, tuples, ranges and numpy arrays (split along the first axis) work.
        """
        chosen = parse_targets(targets, len(self))
        blocks = split(seq, len(chosen))
        return self._each(
            "scatter",
            chosen,
            lambda position, k: k.push(blocks[position], name, block=False),
            block,
        )

    @overload
    def gather(self, name: str, targets: Targets = None, *, block: Literal[True]) -> Any: ...
    @overload
    def gather(
        self, name: str, targets: Targets = None, *, block: Literal[False]
    ) -> ClusterResult: ...
    @overload
    def gather(self, name: str, targets: Targets = None, block: bool | None = None) -> Any: ...
    def gather(self, name: str, targets: Targets = None, block: bool | None = None) -> Any:
        """Put ``name``'s blocks from every target back together, in target order."""
        return self._each("gather", targets, lambda _, k: k.pull(name, block=False), block, join)

    @overload
    def map(
        self,
        func: Callable[..., Any],
        *seqs: Sequence,
        targets: Targets = None,
        block: Literal[True],
    ) -> list[Any]: ...
    @overload
    def map(
        self,
        func: Callable[..., Any],
        *seqs: Sequence,
        targets: Targets = None,
        block: Literal[False],
    ) -> ClusterResult: ...
    @overload
    def map(
        self,
        func: Callable[..., Any],
        *seqs: Sequence,
        targets: Targets = None,
        block: bool | None = None,
    ) -> list[Any] | ClusterResult: ...
    def map(
        self,
        func: Callable[..., Any],
        *seqs: Sequence,
        targets: Targets = None,
        block: bool | None = None,
    ) -> list[Any] | ClusterResult:
        """``list(map(func, *seqs))``, computed in blocks across the targets."""
        items = list(zip(*seqs, strict=False)) if len(seqs) > 1 else list(seqs[0])
        chosen = parse_targets(targets, len(self))
        blocks = split(items, len(chosen))
        star = len(seqs) > 1

        def run_block(f: Callable[..., Any], block: list, starred: bool) -> list:
            return [f(*item) for item in block] if starred else [f(item) for item in block]

        return self._each(
            "map",
            chosen,
            lambda position, k: k.apply_async(run_block, func, blocks[position], star),
            block,
            join,
        )

    @overload
    def move(
        self, name: str, source: int, targets: Targets = None, *, block: Literal[True]
    ) -> list[str]: ...
    @overload
    def move(
        self, name: str, source: int, targets: Targets = None, *, block: Literal[False]
    ) -> AsyncResult: ...
    @overload
    def move(
        self, name: str, source: int, targets: Targets = None, block: bool | None = None
    ) -> list[str] | AsyncResult: ...
    def move(
        self, name: str, source: int, targets: Targets = None, block: bool | None = None
    ) -> list[str] | AsyncResult:
        """Copy ``name`` from kernel ``source`` straight to the targets (default: all
        the others), without passing the value through this client; the targets'
        addresses.

        When all of them are ranks of one MPI world, the value goes over MPI (an
        array as its buffer, ``comm.Bcast``; anything else pickled), else over TCP,
        from the source kernel to each target. Over MPI every kernel taking part runs
        it as a job: those that get there first wait, idle, for a busy one (interrupt
        them to give up).
        """
        blocking = self._blocking(block)  # this cluster's default, not the kernel's
        source = _index(source, len(self))
        chosen = [i for i in parse_targets(targets, len(self)) if i != source]
        ranks = mpi_ranks([self.kernels[i] for i in [source, *chosen]])
        if ranks is None or not chosen:
            return self.kernels[source].copy_to(name, [self.kernels[i] for i in chosen], blocking)
        return self._each(
            "move",
            [source, *chosen],
            lambda position, k: k.mpi_bcast(name, ranks[0], ranks, block=False),
            blocking,
            lambda addresses: addresses[1:],  # the source's own address is not a target's
        )


def mpi_ranks(kernels: Sequence[RemoteKernel]) -> list[int] | None:
    """The MPI ranks of ``kernels``, in order, when they are distinct ranks of one
    world; else None."""
    places = [kernel.mpi_rank for kernel in kernels]
    if any(place is None for place in places):
        return None
    worlds = {place[0] for place in places if place is not None}
    ranks = [place[1] for place in places if place is not None]
    return ranks if len(worlds) == 1 and len(set(ranks)) == len(ranks) else None


#: What makes a cluster or view the target of ``%px`` in a shell, given by the magics
#: when they are imported (set once, read by ``activate``, on the shell's thread).
_activator: Callable[..., None] | None = None


def set_activator(activator: Callable[..., None]) -> None:
    """Let ``activate`` call ``activator(shell, target, suffix, replace)``: the hook by
    which the IPython extension, above the client, is reached from it."""
    global _activator
    _activator = activator


def activate(target: Any, suffix: str = "", *, replace: bool = True, required: bool = True) -> None:
    """Make ``target`` (an InteractiveCluster or a DirectView) what ``%px<suffix>`` runs
    on in the running IPython session, loading the extension if needed.

    ``replace=False`` leaves a target already active alone; ``required=False`` does
    nothing outside IPython instead of raising RuntimeError.
    """
    from IPython.core.getipython import get_ipython

    shell = get_ipython()
    if shell is None:
        if not required:
            return
        raise RuntimeError("activate() makes kernels the target of %px: run it in IPython")
    if _activator is None:
        # The extension sits above the client: loading it, by name, hands us its activator.
        shell.run_line_magic("load_ext", "ipython_parallel_kernel")
    if _activator is None:
        raise RuntimeError("the ipython_parallel_kernel extension did not register its magics")
    _activator(shell, target, suffix, replace)


def _saved_path(name: str, profile: str) -> Path:
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"cluster name {name!r}: use letters, digits, '-' and '_'")
    # Not ipk-cluster-*: a saved cluster is a bookmark, not a cluster ipk-cluster runs.
    return security_dir(profile) / f"ipk-saved-{name}.json"
