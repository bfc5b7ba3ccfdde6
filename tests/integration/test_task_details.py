"""What results tell besides their values (timings, where each part ran, output), and
load-balanced tasks' dependencies, retries and requirements, on real kernels."""

from __future__ import annotations

import os
import time
from datetime import datetime

import pytest

import ipython_parallel_kernel as ipp
from ipython_parallel_kernel.errors import (
    DependencyTimeout,
    ImpossibleDependency,
    KernelTimeout,
    RemoteError,
)


@ipp.interactive
def nap(seconds: float) -> float:
    """Sleep on the kernel; return when it woke."""
    import time

    time.sleep(seconds)
    return time.time()


def test_direct_results_carry_each_kernels_timings_and_output(rc):
    """A DirectView result's metadata: each target's id, datetimes in their order,
    what each printed; serial_time adds the kernels' run times up."""
    ar = rc[:].apply_async(lambda: print("hello") or nap(0.05))
    ar.get(30)
    assert ar.engine_id == rc.ids and ar.stdout == ["hello\n"] * 4
    for md in ar.metadata:
        assert isinstance(md.started, datetime) and md.status == "ok" and md.error is None
        assert md.submitted <= md.received and md.started <= md.completed
    assert ar.serial_time >= 4 * 0.05 and ar.wall_time >= 0.05
    assert ar.elapsed == ar.wall_time
    assert ar.timedelta(ar.started, ar.completed) >= 0.05
    assert len(set(ar.msg_ids)) == 4 and ar.progress == 4


def test_single_results_give_one_metadata(rc):
    """rc[1] and a load-balanced apply: one engine_id, one Metadata, keyed access."""
    ar = rc[1].apply_async(os.getpid)
    ar.get(30)
    assert ar.engine_id == 1 and ar.metadata.engine_id == 1 and ar.metadata["status"] == "ok"
    task = rc.load_balanced_view().apply_async(nap, 0.01)
    task.get(30)
    assert task.engine_id in rc.ids and task["engine_id"] == task.engine_id
    assert task.serial_time >= 0.01 and task.started is not None


def test_a_failed_part_is_in_its_metadata(rc):
    """The failing target's metadata holds its RemoteError and status 'error'."""
    ar = rc[:2].apply_async(lambda: 1 / 0)
    ar.wait(30)
    assert [md.status for md in ar.metadata] == ["error", "error"]
    assert all(isinstance(e, RemoteError) for e in ar.error)


def test_timings_wait_for_the_result(rc):
    """wall_time of a running result says to wait first, and elapsed grows meanwhile."""
    ar = rc[0].apply_async(nap, 0.5)
    with pytest.raises(RuntimeError, match="wait"):
        ar.wall_time  # noqa: B018
    assert 0 <= ar.elapsed < 60
    ar.get(30)


def test_display_outputs_labels_each_kernel(rc, capsys):
    """display_outputs prints [stdout:i] blocks: by type, or each kernel's together."""
    ar = rc[:2].execute("import sys; print('out'); print('err', file=sys.stderr)")
    ar.wait(30)
    capsys.readouterr()
    ar.display_outputs()
    printed = capsys.readouterr()
    assert printed.out.splitlines() == ["[stdout:0] out", "[stdout:1] out"]
    assert printed.err.splitlines() == ["[stderr:0] err", "[stderr:1] err"]
    with pytest.raises(ValueError, match="groupby"):
        ar.display_outputs("kernel")


def test_stream_output_shows_output_while_it_runs(rc, capsys):
    """Inside stream_output, a running command's first line is shown before it ends."""
    ar = rc[0].execute("import time; print('first', flush=True); time.sleep(1.5); print('last')")
    with ar.stream_output():
        deadline = time.monotonic() + 30
        shown = ""
        while "first" not in shown and time.monotonic() < deadline:
            time.sleep(0.05)
            shown += capsys.readouterr().out
        assert "[stdout:0] first" in shown and not ar.ready()
        ar.wait(30)
    assert "last" in shown + capsys.readouterr().out


def test_stream_output_of_applied_functions_shows_each_as_it_finishes(rc, capsys):
    """Applied functions' output is shown as each kernel's reply comes."""
    ar = rc[:2].apply_async(lambda: print("done here"))
    with ar.stream_output():
        ar.wait(30)
    assert capsys.readouterr().out.count("done here") == 2


def test_wait_interactive_draws_a_bar_until_done(rc, capsys):
    """wait_interactive returns once done, having drawn a bar of the tasks; it raises
    KernelTimeout when asked to stop waiting first."""
    lview = rc.load_balanced_view()
    ar = lview.map_async(nap, [0.05] * 12)
    ar.wait_interactive(interval=0.02)
    assert ar.ready() and "tasks" in capsys.readouterr().err
    slow = lview.apply_async(nap, 2)
    with pytest.raises(KernelTimeout):
        slow.wait_interactive(interval=0.02, timeout=0.1)
    slow.get(30)


def test_after_runs_a_task_once_its_dependency_is_done(rc):
    """after=: the task starts only after what it waits for has completed."""
    lview = rc.load_balanced_view()
    first = lview.apply_async(nap, 0.5)
    with lview.temp_flags(after=first):
        second = lview.apply_async(nap, 0)
    assert second.get(30) >= first.get(30)
    assert second.started >= first.completed


def test_follow_runs_tasks_where_their_dependency_ran(rc):
    """follow=: every following task runs on the kernel the first one ran on."""
    lview = rc.load_balanced_view()
    first = lview.apply_async(nap, 0.1)
    with lview.temp_flags(follow=first):
        after = lview.map_async(nap, [0.01] * 8)
    after.get(30)
    assert set(after.engine_id) == {first.engine_id}


