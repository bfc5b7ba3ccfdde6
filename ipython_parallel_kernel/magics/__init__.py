"""IPython magics for driving kernels: ``%kernel``, ``%px``, ``%%px``, ``%autopx``, ``%pxresult``.

Load them with ``%load_ext ipython_parallel_kernel``. Settings go in an IPython
profile's ``ipython_config.py``, for example::

    c.KernelMagics.progress_after = 5.0  # seconds before %px shows a progress bar
    c.KernelMagics.stream = False  # show output when commands end, grouped

A session::

    In [1]: %load_ext ipython_parallel_kernel
    In [2]: %kernel start -n 2
    started 2 kernels: 127.0.0.1:41023, 127.0.0.1:41025 (active)
    In [3]: %px import os; print(os.getpid())
    [stdout:0] 4242
    [stdout:1] 4243
    In [4]: %px a = 5
    In [5]: %px a * 2
    Out[0:3]: 10
    Out[1:3]: 10

Kernels started by a session are stopped when it exits or the extension is unloaded.

The modules, one job each: ``kernelmagics`` (the magics class, which parses and
delegates), ``runner`` (``%px``'s wait, progress bar, Ctrl-C and display, usable
without a shell), ``started`` (clusters ``%kernel start`` makes), ``gathering``
(``%kernel gather`` and ``notify``), ``autopx`` and ``arguments`` (sub-commands for
``magic_arguments``).
"""

from __future__ import annotations

from .kernelmagics import KernelMagics, session_magics
from .runner import PxRunner

__all__ = ["KernelMagics", "PxRunner", "session_magics"]
