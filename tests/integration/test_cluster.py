"""InteractiveCluster against four real kernels."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import start_kernel

from ipython_parallel_kernel import ClusterResult, CompositeError, InteractiveCluster, RemoteKernel
from ipython_parallel_kernel.client.kernel import AsyncResult
from ipython_parallel_kernel.errors import KernelDied, RemoteError

TARGET_FORMS = [
    (None, [0, 1, 2, 3]),
    ("all", [0, 1, 2, 3]),
    (2, [2]),
    (-1, [3]),
    ([0, 3], [0, 3]),
    (slice(1, 3), [1, 2]),
    ("0,2", [0, 2]),
    ("1:3", [1, 2]),
    ("::2", [0, 2]),
    ("1:", [1, 2, 3]),
]


@pytest.mark.parametrize(("targets", "chosen"), TARGET_FORMS)
def test_target_forms_select_kernels(ic, targets, chosen):
    """Every target form reaches exactly the kernels it names, one value each."""
    results = ic.execute("hit = True", targets=targets)
    assert len(results) == len(chosen)
    hits = ic.apply(lambda: "hit" in __import__("__main__").__dict__)
    assert [i for i, hit in enumerate(hits) if hit] == chosen


def test_text_targets_are_parsed_not_evaluated(ic):
    """A target spec typed as text is parsed; anything else is refused with an example."""
    with pytest.raises(ValueError, match="is not an index or a slice"):
        ic.execute("1", targets="__import__('os')")
    with pytest.raises(IndexError, match="has 4 kernels"):
        ic.execute("1", targets=7)


def test_every_verb_fans_out(ic, tmp_path: Path):
    """execute, run, push, pull, apply, keys, status, reset, interrupt, abort, notify,
    allow and deny each return one value per target."""
    assert [r.text for r in ic.execute("40 + 2", targets=[1, 2])] == ["42", "42"]
    script = tmp_path / "job.py"
    script.write_text("from_file = 1\n")
    assert len(ic.run(script, targets="::2")) == 2
    ic.push({"a": 1, "b": 2}, targets=slice(0, 2))
    assert ic.pull(["a", "b"], targets=[0, 1]) == [[1, 2], [1, 2]]
    ic.push(7, "c")
    assert ic.pull("c") == [7, 7, 7, 7]
    assert ic.apply(lambda x, y=0: x * 10 + y, 4, y=2, targets=3) == [42]
    assert ic.keys(targets=0) == [["from_file", "a", "b", "c"]]
    statuses = ic.status()
    assert [s["state"] for s in statuses] == ["idle"] * 4
    assert len({s["pid"] for s in statuses}) == 4
    assert ic.interrupt(targets="1:") == [False, False, False]
    assert ic.abort() == [0, 0, 0, 0]
    assert ic.notify(("127.0.0.1", 10104)) == [["127.0.0.1:10104"]] * 4
    ic.notify(("127.0.0.1", 10104), False)
    assert "127.0.0.9/32" in ic.allow("127.0.0.9", targets=0)[0]["allow"]
    assert "127.0.0.9/32" in ic.deny("127.0.0.9", targets=0)[0]["deny"]
    ic.reset(targets=[0])
    assert ic.keys(targets=0) == [[]]


def test_dictionary_interface_and_indexing(ic, four_kernels):
    """ic['a'] = 5 pushes to all, ic['a'] pulls a list, ic[0] is a RemoteKernel."""
    ic["a"] = 5
    assert ic["a"] == [5, 5, 5, 5]
    assert isinstance(ic[0], RemoteKernel)
    ic[0]["a"] = 6
    assert ic[0]["a"] == 6
    assert ic["a"] == [6, 5, 5, 5]
    assert len(ic) == 4
    assert ic[3].address == four_kernels[3].address


def test_subcluster_and_addition(ic):
    """subcluster picks kernels; + joins clusters; both share the connections."""
    evens, odds = ic.subcluster("::2"), ic.subcluster([1, 3])
    assert len(evens) == 2 and len(odds) == 2
    evens["side"] = "even"
    odds["side"] = "odd"
    both = evens + odds
    assert len(both) == 4
    assert both["side"] == ["even", "even", "odd", "odd"]
    assert ic["side"] == ["even", "odd", "even", "odd"]


def test_nonblocking_fan_out_reaches_all_before_waiting(ic):
    """block=False sends to every target at once: all four are busy together."""
    pending = ic.execute("import time; time.sleep(1.5)", block=False)
    assert isinstance(pending, ClusterResult)
    busy = [s["state"] for s in ic.status()]
    assert busy == ["busy"] * 4
    assert pending.progress == 0
    assert len(pending.get(30)) == 4
    assert pending.progress == 4 and pending.ready()


@pytest.mark.parametrize(
    "seq",
    [list(range(10)), tuple(range(7)), np.arange(11.0), np.arange(24).reshape(8, 3), [1, 2]],
    ids=["list", "tuple", "array", "2d-array", "fewer-than-kernels"],
)
def test_scatter_gather_round_trip(ic, seq):
    """scatter then gather gives back the sequence, in order, of the same type."""
    ic.scatter("part", seq)
    sizes = [len(p) for p in ic["part"]]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == len(seq)
    back = ic.gather("part")
    assert type(back) is type(seq)
    if isinstance(seq, np.ndarray):
        assert np.array_equal(back, seq)
    else:
        assert back == seq


def test_map_equals_builtin_map(ic):
    """map(func, seq) equals the builtin map, with one and with two sequences."""
    assert ic.map(lambda x: x * x, range(13)) == list(map(lambda x: x * x, range(13)))
    assert ic.map(pow, [2, 3, 4], [5, 2, 1]) == [32, 9, 4]
    assert ic.map(str.upper, ["a"]) == ["A"]


def test_composite_error_from_two_of_four(ic):
    """Failures on 2 of 4 kernels arrive as one CompositeError; the others' results stay."""
    ic.scatter("rank", list(range(4)))
    with pytest.raises(CompositeError) as info:
        ic.execute("rank = rank[0]\nif rank % 2: 1 / 0\nrank")
    error = info.value
    assert [target for target, _, _ in error.errors] == [1, 3]
    assert error.results[0].text == "0" and error.results[2].text == "2"
    text = error.render_traceback()
    assert f"[1:execute] {ic[1].name}" in text and "ZeroDivisionError" in text
    with pytest.raises(RemoteError, match="division by zero"):
        error.raise_exception(1)


