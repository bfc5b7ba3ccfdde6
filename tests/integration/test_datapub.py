"""``publish_data`` on real kernels: what a running request publishes reaches its
result's ``data`` while it runs, merged, and before its reply."""

from __future__ import annotations

import pytest
from conftest import wait_for

from ipython_parallel_kernel.datapub import publish_data
from ipython_parallel_kernel.errors import RemoteError


def test_the_client_sees_published_progress_while_the_request_runs(rc, tmp_path):
    """ipyparallel's example: a loop publishes its progress; the client reads ar.data
    while the function still runs (it waits for the client to have seen it)."""
    seen = tmp_path / "seen"

    def work(gate):
        import os
        import time

        from ipython_parallel_kernel.datapub import publish_data

        for i in range(3):
            publish_data({"progress": i})
        deadline = time.monotonic() + 30
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.01)
        publish_data({"done": True})
        return os.path.exists(gate)

    ar = rc[0].apply_async(work, str(seen))
    wait_for(lambda: ar.data.get("progress") == 2)
    assert not ar.ready()
    seen.touch()
    assert ar.get(30) is True
    assert ar.data == {"progress": 2, "done": True}


def test_published_dicts_merge_and_arrays_arrive_whole(rc):
    """Later keys replace earlier ones, others stay; a large numpy array arrives equal."""
    numpy = pytest.importorskip("numpy")

    def publish_three():
        import numpy

        from ipython_parallel_kernel.datapub import publish_data

        publish_data({"a": 1, "b": 2})
        publish_data({"a": 3})
        publish_data({"array": numpy.arange(100_000.0)})

    ar = rc[1].apply_async(publish_three)
    ar.get(30)
    assert set(ar.data) == {"a", "b", "array"} and (ar.data["a"], ar.data["b"]) == (3, 2)
    numpy.testing.assert_array_equal(ar.data["array"], numpy.arange(100_000.0))


def test_data_arrives_before_the_reply_it_precedes(rc):
    """What a request publishes as its last act is in ar.data as soon as ar is done,
    for every request of a burst."""

    def last_act(i):
        from ipython_parallel_kernel.datapub import publish_data

        publish_data({"i": i})
        return i

    results = [rc[2].apply_async(last_act, i) for i in range(50)]
    for i, ar in enumerate(results):
        assert ar.get(30) == i and ar.data == {"i": i}


def test_executed_code_publishes_one_dict_per_target(rc):
    """Code run by execute publishes too: a list of dicts for several targets, the dict
    itself for an int target."""
    code = (
        "import os\n"
        "from ipython_parallel_kernel.datapub import publish_data\n"
        "publish_data({'pid': os.getpid()})"
    )
    ar = rc[:].execute(code, block=True)
    pids = rc[:].apply_sync(lambda: __import__("os").getpid())
    assert ar.data == [{"pid": pid} for pid in pids]
    assert rc[3].execute(code, block=True).data == {"pid": pids[3]}


def test_load_balanced_results_have_one_dict_per_task(rc):
    """A load-balanced map has one dict per task (chunk), an apply the dict itself."""

    def square(x):
        from ipython_parallel_kernel.datapub import publish_data

        publish_data({"last": x})
        return x * x

    lview = rc.load_balanced_view()
    ar = lview.map_async(square, range(6), chunksize=2)
    assert ar.get(30) == [0, 1, 4, 9, 16, 25]
    assert ar.data == [{"last": 1}, {"last": 3}, {"last": 5}]
    single = lview.apply_async(square, 7)
    assert single.get(30) == 49 and single.data == {"last": 7}


def test_publishing_after_the_request_ended_is_a_clear_error(rc, tmp_path):
    """A thread that publishes once its request is over gets a RuntimeError saying when
    publish_data works; so does a call on the client, and a value that is not a dict."""
    gate = tmp_path / "request-over"
    rc[0].execute(
        "import os, threading, time\n"
        "from ipython_parallel_kernel.datapub import publish_data\n"
        "late = []\n"
        "def publish_late():\n"
        "    deadline = time.monotonic() + 30\n"
        f"    while not os.path.exists({str(gate)!r}) and time.monotonic() < deadline:\n"
        "        time.sleep(0.01)\n"
        "    try:\n"
        "        publish_data({'late': True})\n"
        "    except RuntimeError as e:\n"
        "        late.append(str(e))\n"
        "threading.Thread(target=publish_late).start()",
        block=True,
    )
    gate.touch()
    (message,) = wait_for(lambda: rc[0].pull("late", block=True))
    assert "while it runs" in message
    with pytest.raises(RuntimeError, match="call it in code a client runs on a kernel"):
        publish_data({"here": 1})

    def publish_a_list():
        from ipython_parallel_kernel.datapub import publish_data

        publish_data([1, 2])

    with pytest.raises(RemoteError, match="takes a dict"):
        rc[0].apply_sync(publish_a_list)


def test_datapub_on_a_kernel_loads_no_client_code(rc):
    """Importing ipython_parallel_kernel.datapub in a kernel loads no client module."""

    def modules_after_import():
        import sys

        import ipython_parallel_kernel.datapub  # noqa: F401

        return sorted(m for m in sys.modules if m.startswith("ipython_parallel_kernel."))

    loaded = rc[1].apply_sync(modules_after_import)
    assert "ipython_parallel_kernel.datapub" in loaded
    above = ("ipython_parallel_kernel.client", "ipython_parallel_kernel.magics")
    assert not [module for module in loaded if module.startswith(above)]
