"""ipyparallel's exception names (``ipp.error``) catch what real kernels raise."""

from __future__ import annotations

import pytest

import ipython_parallel_kernel as ipp


def test_a_get_that_times_out_is_caught_as_ipp_error_timeout_error(rc):
    """get(timeout=0.01) on a task still running raises what except ipp.error.TimeoutError
    catches; the task then finishes."""
    ar = rc[0].apply_async(lambda: __import__("time").sleep(1) or "slept")
    with pytest.raises(ipp.error.TimeoutError):
        ar.get(timeout=0.01)
    assert ar.get(timeout=30) == "slept"


def test_a_failing_function_is_caught_as_ipp_error_remote_error(rc):
    """A function that raises on one kernel, or on several, raises what except
    ipp.error.RemoteError catches: the several as a CompositeError listing each."""

    def fail():
        raise ValueError("bad input")

    with pytest.raises(ipp.error.RemoteError) as one:
        rc[1].apply_sync(fail)
    assert one.value.ename == "ValueError" and "bad input" in one.value.evalue
    with pytest.raises(ipp.error.RemoteError) as several:
        rc[:].apply_sync(fail)
    assert isinstance(several.value, ipp.error.CompositeError)
    assert [target for target, _, _ in several.value.errors] == [0, 1, 2, 3]


def test_a_view_whose_kernels_have_gone_raises_no_engines_registered(kernel):
    """After its only kernel shut down, a load-balanced task fails with what
    except ipp.error.NoEnginesRegistered catches."""
    with ipp.Client(kernel.connection_file, timeout=30) as rc:
        lview = rc.load_balanced_view()
        assert lview.apply_sync(lambda: 1) == 1
        rc.shutdown(block=True)
        kernel.process.wait(30)
        with pytest.raises(ipp.error.NoEnginesRegistered, match="every kernel of this view"):
            lview.apply_async(lambda: 2).get(30)
