"""``LoadBalancedView``: tasks to whichever kernel has room, on real kernels."""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import skip_or_fail

import ipython_parallel_kernel as ipp
from ipython_parallel_kernel.errors import CompositeError, RemoteError


def test_apply_and_map(rc):
    """apply gives one value; map the values in order, whatever the chunksize; map of
    nothing is empty."""
    lview = rc.load_balanced_view()
    assert lview.apply_sync(lambda x, k=1: x * k, 21, k=2) == 42
    ar = lview.apply_async(os.getpid)
    assert ar.get(30) in rc[:].apply_sync(os.getpid) and ar.engine_id in rc.ids
    assert lview.map_sync(lambda x, y: x + y, range(50), range(50)) == list(range(0, 100, 2))
    assert lview.map_sync(str, range(25), chunksize=4) == [str(i) for i in range(25)]
    assert lview.map_sync(str, []) == []
    with pytest.raises(ValueError, match="chunksize"):
        lview.map(str, range(3), chunksize=0)


def test_a_slow_kernel_gets_less_work(rc):
    """With kernel 0 slowed down, the others take most of a map's tasks."""
    rc[:].push({"delay": 0.0}, block=True)
    rc[0].push({"delay": 0.05}, block=True)

    @ipp.interactive
    def task(i):
        import time

        time.sleep(delay)  # noqa: F821  (each kernel's own)
        return i

    ar = rc.load_balanced_view().map_async(task, range(60))
    assert ar.get(60) == list(range(60))
    counts = collections.Counter(ar.engine_id)
    assert counts[0] < 60 / 4, counts


def test_unordered_iteration_gives_values_as_they_finish(rc):
    """ordered=False: iteration yields the quick tasks before the slow first one."""
    seen = list(
        rc.load_balanced_view().imap(
            lambda t: time.sleep(t) or t, [1.0, 0.0, 0.0, 0.0], ordered=False
        )
    )
    assert sorted(seen) == [0.0, 0.0, 0.0, 1.0] and seen[-1] == 1.0


def test_failures_are_collected(rc):
    """A failing task fails the map with CompositeError; return_exceptions keeps the
    others' values; a single apply raises its own RemoteError."""
    lview = rc.load_balanced_view()
    ar = lview.map_async(lambda x: 1 / x, [1, 0, 2])
    with pytest.raises(CompositeError):
        ar.get(30)
    values = ar.get(30, return_exceptions=True)
    assert values[0] == 1 and isinstance(values[1], RemoteError) and values[2] == 0.5
    with pytest.raises(RemoteError, match="ZeroDivisionError"):
        lview.apply_sync(lambda: 1 / 0)


@pytest.fixture
def three(ipython_dir: Path) -> Iterator[ipp.Cluster]:
    """Three kernels of their own, for a test that kills one."""
    cluster = ipp.Cluster(n=3)
    cluster.start_cluster_sync()
    try:
        yield cluster
    finally:
        cluster.stop_cluster_sync()


def test_a_kernel_killed_mid_map_loses_no_task(three):
    """Tasks on a kernel that dies go to the others: the map completes, whole."""
    with three.connect_client_sync() as client:
        victim = client.kernels[0].kernel_info["pid"]
        ar = client.load_balanced_view().map_async(lambda x: time.sleep(0.02) or x, range(150))
        threading.Timer(0.3, os.kill, (victim, signal.SIGKILL)).start()
        assert ar.get(120) == list(range(150))
        assert 0 in ar.engine_id and ar.engine_id[-1] != 0


def test_executor_is_a_concurrent_futures_executor(rc):
    """rc.executor(): submit gives a Future with the value, map the values in order,
    and shutdown refuses more work."""
    import concurrent.futures

    with rc.executor() as pool:
        assert isinstance(pool, concurrent.futures.Executor)
        future = pool.submit(pow, 2, 10)
        assert isinstance(future, concurrent.futures.Future) and future.result(30) == 1024
        assert list(pool.map(abs, [-1, -2, 3], timeout=30)) == [1, 2, 3]
        done, _ = concurrent.futures.wait([pool.submit(abs, -i) for i in range(5)], timeout=30)
        assert sorted(f.result() for f in done) == [0, 1, 2, 3, 4]
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(abs, 1)


def test_joblib_parallel_runs_on_the_kernels(rc):
    """joblib.Parallel(backend='ipyparallel'), once a view registered it, runs each
    call on a kernel."""
    try:
        import joblib
    except ImportError:
        skip_or_fail("joblib is not installed")
    rc.load_balanced_view().register_joblib_backend()
    pids = set(rc[:].apply_sync(os.getpid))
    with joblib.parallel_config(backend="ipyparallel"):
        results = joblib.Parallel()(joblib.delayed(os.getpid)() for _ in range(20))
    assert set(results) <= pids and len(set(results)) > 1
    squares = joblib.Parallel(backend="ipyparallel")(joblib.delayed(pow)(i, 2) for i in range(10))
    assert squares == [i * i for i in range(10)]


def test_joblib_backend_of_its_own_cluster(ipython_dir):
    """ipp.register_joblib_backend() with no cluster running starts kernels for the
    Parallel call ('ipk' is our own name for it) and stops them after."""
    try:
        import joblib
    except ImportError:
        skip_or_fail("joblib is not installed")
    ipp.register_joblib_backend()
    results = joblib.Parallel(backend="ipk")(joblib.delayed(os.getpid)() for _ in range(6))
    assert os.getpid() not in results
    assert not list((ipython_dir / "profile_default" / "security").glob("ipk-cluster-*.json"))


def test_parallel_decorator_splits_into_tasks(rc):
    """@lview.parallel(): a call runs parts of the sequence as tasks and joins them;
    .map runs it item by item; keyword arguments reach every part."""
    lview = rc.load_balanced_view()

    @lview.parallel(block=True, chunksize=3)
    def scaled(xs, factor=1):
        return [x * factor for x in xs]

    assert scaled(list(range(10)), factor=2) == [x * 2 for x in range(10)]

    @lview.parallel(block=True)
    def f(x):
        return 10.0 * x**4

    assert f.map(range(32)) == [10.0 * x**4 for x in range(32)]
    pending = lview.parallel(chunksize=5)(len)(list(range(10)))
    assert pending.get(30) == [5, 5]