def test_move_copies_between_kernels(ic):
    """move copies a value from one kernel straight to the others."""
    ic[0]["big"] = np.arange(1_000_000.0)
    delivered = ic.move("big", 0)
    assert sorted(delivered) == sorted(k.name for k in ic.kernels[1:])
    sums = ic.apply(lambda: float(__import__("__main__").big.sum()))
    assert sums == [float(np.arange(1_000_000.0).sum())] * 4
    ic[1]["only"] = "one"
    ic.move("only", 1, targets=[3])
    names_per_kernel = ic.keys()
    assert [("only" in names) for names in names_per_kernel] == [False, True, False, True]
    with pytest.raises(RemoteError, match="missing"):
        ic.move("missing", 2)


def test_save_and_load(ic, four_kernels, ipython_dir):
    """save(name) remembers the addresses; load(name) reconnects to the same kernels."""
    path = ic.save("team")
    assert path.stat().st_mode & 0o777 == 0o600
    again = InteractiveCluster.load("team", timeout=30)
    assert [k.address for k in again] == [k.address for k in four_kernels]
    ic["shared"] = 1
    assert again["shared"] == [1, 1, 1, 1]
    again.disconnect()


def test_from_file_reads_a_cluster_file(ic, tmp_path, ipython_dir):
    """from_file connects to every kernel of a saved cluster file, in order."""
    path = ic.save("again")
    loaded = InteractiveCluster.from_file(path, timeout=30)
    assert [k.name for k in loaded] == [k.name for k in ic]
    loaded.disconnect()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read cluster file"):
        InteractiveCluster.from_file(bad)


@pytest.fixture
def own_four(ipython_dir):
    """Four kernels of this test's own, for tests that kill or stop some."""
    kernels = [start_kernel(ipython_dir) for _ in range(4)]
    try:
        yield kernels
    finally:
        for kernel in kernels:
            if kernel.process.poll() is None:
                os.kill(kernel.pid, signal.SIGCONT)
            kernel.stop()


def test_killed_kernel_is_reported_and_others_carry_on(own_four):
    """kill -9 of one kernel mid-command fails its part within a second, by target and
    address; the other three finish and keep working."""
    cluster = InteractiveCluster([str(k.connection_file) for k in own_four], timeout=60)
    pending = cluster.execute("import time; time.sleep(2); 'done'", block=False)
    time.sleep(0.3)
    victim = own_four[2]
    killed_at = time.monotonic()
    os.kill(victim.pid, signal.SIGKILL)
    part = pending.parts[2]
    with pytest.raises(KernelDied, match=victim.ip) as info:
        part.result(1.0)
    assert time.monotonic() - killed_at < 1.0
    assert str(victim.port) in str(info.value)
    with pytest.raises(CompositeError) as composite:
        pending.get(30)
    assert [t for t, _, _ in composite.value.errors] == [2]
    assert [r.text for i, r in enumerate(composite.value.results) if i != 2] == ["'done'"] * 3
    alive = cluster.subcluster([0, 1, 3])
    assert [r.text for r in alive.execute("1 + 1")] == ["2", "2", "2"]
    cluster.disconnect()


