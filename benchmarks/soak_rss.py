"""Soak benchmark: a kernel's resident memory over many commands of about 1 KB each.

A kernel keeps ``history_length`` commands (10,000 by default); what one command
leaves behind beyond that (its source in ``linecache``, its record) must go when the
command leaves the history, so memory levels off instead of growing with every command.

What is measured: one ``ipk-kernel --port 0`` (private IPYTHONDIR), driven by
``RemoteKernel`` with pipelined non-blocking executes in windows of ``--window``
commands; each command is a distinct 1 KB statement (``n = i  # xxx...``). The
kernel's RSS is read after a warm-up of 1,000 commands and at each checkpoint.

Run it (from the repository root)::

    .venv/bin/python benchmarks/soak_rss.py                     # 50k and 200k, ~2 min
    .venv/bin/python benchmarks/soak_rss.py --checkpoints 5000,20000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import psutil
from bench_core import ipk_kernel

from ipython_parallel_kernel import RemoteKernel

WARM_UP = 1_000
COMMAND_BYTES = 1_000
MiB = 1024**2


def command(i: int) -> str:
    """The ``i``-th command: a distinct statement of ``COMMAND_BYTES`` characters."""
    head = f"n = {i}  # "
    return head + "x" * (COMMAND_BYTES - len(head))


def run(rk: RemoteKernel, start: int, stop: int, window: int) -> None:
    """Execute commands ``start`` to ``stop - 1``, ``window`` in flight at a time."""
    for first in range(start, stop, window):
        pending = [
            rk.execute(command(i), block=False) for i in range(first, min(stop, first + window))
        ]
        for result in pending:
            result.get(600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", default="50000,200000", help="command counts, rising")
    parser.add_argument("--window", type=int, default=1000, help="commands in flight at once")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    checkpoints = [int(n) for n in args.checkpoints.split(",")]
    ipython_dir = Path(tempfile.mkdtemp(prefix="ipk-soak-"))
    os.environ["IPYTHONDIR"] = str(ipython_dir)
    rows = []
    with ipk_kernel(ipython_dir, ("--log-level", "WARNING")) as kernel:
        rk = RemoteKernel(("127.0.0.1", kernel.port), timeout=600)
        process = psutil.Process(kernel.process.pid)
        started = time.monotonic()
        done = 0
        for checkpoint in [WARM_UP, *checkpoints]:
            run(rk, done, checkpoint, args.window)
            done = checkpoint
            rows.append({"commands": done, "rss_mib": process.memory_info().rss / MiB})
            print(f"RSS after {done:>7} commands: {rows[-1]['rss_mib']:7.1f} MiB", flush=True)
        seconds = time.monotonic() - started
        rk.disconnect()
    shutil.rmtree(ipython_dir, ignore_errors=True)
    print(f"{done} commands of {COMMAND_BYTES} bytes in {seconds:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "seconds": seconds}, indent=2))


if __name__ == "__main__":
    main()
