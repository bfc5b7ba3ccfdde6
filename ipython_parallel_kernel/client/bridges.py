"""The kernels behind two interfaces other libraries know: ``concurrent.futures`` and
joblib.

``rc.executor()`` (or ``lview.executor``) is a real ``concurrent.futures.Executor``
whose tasks are load balanced over the kernels::

    >>> with rc.executor() as pool:
    ...     list(pool.map(math.sqrt, range(4)))
    [0.0, 1.0, 1.4142135623730951, 1.7320508075688772]

``register_joblib_backend()`` makes ``joblib.Parallel(backend="ipyparallel")`` (or
``backend="ipk"``) run on them: on a view's kernels when a view registers it, else on
the default cluster (``ipk-cluster start``'s), or on a cluster of its own started for
the ``Parallel`` call and stopped after it. joblib is imported only here, when asked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .balancer import LoadBalancedView

#: The names ``register_joblib_backend`` registers by default: ipyparallel's, and ours.
JOBLIB_NAMES = ("ipyparallel", "ipk")


class ViewExecutor(Executor):
    """A ``concurrent.futures.Executor`` over a LoadBalancedView."""

    def __init__(self, view: LoadBalancedView) -> None:
        self.view = view
        self._shut_down = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """``fn(*args, **kwargs)`` on the first kernel with room; its Future."""
        if self._shut_down:
            raise RuntimeError("cannot submit to an executor that has been shut down")
        return self.view.apply_async(fn, *args, **kwargs)

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        """The values of ``fn`` over the iterables, in order, as they arrive; every task
        is sent at once. TimeoutError if they are not all back within ``timeout`` s."""
        if self._shut_down:
            raise RuntimeError("cannot map on an executor that has been shut down")
        result = self.view.map_async(fn, *(list(i) for i in iterables), chunksize=chunksize)
        return result.each(timeout)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more work; with ``wait``, wait for what was submitted. The kernels
        keep running."""
        self._shut_down = True
        if wait:
            self.view.wait()


def register_joblib_backend(
    view: LoadBalancedView | None = None,
    names: Iterable[str] = JOBLIB_NAMES,
    make_default: bool = False,
) -> None:
    """Register the kernels as joblib backends under ``names``."""
    from joblib.parallel import register_parallel_backend

    backend = _joblib_backend_class()
    for name in names:
        register_parallel_backend(
            name, lambda **kwargs: backend(view=view, **kwargs), make_default=make_default
        )


def _joblib_backend_class() -> type:
    """The backend class, made on first use so that joblib is imported only then."""
    from joblib.parallel import AutoBatchingMixin, ParallelBackendBase

    class KernelBackend(AutoBatchingMixin, ParallelBackendBase):
        """joblib's tasks as load-balanced tasks on the kernels."""

        supports_retrieve_callback = True
        supports_timeout = True

        def __init__(self, view: LoadBalancedView | None = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._view = view
            self._owned: list[Any] = []  # what this backend opened, closed in terminate

        def _the_view(self) -> LoadBalancedView:
            if self._view is None:
                from ..launchers.cluster import Cluster
                from .client import Client

                try:
                    client = Client()
                except FileNotFoundError:
                    cluster = Cluster()
                    cluster.start_cluster_sync()
                    self._owned.append(cluster)
                    client = cluster.connect_client_sync()
                self._owned.append(client)
                self._view = client.load_balanced_view()
            return self._view

        def effective_n_jobs(self, n_jobs: int | None) -> int:
            return len(self._the_view().client.kernels)

        def submit(self, func: Callable[[], Any], callback: Any = None) -> Future:
            future = self._the_view().apply_async(func)
            if callback is not None:
                future.add_done_callback(callback)
            return future

        def retrieve_result_callback(self, future: Future) -> Any:
            return future.result()

        def terminate(self) -> None:
            for owned in reversed(self._owned):
                if hasattr(owned, "stop_cluster_sync"):
                    owned.stop_cluster_sync()
                else:
                    owned.close()
            if self._owned:
                self._view = None
            self._owned = []

    return KernelBackend