def test_a_failed_dependency_makes_the_task_impossible(rc):
    """after= a failure: ImpossibleDependency, unless failure=True says it will do."""
    lview = rc.load_balanced_view()
    failed = lview.apply_async(lambda: 1 / 0)
    with pytest.raises(ImpossibleDependency):
        lview.set_flags(after=failed).apply_sync(nap, 0)
    lview.set_flags(after=ipp.Dependency(failed, success=False, failure=True))
    assert lview.apply_sync(lambda: "ran") == "ran"
    lview.set_flags(after=None)
    assert lview.apply_sync(lambda: "ran") == "ran"


def test_a_dependency_by_msg_id(rc):
    """after= a task's msg_id waits for that task."""
    lview = rc.load_balanced_view()
    first = lview.apply_async(nap, 0.3)
    with lview.temp_flags(after=first.msg_ids):
        second = lview.apply_async(nap, 0)
    assert second.get(30) >= first.get(30)
    with pytest.raises(ValueError, match="no task"):
        lview.set_flags(after=["task-nonesuch"])


def test_timeout_fails_a_task_whose_dependency_is_late(rc):
    """timeout=: a dependency not met in time fails the task with DependencyTimeout."""
    lview = rc.load_balanced_view()
    slow = lview.apply_async(nap, 3)
    with lview.temp_flags(after=slow, timeout=0.2):
        late = lview.apply_async(nap, 0)
    with pytest.raises(DependencyTimeout):
        late.get(30)
    slow.get(30)


@ipp.interactive
def fails_on_kernel_0():
    """Fails where the kernel's ``bad`` is true."""
    if bad:  # noqa: F821  (each kernel's own)
        raise RuntimeError("bad kernel")
    return "fine"


def test_retries_send_a_failed_task_elsewhere(rc):
    """retries=1: a task that fails on one kernel is sent to another and succeeds;
    with no retries it fails."""
    rc[:].push({"bad": False}, block=True)
    rc[0].push({"bad": True}, block=True)
    lview = rc.load_balanced_view([0, 1])
    with pytest.raises(RemoteError, match="bad kernel"):
        lview.apply_sync(fails_on_kernel_0)
    lview.set_flags(retries=1)
    ar = lview.apply_async(fails_on_kernel_0)
    assert ar.get(30) == "fine" and ar.engine_id == 1
    with pytest.raises(TypeError, match="retries"):
        lview.set_flags(retries=-1)


def test_require_imports_modules_on_the_kernel(rc):
    """@require('json'): the function sees json; a module no kernel has makes the task
    impossible, after every kernel was tried."""

    @ipp.require("json")
    def dumped():
        return json.dumps([1])  # noqa: F821  (imported by require)

    lview = rc.load_balanced_view()
    assert lview.apply_sync(dumped) == "[1]"

    @ipp.require("no_such_module_anywhere")
    def impossible():
        return 1

    with pytest.raises(ImpossibleDependency):
        lview.apply_sync(impossible)


def test_depend_runs_only_where_its_check_passes(rc):
    """@depend(check): tasks run only on the kernel whose check is true."""
    chosen = rc[2].apply_sync(os.getpid)

    def is_chosen(pid):
        import os

        return os.getpid() == pid

    @ipp.depend(is_chosen, chosen)
    def where(_=None):
        import os

        return os.getpid()

    assert set(rc.load_balanced_view().map_sync(where, range(6))) == {chosen}
    assert rc.load_balanced_view().apply_sync(where) == chosen


def test_client_wait_interactive_waits_for_every_job(rc, capsys):
    """rc.wait_interactive(jobs) returns once every job is done, having drawn its bar."""
    jobs = [rc[i].apply_async(nap, 0.1 * i) for i in rc.ids]
    rc.wait_interactive(jobs, interval=0.02)
    assert all(job.ready() for job in jobs) and "jobs" in capsys.readouterr().err
    slow = rc[0].apply_async(nap, 2)
    with pytest.raises(KernelTimeout, match="1 of 1"):
        rc.wait_interactive([slow], interval=0.02, timeout=0.1)
    slow.get(30)


def test_abort_withdraws_only_the_parts_not_started(rc):
    """ar.abort(): a queued request fails as Aborted, the running one and the other
    requests queued on that kernel run on; an abort after the end is refused."""
    kernel = rc[0]
    running = kernel.apply_async(nap, 1.0)
    queued = kernel.apply_async(nap, 0)
    other = kernel.apply_async(lambda: "other")
    queued.abort()
    with pytest.raises(RemoteError, match="Aborted"):
        queued.get(30)
    assert running.get(30) > 0 and other.get(30) == "other"
    with pytest.raises(RuntimeError, match="done"):
        running.abort()


def test_abort_of_a_load_balanced_map_withdraws_its_queued_tasks(rc):
    """Aborting a map of slow tasks: those still queued here fail with TaskAborted,
    those sent run to the end."""
    from ipython_parallel_kernel.errors import TaskAborted

    ar = rc.load_balanced_view([0, 1]).map_async(nap, [0.3] * 20)
    time.sleep(0.1)
    ar.abort()
    outcomes = ar.get(60, return_exceptions=True)
    aborted = [o for o in outcomes if isinstance(o, TaskAborted)]
    assert aborted and len(aborted) < 20
    assert all(isinstance(o, float) for o in outcomes[: 20 - len(aborted)])
