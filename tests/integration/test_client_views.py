"""``Client`` and ``DirectView``: ipyparallel's vocabulary on real kernels.

The tutorial pages' own cells run in ``tests/clients/test_ipyparallel_tutorial.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import ipython_parallel_kernel as ipp
from ipython_parallel_kernel.errors import CompositeError, RemoteError


def test_ids_and_views(rc):
    """ids number the kernels; rc[...] takes ints, slices, lists and 'all'."""
    assert rc.ids == [0, 1, 2, 3] and len(rc) == 4
    assert len(rc[:]) == 4 and len(rc[::2]) == 2 and len(rc[[1, 3]]) == 2
    assert len(rc["all"]) == 4 and rc.direct_view().targets == "all"
    with pytest.raises(IndexError):
        rc[7]


def test_async_results_wait_ready_and_time_out(rc):
    """The direct tutorial's waits, shortened: ready() before the end, get(timeout)
    raising TimeoutError, and dview.wait over a list of results."""
    dview = rc[:]

    def wait(t):
        import time

        tic = time.time()
        time.sleep(t)
        return time.time() - tic

    assert all(t >= 0.2 for t in dview.apply_async(wait, 0.2).get())
    ar = dview.apply_async(wait, 2)
    assert ar.ready() is False
    with pytest.raises(TimeoutError):
        ar.get(0.1)
    ar_list = [dview.apply_async(wait, 0.1) for _ in range(4)]
    assert dview.wait(ar_list)
    assert len(ar_list[0].get()) == 4
    assert dview.push({"a": 1}, block=True) == [None] * 4
    assert dview.push({"a": 1}, block=False).get() == [["a"]] * 4


def test_an_int_target_gives_values_not_lists(rc):
    """rc[0] answers with the value itself, and raises its own RemoteError."""
    assert rc[0].apply_sync(lambda: 6 * 7) == 42
    assert rc[2].pull("__name__", block=True) == "__main__"
    with pytest.raises(RemoteError, match="ZeroDivisionError"):
        rc[1].execute("1/0", block=True)
    assert rc[1].apply_async(lambda: 1).get_dict() == {1: 1}


def test_every_keyword_goes_to_the_function(rc):
    """apply passes every keyword argument on, even ones named block or targets."""

    def echo(block=None, targets=None):
        return (block, targets)

    assert rc[:].apply_sync(echo, block="b", targets="t") == [("b", "t")] * 4


def test_async_result_vocabulary(rc):
    """get(return_exceptions=True), r, get_dict, successful, len, indexing, iteration."""
    dview = rc[:]
    ar = dview.apply_async(lambda x: x, 7)
    assert ar.r == [7] * 4 and ar.successful() and len(ar) == 4
    assert ar.get_dict() == {0: 7, 1: 7, 2: 7, 3: 7}
    assert ar[1] == 7 and ar[1:3] == [7, 7] and list(ar) == [7] * 4
    failing = dview.execute("import os\nif os.getpid() % 1 == 0 and __import__('sys'): 1/0")
    with pytest.raises(CompositeError):
        failing.get(30)
    values = failing.get(return_exceptions=True)
    assert all(isinstance(v, RemoteError) for v in values)
    assert not failing.successful()
    pending = dview.apply_async(time.sleep, 1)
    with pytest.raises(RuntimeError, match="still running"):
        pending.successful()
    assert pending.get(30) == [None] * 4


def test_execute_returns_its_result_object_and_raises_when_blocking(rc):
    """execute always gives the ClusterResult (its ExecuteResults); blocking, a failure
    on any target raises CompositeError."""
    done = rc[:].execute("x = 1; print('hi')", block=True)
    assert [r.stdout for r in done.get()] == ["hi\n"] * 4
    with pytest.raises(CompositeError):
        rc[:].execute("1/0", block=True)


def test_scatter_and_gather_distributions(rc):
    """dist='b' blocks and 'r' round robin come back in order; flatten unwraps parts of
    one item."""
    dview = rc[:]
    dview.scatter("part", list(range(10)), dist="r", block=True)
    assert dview["part"] == [[0, 4, 8], [1, 5, 9], [2, 6], [3, 7]]
    assert dview.gather("part", dist="r", block=True) == list(range(10))
    # The joined value, every time: however soon the replies are in.
    assert all(dview.gather("part", dist="r", block=True) == list(range(10)) for _ in range(50))
    dview.scatter("one", list(range(4)), flatten=True, block=True)
    assert dview["one"] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="round robin"):
        dview.scatter("x", [1], dist="z")


def test_flags_and_push_checks(rc):
    """set_flags and temp_flags set block and targets; push takes a dict."""
    dview = rc[:]
    with dview.temp_flags(block=True, targets=[0, 1]):
        assert dview.apply(lambda: 1) == [1, 1]
    assert dview.block is False and dview.targets == slice(None)
    dview.set_flags(block=True, targets=3)
    assert dview.apply(lambda: 2) == 2
    with pytest.raises(TypeError, match="dict"):
        dview.push(5)
    with pytest.raises(IndexError):
        dview.targets = [9]


def test_client_finds_the_default_cluster_as_a_user_starts_it(ipython_dir):
    """After `ipk-cluster start -n 2`, Client() with no arguments connects to it; with
    no cluster running it says what to start."""
    with pytest.raises(FileNotFoundError, match="ipk-cluster start -n 4"):
        ipp.Client()
    command = [sys.executable, "-m", "ipython_parallel_kernel.apps.cluster"]
    env = dict(os.environ)
    started = subprocess.run(
        [*command, "start", "-n", "2"], capture_output=True, text=True, timeout=120, env=env
    )
    assert started.returncode == 0, started.stderr
    try:
        with ipp.Client(timeout=30) as rc:
            assert rc.ids == [0, 1]
            assert rc[:].apply_sync(lambda: 1) == [1, 1]
    finally:
        subprocess.run([*command, "stop"], capture_output=True, timeout=120, env=env)


def test_remote_parallel_and_sync_imports(rc):
    """The direct tutorial's decorators: @remote runs the function on the kernels,
    @parallel on one part of its arguments each; sync_imports imports there too."""
    import numpy as np

    dview = rc[:]

    @dview.remote(block=True)
    def getpid():
        import os

        return os.getpid()

    pids = getpid()
    assert len(set(pids)) == 4 and os.getpid() not in pids

    A = np.random.random((64, 48))

    @dview.parallel(block=True)
    def pmul(A, B):
        return A * B

    assert (pmul(A, A) == A * A).all()
    with dview.sync_imports(quiet=True):
        import json  # noqa: F401
        from math import sqrt  # noqa: F401
    dview.execute("imported = (json.dumps(1), sqrt(4))", block=True)  # the kernels' names
    assert dview.pull("imported", block=True) == [("1", 2.0)] * 4
