"""Long-running kernels: what each command leaves behind stays bounded by the history.

The full-size figures (resident memory after 50,000 and 200,000 commands) come from
``benchmarks/soak_rss.py``; here a small history shows the same bound quickly.
"""

from __future__ import annotations

from conftest import start_kernel

from ipython_parallel_kernel import RemoteKernel

HISTORY = 5
#: About 1 KB per command, as in the soak measurement.
PADDING = "x" * 1000


def test_linecache_holds_only_the_history(ipython_dir):
    """After history_length + 50 commands, linecache holds the history's sources only."""
    kernel = start_kernel(ipython_dir, f"--KernelApp.history_length={HISTORY}")
    try:
        rk = RemoteKernel(kernel.address, timeout=60)
        pending = [rk.execute(f"n = {i}  # {PADDING}", block=False) for i in range(HISTORY + 50)]
        for command in pending:
            command.get(60)
        held = rk.execute(
            "import linecache\n"
            "sorted(int(name[11:-1]) for name in linecache.cache"
            " if name.startswith('<ipk-input-'))"
        )
        assert held.text == repr(list(range(held.number - HISTORY + 1, held.number + 1)))
        rk.disconnect()
    finally:
        kernel.stop()
