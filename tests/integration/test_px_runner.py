"""The %px runner against real kernels, with no IPython shell: a cluster and options."""

from __future__ import annotations

import _thread
import threading
import time

import pytest

from ipython_parallel_kernel.errors import CompositeError, RemoteError
from ipython_parallel_kernel.magics.runner import PxRunner


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_run_streams_output_and_shows_results(ic, capsys):
    """run() prints each kernel's labelled output and Out[N:M], and returns the results."""
    runner = PxRunner(ic)
    outcomes = runner.run("print('hi'); 6 * 7", [0, 2])
    out = lines(capsys.readouterr().out)
    assert sorted(out[:2]) == ["[stdout:0] hi", "[stdout:2] hi"]
    assert [line.split("]:")[1].strip() for line in out[2:]] == ["42", "42"]
    assert [line.split(":")[0] for line in out[2:]] == ["Out[0", "Out[2"]
    assert [o.text for o in outcomes] == ["42", "42"]


def test_unstreamed_output_is_grouped_at_the_end(ic, capsys):
    """stream=False, group='type': all stdout, then all stderr, shown when the command ends."""
    code = "import sys; print('out'); print('err', file=sys.stderr)"
    PxRunner(ic, stream=False, group="type").run(code, [1, 3])
    captured = capsys.readouterr()
    assert lines(captured.out) == ["[stdout:1] out", "[stdout:3] out"]
    assert lines(captured.err) == ["[stderr:1] err", "[stderr:3] err"]


def test_failures_are_returned_then_raised_on_request(ic):
    """A failing kernel's outcome is its RemoteError; raise_failures names it by target."""
    runner = PxRunner(ic)
    outcomes = runner.run("1 / 0", [0, 1])
    assert all(isinstance(o, RemoteError) for o in outcomes)
    with pytest.raises(CompositeError) as failed:
        runner.raise_failures([0, 1], outcomes)
    assert [target for target, _, _ in failed.value.errors] == [0, 1]
    assert failed.value.errors[0][1] == ic[0].name
    runner.raise_failures([0], [ic.execute("1", targets=0)[0]])  # no failure: no error


def test_progress_bar_once_a_command_outlasts_the_delay(ic, capsys):
    """With progress_after=0 a command that takes a while draws the %px progress bar."""
    PxRunner(ic, progress_after=0.0).run("import time; time.sleep(0.5)", [0, 1, 2, 3])
    assert "%px" in capsys.readouterr().err


def test_keyboard_interrupt_interrupts_the_kernels(ic, capsys):
    """A KeyboardInterrupt while run() waits interrupts the kernels and returns their
    outcomes; the kernels stay usable."""
    assert threading.current_thread() is threading.main_thread()
    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    started = time.monotonic()
    try:
        outcomes = PxRunner(ic).run("import time; time.sleep(30)", [0, 1])
    finally:
        timer.cancel()
    assert time.monotonic() - started < 20
    assert "interrupted kernels 0, 1" in capsys.readouterr().err
    assert all(isinstance(o, RemoteError) for o in outcomes), outcomes
    assert [o.text for o in PxRunner(ic).run("1 + 1", [0, 1])] == ["2", "2"]


def test_start_returns_at_once(ic, capsys):
    """start() sends the code and returns the pending ClusterResult without showing anything."""
    pending = PxRunner(ic).start("import time; time.sleep(0.3); print('late'); 'done'", [0, 3])
    assert not pending.done()
    assert [r.text for r in pending.get(30)] == ["'done'", "'done'"]
    assert capsys.readouterr().out == ""
