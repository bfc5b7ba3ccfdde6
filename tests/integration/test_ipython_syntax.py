"""IPython syntax on a real kernel: magics and !commands, through RemoteKernel.execute."""

from __future__ import annotations

import signal
import threading

import pytest

from ipython_parallel_kernel.errors import RemoteError

LOADED = "import sys; 'IPython' in sys.modules"


def test_plain_python_never_loads_ipython(rk):
    """Plain Python, push, pull, apply, a syntax error and number or string results leave
    IPython unloaded on the kernel, and no get_ipython in its namespace."""
    rk.execute("def f(x):\n    return x * 2")
    rk["a"] = 3
    assert rk.execute("f(a)").text == "6"
    assert rk.execute("'text'").text == "'text'"
    assert rk.apply(pow, 2, 3) == 8
    assert rk["a"] == 3
    with pytest.raises(RemoteError, match="SyntaxError"):
        rk.execute("x = (")
    assert rk.execute(LOADED).text == "False"
    with pytest.raises(RemoteError, match="NameError"):
        rk.execute("get_ipython")


def test_a_rich_result_loads_ipython_but_no_shell(rk):
    """A result other than a number or a string is formatted by IPython's formatter,
    which loads IPython, yet without a shell: get_ipython stays undefined."""
    assert rk.execute("[1, 2]").text == "[1, 2]"
    assert rk.execute(LOADED).text == "True"
    with pytest.raises(RemoteError, match="NameError"):
        rk.execute("get_ipython")


def test_magics_and_shell_commands(rk):
    """%timeit, %%timeit, %whos, %time, !cmd and x = !cmd run on the kernel, in its
    namespace, their output coming back as the command's stdout."""
    rk.execute("def f(x):\n    return x * 2\nlimit = 3")
    assert "per loop" in rk.execute("%timeit -n 5 -r 2 f(limit)").stdout
    assert "loops each" in rk.execute("%%timeit -n 2 -r 1\nf(limit)").stdout
    whos = rk.execute("%whos").stdout
    assert "limit      int         3" in whos and "get_ipython" not in whos
    timed = rk.execute("%time f(21)")
    assert timed.text == "42" and "Wall time" in timed.stdout
    assert rk.execute("!echo from the shell").stdout.splitlines() == ["from the shell"]
    rk.execute("words = !echo one two")
    assert list(rk["words"]) == ["one two"]
    assert rk.keys() == ["f", "limit", "_exit_code", "words"]


def test_unknown_magic_is_a_usage_error_and_the_kernel_goes_on(rk):
    """A magic that does not exist raises RemoteError('UsageError') with IPython's
    message; the kernel keeps its namespace and runs the next command."""
    rk["kept"] = 1
    with pytest.raises(RemoteError) as failed:
        rk.execute("%nosuchmagic")
    assert failed.value.ename == "UsageError"
    assert "Line magic function `%nosuchmagic` not found." in str(failed.value)
    assert rk.execute("kept + 1").text == "2"


def test_interrupt_stops_timeit(rk):
    """interrupt() stops a %timeit of an endless loop; the kernel then runs commands."""
    started = threading.Event()
    timing = rk.execute(
        "print('started', flush=True)\n%timeit -n 1000000000000 -r 1 sum(range(10))",
        block=False,
        on_output=lambda name, text: started.set(),
    )
    assert started.wait(30), "the command did not start"
    assert rk.interrupt() is True
    with pytest.raises(RemoteError) as info:
        timing.get(30)
    assert info.value.ename == "KeyboardInterrupt"
    assert rk.execute("40 + 2").text == "42"


def test_a_kernel_with_its_shell_shuts_down_cleanly(kernel, rk):
    """SIGTERM stops a kernel that made its IPython shell as it stops any other: status
    0, connection file removed, no traceback in its log (IPython's exit hook included)."""
    rk.execute("a = 1\n%who")
    kernel.process.send_signal(signal.SIGTERM)
    assert kernel.process.wait(30) == 0
    assert not kernel.connection_file.exists()
    assert "Traceback" not in kernel.log()
