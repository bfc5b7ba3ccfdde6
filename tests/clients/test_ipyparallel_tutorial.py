"""Cells from ipyparallel's tutorial pages, run in IPython's real InteractiveShell with
only ``import ipyparallel`` changed to ``import ipython_parallel_kernel``.

The blocks are copied as the pages show them (``docs/source/tutorial/`` in the
ipython/ipyparallel repository, BSD-licensed): IPython strips the ``In [n]:`` and
``...:`` prompts itself. Where a page shows ``Out[n]:``, the cell's value must equal it.
Left out: outputs that are timings, pids or stale (``map`` compared with a list, or a
scattered ``range`` shown as lists, as Python 2 had them), cells that only sleep for
seconds, and cells that call functions a page leaves undefined (``dostuff()``). Setup
a page takes for granted (``import os``) is marked as such.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import stop_kernels_left
from IPython.core.interactiveshell import InteractiveShell

SETUP = """
In [1]: import ipython_parallel_kernel as ipp
In [2]: cluster = ipp.Cluster(n=4)
In [3]: cluster.start_cluster_sync()
In [2]: rc = cluster.connect_client_sync()
In [3]: rc.wait_for_engines(4); rc.ids
Out[3]: [0, 1, 2, 3]
In [4]: dview = rc[:] # use all engines
"""

DIRECT = """
In [62]: serial_result = list(map(lambda x:x**10, range(32)))

In [63]: parallel_result = dview.map_sync(lambda x: x**10, range(32))

In [64]: serial_result == parallel_result
Out[64]: True

In [4]: view = rc[1:3]
Out[4]: <DirectView [1, 2]>

In [2]: dview = rc[:] # A DirectView of all engines
In [3]: dview.block=True
In [4]: dview['a'] = 5

In [5]: dview['b'] = 10

In [6]: dview.apply(lambda x: a+b+x, 27)
Out[6]: [42, 42, 42, 42]

In [7]: dview.block = False

In [8]: dview.apply_sync(lambda x: a+b+x, 27)
Out[8]: [42, 42, 42, 42]

In [6]: rc[::2].execute('c = a + b')

In [7]: rc[1::2].execute('c = a - b')

In [8]: dview['c'] # shorthand for dview.pull('c', block=True)
Out[8]: [15, -5, 15, -5]

# define our function
In [6]: def wait(t):
  ....:     import time
  ....:     tic = time.time()
  ....:     time.sleep(t)
  ....:     return time.time()-tic
# In non-blocking mode
In [7]: ar = dview.apply_async(wait, 2)
# Now block for the result
In [8]: ar.get()

In [16]: dview.targets = [0, 2]
In [17]: dview.block = False
In [18]: ar = dview.apply(lambda : 10)
In [19]: ar.get()
Out[19]: [10, 10]
In [20]: dview.targets = rc.ids # all engines (4)
In [21]: dview.block = True
In [22]: dview.apply(lambda : 42)
Out[22]: [42, 42, 42, 42]

In [38]: dview.push(dict(a=1.03234, b=3453))
Out[38]: [None, None, None, None]
In [39]: dview.pull('a')
Out[39]: [ 1.03234, 1.03234, 1.03234, 1.03234]
In [40]: dview.pull('b', targets=0)
Out[40]: 3453
In [41]: dview.pull(('a', 'b'))
Out[41]: [ [1.03234, 3453], [1.03234, 3453], [1.03234, 3453], [1.03234, 3453] ]
In [42]: dview.push(dict(c='speed'))
Out[42]: [None, None, None, None]

In [48]: ar = dview.pull('a', block=False)
In [49]: ar.get()
Out[49]: [1.03234, 1.03234, 1.03234, 1.03234]

In [51]: dview['a'] = ['foo', 'bar']
In [52]: dview['a']
Out[52]: [ ['foo', 'bar'], ['foo', 'bar'], ['foo', 'bar'], ['foo', 'bar'] ]

In [58]: dview.scatter('a',range(16))
Out[58]: [None,None,None,None]
In [59]: dview['a']
# setup the page takes for granted: its gather() returns an AsyncMapResult
dview.block = False
In [60]: dview.gather('a') # This will show you the status of gather.
In [61]: dview.gather('a').get() # This will give you the result.
Out[61]: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]

In [10]: @dview.remote(block=True)
   ....: def getpid():
   ....:     import os
   ....:     return os.getpid()
   ....:
In [11]: getpid()

In [12]: import numpy as np
In [13]: A = np.random.random((64,48))
In [14]: @dview.parallel(block=True)
   ....: def pmul(A,B):
   ....:     return A*B
In [15]: C_local = A*A
In [16]: C_remote = pmul(A,A)
In [17]: (C_local == C_remote).all()
Out[17]: True

In [16]: @dview.parallel(block=True)
   ....: def echo(x):
   ....:     return str(x)
In [17]: echo(range(5))
In [18]: echo.map(range(5))
Out[18]: ['0', '1', '2', '3', '4']

dview.block = True
In [66]: dview.scatter('x',range(64))
In [67]: %px y = [i**10 for i in x]
In [68]: y = dview.gather('y')
In [69]: print(y)
"""

TASK = """
In [4]: lview = rc.load_balanced_view() # default load-balanced view