def test_stopped_kernel_is_caught_by_the_heartbeat(own_four):
    """A SIGSTOPped kernel (connection open, no answers) is declared lost by the heartbeat."""
    cluster = InteractiveCluster(
        [str(k.connection_file) for k in own_four], timeout=60, heartbeat=1.0
    )
    frozen = own_four[1]
    os.kill(frozen.pid, signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(CompositeError) as info:
        cluster.execute("2 + 2")
    waited = time.monotonic() - started
    (target, name, error), *rest = info.value.errors
    assert rest == [] and target == 1 and name == cluster[1].name
    assert isinstance(error, KernelDied) and "no answer" in str(error)
    assert waited < 10
    assert [r.text for i, r in enumerate(info.value.results) if i != 1] == ["4"] * 3
    cluster.disconnect()


def test_busy_kernel_is_not_taken_for_dead(own_four):
    """A kernel computing for longer than the heartbeat still answers pings."""
    cluster = InteractiveCluster(
        [str(k.connection_file) for k in own_four[:2]], timeout=60, heartbeat=1.0
    )
    results = cluster.execute(
        "import time\nend = time.time() + 3\nwhile time.time() < end: pass\n'ok'"
    )
    assert [r.text for r in results] == ["'ok'", "'ok'"]
    cluster.disconnect()


def test_every_verb_returns_a_future_with_block_false(ic, tmp_path: Path):
    """block=False makes every verb group return a ClusterResult (move, which asks one
    kernel, an AsyncResult), whose get() is what the blocking call returns."""
    script = tmp_path / "script.py"
    script.write_text("ran = True\n")
    ic.execute("x = 1", block=False).get(30)
    assert ic.run(script, block=False).get(30)[0].source == "ran = True\n"
    assert ic.push(2, "y", block=False).get(30) == [["y"]] * 4
    assert ic.pull("y", block=False).get(30) == [2] * 4
    assert ic.apply(lambda a: a + 1, 1, block=False).get(30) == [2] * 4
    assert all("y" in names for names in ic.keys(block=False).get(30))
    assert ic.result(block=False).get(30)[0].source == "ran = True\n"
    assert [s["state"] for s in ic.status(block=False).get(30)] == ["idle"] * 4
    assert ic.interrupt(block=False).get(30) == [False] * 4
    assert ic.abort(block=False).get(30) == [0] * 4
    assert "127.0.0.9/32" in ic.allow("127.0.0.9", 0, block=False).get(30)[0]["allow"]
    assert "127.0.0.9/32" in ic.deny("127.0.0.9", 0, block=False).get(30)[0]["deny"]
    notified = ic.notify(("127.0.0.1", 10104), False, block=False)
    assert isinstance(notified, ClusterResult)
    notified.get(30)
    assert isinstance(ic.scatter("part", list(range(8)), block=False), ClusterResult)
    gathered = ic.gather("part", block=False)
    assert isinstance(gathered, ClusterResult) and gathered.get(30) == list(range(8))
    mapped = ic.map(lambda v: v * v, range(6), block=False)
    assert isinstance(mapped, ClusterResult) and mapped.get(30) == [0, 1, 4, 9, 16, 25]
    moved = ic.move("y", 0, block=False)
    assert isinstance(moved, AsyncResult) and len(moved.get(30)) == 3
    assert ic.reset(block=False).get(30) == [None] * 4


def test_cluster_default_rules_every_verb(ic):
    """With ic.block = False, verbs called without block= (status, keys, map, gather,
    apply, move...) return futures; block=True still waits; temp_flags restores."""
    ic["z"] = [1]
    ic.block = False
    futures = [
        ic.status(),
        ic.keys(),
        ic.apply(lambda: 1),
        ic.map(abs, [-1, -2]),
        ic.gather("z"),
        ic.result(),
    ]
    assert all(isinstance(f, ClusterResult) for f in futures)
    for future in futures:
        future.get(30)
    assert isinstance(ic.move("z", 0), AsyncResult)
    assert ic.map(abs, [-1, -2], block=True) == [1, 2]
    ic.block = True
    with ic.temp_flags(block=False):
        assert isinstance(ic.keys(), ClusterResult)
    assert isinstance(ic.keys(), list)


def test_cluster_kill_without_block_returns_a_future(own_four):
    """kill(block=False) returns a ClusterResult, and the targets leave the cluster."""
    cluster = InteractiveCluster([k.address for k in own_four[:2]], timeout=30, block=False)
    done = cluster.kill(0)
    assert isinstance(done, ClusterResult)
    done.get(30)
    assert len(cluster) == 1
    cluster.disconnect()
