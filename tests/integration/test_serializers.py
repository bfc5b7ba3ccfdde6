"""``use_dill``, ``use_cloudpickle``, ``use_pickle`` on real kernels: each switches what
a client's connections pickle with, both ways."""

from __future__ import annotations

import os
import pickle
import threading

import pytest
from conftest import start_kernel

import ipython_parallel_kernel as ipp
from ipython_parallel_kernel.errors import RemoteError


def test_use_dill_ships_a_closure_cloudpickle_cannot(rc):
    """A function closing over a lock fails to pickle by default; after use_dill() it
    runs on every kernel, through a DirectView and a LoadBalancedView alike."""
    lock = threading.Lock()

    def locked_increment(x):
        with lock:
            return x + 1

    dview = rc[:]
    with pytest.raises(TypeError, match="lock"):
        dview.apply_sync(locked_increment, 1)
    assert dview.use_dill().get(30) == [None] * 4
    assert dview.apply_sync(locked_increment, 1) == [2] * 4
    assert rc.load_balanced_view().map_sync(locked_increment, range(4)) == [1, 2, 3, 4]


def test_after_use_dill_the_kernels_send_back_with_dill(rc):
    """A lock made on a kernel cannot be pulled by default (the kernel cannot pickle it);
    after use_dill() it is pulled, and published, as a lock."""
    dview = rc[:]
    dview.execute("import threading; lock = threading.Lock()", block=True)
    with pytest.raises(RemoteError, match=r"cannot pickle '_thread\.lock'"):
        dview.pull("lock", block=True)
    dview.use_dill()
    locks = dview.pull("lock", block=True)
    assert all(type(lock) is type(threading.Lock()) for lock in locks)

    def publish_lock():
        import threading

        from ipython_parallel_kernel.datapub import publish_data

        publish_data({"lock": threading.Lock()})

    ar = rc[0].apply_async(publish_lock)
    ar.get(30)
    assert type(ar.data["lock"]) is type(threading.Lock())


def test_a_closure_made_on_a_kernel_comes_back_unless_plain_pickle(rc):
    """A closure defined on a kernel is pulled by default and with dill; with
    use_pickle() the kernel's reply says plain pickle cannot, and what ships it."""
    view = rc[1]
    view.execute("def make_adder(n):\n    return lambda x: x + n\nadd3 = make_adder(3)", block=True)
    assert view.pull("add3", block=True)(1) == 4
    view.use_dill()
    assert view.pull("add3", block=True)(2) == 5
    view.use_pickle()
    with pytest.raises(RemoteError, match=r"use_cloudpickle\(\) or use_dill\(\)"):
        view.pull("add3", block=True)


def test_use_pickle_takes_functions_by_reference_until_use_cloudpickle(rc):
    """After use_pickle() a lambda fails to pickle here, saying what ships it, and an
    importable function still runs; use_cloudpickle() ships lambdas again."""
    dview = rc[:]
    dview.use_pickle()
    with pytest.raises(pickle.PicklingError, match=r"use_cloudpickle\(\)"):
        dview.apply_sync(lambda: 1)
    assert dview.apply_sync(pow, 2, 5) == [32] * 4
    dview.use_cloudpickle()
    assert dview.apply_sync(lambda: 1) == [1] * 4


def test_use_dill_says_which_kernel_lacks_dill(tmp_path, monkeypatch):
    """A kernel where dill cannot be imported makes a blocking use_dill() raise a
    RemoteError naming pip install dill, and the connection keeps its pickler."""
    shadow = tmp_path / "shadow" / "dill"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('dill is hidden from this kernel')\n")
    path = [str(shadow.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))
    ipython_dir = tmp_path / "ipython"
    ipython_dir.mkdir()
    kernel = start_kernel(ipython_dir)
    try:
        with ipp.Client(kernel.connection_file, timeout=30) as rc:
            view = rc[:]
            view.block = True
            with pytest.raises(RemoteError, match="pip install dill"):
                view.use_dill()
            assert rc.kernels[0].pickler == "cloudpickle"
            assert view.apply(lambda: "still works") == ["still works"]
    finally:
        kernel.stop()