In [62]: lview.block = True
In [64]: parallel_result = lview.map(lambda x:x**10, range(32))

In [10]: @lview.parallel()
   ....: def f(x):
   ....:     return 10.0 * x ** 4
   ....:
In [11]: f.map(range(32))    # this is done in parallel

In [10]: @ipp.require('numpy', 'zmq')
   ....: def myfunc():
   ....:     return dostuff()

# setup the page takes for granted
view = rc.load_balanced_view()
def foo(a):
    return a * a
@ipp.require(foo)
def bar(b):
    return foo(b)
@ipp.require(bar)
def baz(c, d):
    return bar(c) - bar(d)
view.apply_sync(baz, 4, 5)

In [10]: def platform_specific(plat):
   ....:    import sys
   ....:    return sys.platform == plat
In [11]: @ipp.depend(platform_specific, 'darwin')
   ....: def mactask():
   ....:     do_mac_stuff()
In [12]: @ipp.depend(platform_specific, 'nt')
   ....: def wintask():
   ....:     do_windows_stuff()
"""

ASYNCRESULT = """
# setup the page takes for granted
import os
In [10]: ar = rc[:].apply_async(os.getpid)
In [11]: pids = ar.get_dict()
In [12]: rc[:]['pid_map'] = pids

speedup = ar.serial_time / ar.wall_time

# setup the page takes for granted
from functools import reduce
import numpy as np
view = rc.load_balanced_view()
In [38]: X = np.linspace(0,100)
In [39]: from math import sqrt
In [40]: add = lambda a,b: a+b
In [41]: sq = lambda x: x*x
In [42]: sqrt(reduce(add, map(sq, X)) / len(X))
Out[42]: 58.028845747399714
In [43]: sqrt(reduce(add, view.map(sq, X)) / len(X))
Out[43]: 58.028845747399714
"""

PAGES = {"direct": DIRECT, "task": TASK, "asyncresult": ASYNCRESULT}
OUTPUT = re.compile(r"^Out\[\d+\]:\s*(.*)$")
ASSIGNMENT = re.compile(r"^(?:In \[\d+\]:\s*)?(\w+)\s*=[^=]")


def cells(block: str) -> Iterator[tuple[str, str | None]]:
    """``(source, expected)`` for each cell of a block: a cell starts at ``In [n]:``
    (or a line of plain code after an output or blank line) and takes the ``...:``
    lines after it; ``expected`` is the ``Out[n]:`` that follows, if any."""
    source: list[str] = []
    for line in block.strip("\n").splitlines():
        output = OUTPUT.match(line)
        if output:
            yield "\n".join(source), output.group(1)
            source = []
        elif line.startswith("In [") or not line.strip():
            if source:
                yield "\n".join(source), None
            source = [line] if line.strip() else []
        else:
            source.append(line)
    if source:
        yield "\n".join(source), None


@pytest.fixture
def session(ipython_dir: Path) -> Iterator[InteractiveShell]:
    """A real InteractiveShell after the pages' setup cells: four kernels of an
    ``ipp.Cluster``, a Client ``rc`` and ``dview = rc[:]``; all stopped afterwards."""
    (ipython_dir / "profile_default").mkdir(parents=True, exist_ok=True)
    shell = InteractiveShell.instance()
    shell.colors = "nocolor"
    before = set(shell.user_ns)
    try:
        for source, expected in cells(SETUP):
            check(shell, source, expected)
        yield shell
    finally:
        rc = shell.user_ns.get("rc")
        pids = [kernel.info.pid for kernel in rc.kernels] if rc is not None else []
        if "cluster" in shell.user_ns:
            shell.run_cell("rc.close(); cluster.stop_cluster_sync()")
        shell.run_cell("%unload_ext ipython_parallel_kernel")
        for name in set(shell.user_ns) - before:
            shell.user_ns.pop(name, None)
        stop_kernels_left(ipython_dir)
        assert not [pid for pid in pids if psutil.pid_exists(pid)]


def check(shell: InteractiveShell, source: str, expected: str | None) -> None:
    """Run one cell; it must succeed, and its value equal the page's ``Out[n]``."""
    result = shell.run_cell(source, store_history=True)
    assert result.success, f"cell failed:\n{source}\n{result.error_in_exec!r}"
    if expected is None:
        return
    value = result.result
    assigned = ASSIGNMENT.match(source)
    if value is None and assigned:
        # A page may show the value an assignment bound (``view = rc[1:3]``, ``Out: ...``).
        value = shell.user_ns[assigned.group(1)]
    if expected.startswith("<"):
        assert repr(value) == expected, source
    else:
        assert value == ast.literal_eval(expected), source


@pytest.mark.timeout(180)
@pytest.mark.parametrize("page", list(PAGES))
def test_tutorial_page_runs_unchanged(session, page, capsys):
    """Every cell of the page runs; each ``Out[n]`` the page shows is what comes out."""
    ran = 0
    for source, expected in cells(PAGES[page]):
        check(session, source, expected)
        ran += 1
    assert ran >= 5
    if page == "direct":
        # `%px` with no %load_ext: the first Client of a session brings the magics.
        assert "y" in session.user_ns and len(session.user_ns["y"]) == 64
