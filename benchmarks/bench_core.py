"""Core benchmark: ipk-kernel latency and bulk transfer, against the loopback limit
and against ipyparallel, measured on one machine in one run.

What is measured
----------------
1. References (the limits nothing built on TCP can beat):
   - raw-socket TCP ping-pong on 127.0.0.1: a child Python process echoes one byte,
     TCP_NODELAY on both sides; median and p99 round trip;
   - a bare Twisted echo server (a minimal ``Protocol`` in a child process, client a
     plain blocking socket): the floor for anything running on Twisted's reactor;
   - memcpy: numpy copy of 1 GiB into a pre-touched array, the floor for bulk data.
2. ipk (``ipk-kernel --port 0`` with a private IPYTHONDIR, driven by ``RemoteKernel``):
   execute round trip (median, p99; also with client and kernel pinned to one CPU and
   to two, as the ping-pong), pipelined non-blocking executes (ops/s),
   push / pull of a small value, ``apply``, push / pull of 1 MiB, 100 MiB and 1 GiB
   float64 arrays (GB/s, steady state after warm-ups, plus the cold first 1 GiB
   transfer), and the kernel's peak RSS while it receives the largest array.
   GUI kernels (``ipk-kernel --gui wx``, ``tk``, ``qt``, each toolkit that is installed;
   on the current DISPLAY, else a private Xvfb): start-up to the ready line, CPU used
   while idle, execute round trip and pipelined executes, and their ratio to the
   plain kernel.
3. cluster (8 ``ipk-kernel --port 0`` processes, all started before any is waited for,
   driven by ``InteractiveCluster``): ``execute('a=5')`` on all kernels at once for
   clusters of the first 1, 2, 4 and 8 (median round trip); a 100 MiB float64 array
   to 4 kernels, pushed by the client to each (it sends it 4 times) versus pushed to
   kernel 0 once and then ``move``d by kernel 0 to the other 3 (only the move timed),
   in ms and aggregate GB/s (bytes delivered to kernels / time); then, with those
   kernels stopped, ``ipk-cluster start -n 8`` until its ready line (verified with
   ``execute('1')`` on every kernel of its cluster file, then ``ipk-cluster stop``;
   any kernel left running is killed by pid and reported). Reported as unavailable
   if the ``ipk-cluster`` module is missing or fails.
4. ipyparallel (one engine, ``ipp.Cluster(n=1)``) doing the same things, if installed.
5. Ratios: ipk vs the loopback limit, client push to 4 kernels / move, ipyparallel / ipk.

Everything runs with a private temporary IPYTHONDIR (set here and inherited by every
child), so ~/.ipython is never read or written.

Why medians
-----------
Single timings on a shared VM are dominated by noise (scheduler hiccups, page faults,
GC). Medians of many repetitions after warm-up describe what a user sees in steady
state; p99 shows the tail. Bulk transfers are repeated fewer times because each one
moves a lot of memory; the first 1 GiB transfer is reported separately ("cold")
because this VM pays ~3x for memory a process touches for the first time.

GB/s means 1e9 bytes of payload per second (1 GiB = 1.074 GB).

Run it (from the repository root)::

    .venv/bin/python benchmarks/bench_core.py                 # full, a few minutes
    .venv/bin/python benchmarks/bench_core.py --quick         # smoke test, < 60 s
    .venv/bin/python benchmarks/bench_core.py --json out.json --skip-ipyparallel
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.util
import json
import logging
import os
import platform
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from ipython_parallel_kernel.core.connection import (
    CLUSTER_READY,
    KERNEL_READY,
    KernelReady,
    parse_cluster_ready_line,
)
from ipython_parallel_kernel.core.toolkits import TOOLKITS

# The helpers the tests use too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support import read_line

HOST = "127.0.0.1"
MiB = 1 << 20
GiB = 1 << 30
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
#: Bound on any single blocking request to a kernel or engine (a 1 GiB transfer included).
CALL_TIMEOUT = 120.0


@dataclass
class Settings:
    """How much to measure: the full run or the --quick smoke test."""

    quick: bool
    ref_round_trips: int
    round_trips: int
    warmup: int
    pipelined: int
    small_reps: int
    #: (size in bytes, warm-up transfers, measured transfers)
    sizes: list[tuple[int, int, int]]
    ipp_round_trips: int
    ipp_pipelined: int
    ipp_bulk_size: int
    ipp_bulk_warmup: int
    ipp_bulk_reps: int
    #: How many kernels ``InteractiveCluster.execute`` is timed on, one cluster each.
    cluster_sizes: list[int]
    cluster_warmup: int
    cluster_round_trips: int
    #: Array size for client push to 4 kernels versus ``move`` from one to the others.
    move_size: int
    move_warmup: int
    move_reps: int
    #: ``ipk-cluster start -n ipk_cluster_n``, timed ``ipk_cluster_runs`` times.
    ipk_cluster_n: int
    ipk_cluster_runs: int

    @classmethod
    def make(cls, quick: bool) -> Settings:
        """The counts for a full run, or the small ones for ``--quick``."""
        if quick:
            return cls(
                quick=True,
                ref_round_trips=2000,
                round_trips=200,
                warmup=50,
                pipelined=1000,
                small_reps=100,
                sizes=[(MiB, 3, 10), (100 * MiB, 1, 3)],
                ipp_round_trips=0,
                ipp_pipelined=0,
                ipp_bulk_size=0,
                ipp_bulk_warmup=0,
                ipp_bulk_reps=0,
                cluster_sizes=[1, 2, 4],
                cluster_warmup=20,
                cluster_round_trips=50,
                move_size=10 * MiB,
                move_warmup=1,
                move_reps=3,
                ipk_cluster_n=2,
                ipk_cluster_runs=1,
            )
        return cls(
            quick=False,
            ref_round_trips=5000,
            round_trips=2000,
            warmup=300,
            pipelined=10_000,
            small_reps=500,
            sizes=[(MiB, 5, 30), (100 * MiB, 2, 7), (GiB, 2, 5)],
            ipp_round_trips=300,
            ipp_pipelined=1000,
            ipp_bulk_size=GiB,
            ipp_bulk_warmup=1,
            ipp_bulk_reps=2,
            cluster_sizes=[1, 2, 4, 8],
            cluster_warmup=50,
            cluster_round_trips=500,
            move_size=100 * MiB,
            move_warmup=1,
            move_reps=5,
            ipk_cluster_n=8,
            ipk_cluster_runs=3,
        )


@dataclass
class Row:
    """One line of the results table."""

    section: str
    key: str
    measure: str
    value: float | None
    unit: str
    note: str = ""


@dataclass
class Results:
    """Everything measured in this run, keyed for the ratios and the JSON file."""

    rows: list[Row] = field(default_factory=list)
    ratios: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(
        self, section: str, key: str, measure: str, value: float | None, unit: str, note: str = ""
    ) -> None:
        """Record one measurement (and echo it, so a long run shows progress)."""
        self.rows.append(Row(section, key, measure, value, unit, note))
        shown = "n/a" if value is None else format_value(value)
        print(f"  {measure}: {shown} {unit}  {note}", flush=True)

    def get(self, key: str) -> float | None:
        """The value recorded under ``key``, or None if it was not measured."""
        for row in self.rows:
            if row.key == key:
                return row.value
        return None


# -- small helpers -------------------------------------------------------------------


def median_us(samples: list[float]) -> float:
    """Median of durations in seconds, in microseconds."""
    return statistics.median(samples) * 1e6


def p99_us(samples: list[float]) -> float:
    """99th percentile of durations in seconds, in microseconds."""
    return float(np.percentile(samples, 99)) * 1e6


def gbps(nbytes: int, seconds: float) -> float:
    """Throughput in GB/s (1e9 bytes per second)."""
    return nbytes / seconds / 1e9


def format_value(value: float) -> str:
    """A number with as many digits as are meaningful."""
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def size_label(nbytes: int) -> str:
    """``1 MiB``, ``100 MiB``, ``1 GiB``."""
    return f"{nbytes // GiB} GiB" if nbytes >= GiB else f"{nbytes // MiB} MiB"


def size_key(nbytes: int) -> str:
    """A size as it appears in result keys: ``"100MiB"``."""
    return size_label(nbytes).replace(" ", "")


def timed(func: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``func`` once; returns (seconds, its value)."""
    start = time.perf_counter()
    value = func()
    return time.perf_counter() - start, value


def stop_process(process: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> int | None:
    """Stop a child we started, by pid: SIGTERM, bounded wait, then SIGKILL."""
    stop_processes([process], timeout)
    return process.returncode


def stop_processes(processes: list[subprocess.Popen], timeout: float = STOP_TIMEOUT) -> None:
    """Stop several children at once, by pid: SIGTERM to all, one bounded wait shared
    by all, then SIGKILL to any still running.
    """
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def kill_pids(pids: set[int], grace: float = 5.0, timeout: float = STOP_TIMEOUT) -> list[str]:
    """SIGTERM, then SIGKILL, the processes in ``pids`` still running after ``grace``
    seconds; returns ``"pid command"`` for each, so a leftover can be identified.
    """
    running = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            running.append(psutil.Process(pid))
    # A process that was told to stop may still be exiting: that is not a leftover.
    _, running = psutil.wait_procs(running, timeout=grace)
    alive = []
    described = []
    for process in running:
        with contextlib.suppress(psutil.Error):
            if process.status() != psutil.STATUS_ZOMBIE:
                described.append(f"{process.pid} {' '.join(process.cmdline())[:120]}")
                alive.append(process)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, still = psutil.wait_procs(alive, timeout=timeout)
    for process in still:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(still, timeout=timeout)
    return described


def drain(stream: Any, keep: collections.deque) -> None:
    """Read a child's pipe until EOF, keeping the last lines: an undrained pipe would
    block the child once its buffer fills.
    """
    with contextlib.suppress(OSError, ValueError):
        for line in stream:
            keep.append(line.rstrip())


@contextlib.contextmanager
def child_python(code: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Run ``python -c code`` as a child; always stopped by pid on exit."""
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    try:
        yield process
    finally:
        stop_process(process)


def ping_pong(port: int, count: int, warmup: int) -> list[float]:
    """Round trips of one byte to an echo server on ``port``; returns seconds each."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        samples = []
        clock = time.perf_counter
        for i in range(warmup + count):
            start = clock()
            sock.sendall(b"x")
            if sock.recv(1) != b"x":
                raise RuntimeError("echo server closed the connection")
            if i >= warmup:
                samples.append(clock() - start)
    return samples


# -- 1. references ---------------------------------------------------------------------

RAW_ECHO = """
import os, socket
if os.environ.get("BENCH_CPU"):
    os.sched_setaffinity(0, {int(os.environ["BENCH_CPU"])})
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
print("port", server.getsockname()[1], flush=True)
server.settimeout(60)  # never wait forever for the benchmark to connect
conn, _ = server.accept()
conn.settimeout(60)
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while True:
    byte = conn.recv(1)
    if not byte:
        break
    conn.sendall(byte)
"""

TWISTED_ECHO = """
import os
if os.environ.get("BENCH_CPU"):
    os.sched_setaffinity(0, {int(os.environ["BENCH_CPU"])})
from twisted.internet import protocol, reactor

class Echo(protocol.Protocol):
    def connectionMade(self):
        self.transport.setTcpNoDelay(True)

    def dataReceived(self, data):
        self.transport.write(data)

# The benchmark stops this process with SIGTERM, which stops the reactor.

port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")
print("port", port.getHost().port, flush=True)
reactor.run()
"""


@contextlib.contextmanager
def pinned(cpu: int | None) -> Iterator[None]:
    """Run this thread on ``cpu`` for the duration (None: leave placement to the OS)."""
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# Waking a process on another CPU costs far more than a switch on the same CPU on this
# kind of VM (an inter-processor interrupt), so each reference is measured both ways.
PLACEMENTS = {"same CPU": (0, 0), "across CPUs": (0, 1), "unpinned": (None, None)}


def echo_round_trips(code: str, settings: Settings, placement: str) -> list[float]:
    """Ping-pong against the echo server ``code`` with the given CPU placement."""
    ours, theirs = PLACEMENTS[placement]
    if theirs is not None and theirs >= (os.cpu_count() or 1):
        ours = theirs = None
    env = {**os.environ, "BENCH_CPU": "" if theirs is None else str(theirs)}
    with child_python(code, env) as process:
        port = int(read_line(process, "port", START_TIMEOUT).split()[1])
        with pinned(ours):
            return ping_pong(port, settings.ref_round_trips, warmup=500)


def bench_echo(
    results: Results, settings: Settings, code: str, name: str, label: str, placements: list[str]
) -> None:
    """Median round trips against the echo server ``code``, one row per placement."""
    for placement in placements:
        samples = echo_round_trips(code, settings, placement)
        key = f"{name}_rtt_{placement.replace(' ', '_')}"
        note = f"median of {len(samples)}, TCP_NODELAY"
        results.add("reference", key, f"{label}, {placement}", median_us(samples), "us", note)


def bench_raw_ping_pong(results: Results, settings: Settings) -> None:
    """Raw-socket TCP ping-pong with a child echoing one byte: the loopback limit."""
    bench_echo(results, settings, RAW_ECHO, "raw", "raw TCP ping-pong", list(PLACEMENTS))


def bench_twisted_echo(results: Results, settings: Settings) -> None:
    """A bare Twisted echo Protocol in a child, blocking-socket client: Twisted's floor."""
    placements = ["same CPU", "across CPUs"]
    bench_echo(results, settings, TWISTED_ECHO, "twisted", "Twisted echo", placements)


def bench_memcpy(results: Results, settings: Settings) -> None:
    """numpy copy of 1 GiB into a pre-touched array: the floor for bulk data."""
    source = np.ones(GiB // 8)
    # Both arrays are written once first, so page faults are not part of the figure.
    target = np.ones_like(source)
    samples = []
    for _ in range(5):
        seconds, _ = timed(lambda: np.copyto(target, source))
        samples.append(seconds)
    rate = gbps(GiB, statistics.median(samples))
    results.add("reference", "memcpy_gbps", "memcpy 1 GiB (numpy)", rate, "GB/s", "median of 5")


# -- 2. ipk -----------------------------------------------------------------------------


@dataclass
class Kernel:
    """A running ipk-kernel child and where to reach it."""

    process: subprocess.Popen
    port: int
    stderr_path: Path
    stdout_tail: collections.deque
    connection_file: str = ""


def spawn_kernel(
    ipython_dir: Path, name: str = "kernel", args: tuple[str, ...] = ()
) -> tuple[subprocess.Popen, Path]:
    """Start ``ipk-kernel --port 0 ARGS`` with a private IPYTHONDIR, without waiting for
    it; its stderr goes to ``<ipython_dir>/<name>.stderr``.
    """
    env = dict(os.environ, IPYTHONDIR=str(ipython_dir), PYTHONUNBUFFERED="1")
    stderr_path = ipython_dir / f"{name}.stderr"
    command = [sys.executable, "-m", "ipython_parallel_kernel.apps.kernel", "--port", "0", *args]
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
        )
    return process, stderr_path


def await_kernel(process: subprocess.Popen, stderr_path: Path, timeout: float) -> Kernel:
    """Wait at most ``timeout`` seconds for a spawned kernel's ready line."""
    try:
        ready = KernelReady.parse(read_line(process, KERNEL_READY, timeout))
    except RuntimeError as e:
        tail = stderr_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{e}\nkernel stderr:\n{tail}") from None
    port = int(ready.address.rpartition(":")[2])
    connection_file = ready.connection_file
    tail: collections.deque = collections.deque(maxlen=50)
    threading.Thread(target=drain, args=(process.stdout, tail), daemon=True).start()
    return Kernel(process, port, stderr_path, tail, connection_file)


@contextlib.contextmanager
def ipk_kernel(ipython_dir: Path, args: tuple[str, ...] = ()) -> Iterator[Kernel]:
    """Start ``ipk-kernel --port 0 ARGS`` with a private IPYTHONDIR; stopped by pid on exit."""
    process, stderr_path = spawn_kernel(ipython_dir, args=args)
    try:
        yield await_kernel(process, stderr_path, START_TIMEOUT)
    finally:
        stop_process(process)


@contextlib.contextmanager
def ipk_kernels(ipython_dir: Path, count: int) -> Iterator[list[Kernel]]:
    """Start ``count`` kernels at once (all spawned before any is waited for), then
    wait for every ready line within one shared deadline; all stopped by pid on exit.
    """
    processes: list[subprocess.Popen] = []
    try:
        spawned = []
        for i in range(count):
            process, stderr_path = spawn_kernel(ipython_dir, f"kernel-{i}")
            processes.append(process)
            spawned.append((process, stderr_path))
        deadline = time.monotonic() + START_TIMEOUT
        kernels = [
            await_kernel(process, path, max(0.1, deadline - time.monotonic()))
            for process, path in spawned
        ]
        yield kernels
    finally:
        stop_processes(processes)


def execute_round_trips(settings: Settings, rk: Any) -> list[float]:
    """Durations of blocking ``execute('a=5')`` calls, after warm-up."""
    for _ in range(settings.warmup):
        rk.execute("a=5")
    samples = []
    clock = time.perf_counter
    for _ in range(settings.round_trips):
        start = clock()
        rk.execute("a=5")
        samples.append(clock() - start)
    return samples


def bench_ipk_execute(
    results: Results, settings: Settings, rk: Any, section: str = "ipk", label: str = "ipk"
) -> None:
    """Blocking ``execute('a=5')`` round trips after warm-up: median and p99."""
    samples = execute_round_trips(settings, rk)
    note = f"median of {len(samples)} after {settings.warmup} warm-up"
    median, p99 = median_us(samples), p99_us(samples)
    measure = f"{label} execute round trip"
    results.add(section, f"{section}_exec_median", measure, median, "us", note)
    results.add(section, f"{section}_exec_p99", f"{measure} p99", p99, "us")


@contextlib.contextmanager
def pinned_process(pid: int, cpu: int | None) -> Iterator[None]:
    """Run every thread of process ``pid`` on ``cpu`` for the duration (None: as it is)."""
    if cpu is None:
        yield
        return
    threads = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    before = {tid: os.sched_getaffinity(tid) for tid in threads}
    for tid in threads:
        os.sched_setaffinity(tid, {cpu})
    try:
        yield
    finally:
        for tid, cpus in before.items():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, cpus)


def bench_ipk_placements(results: Results, settings: Settings, rk: Any, kernel_pid: int) -> None:
    """Execute round trips with client and kernel pinned as the raw ping-pong was, so
    each ratio compares like with like: on this kind of VM a wake-up on the other CPU
    costs far more after a few hundred microseconds idle than right after the last."""
    for placement in ("same CPU", "across CPUs"):
        ours, theirs = PLACEMENTS[placement]
        if max(ours or 0, theirs or 0) >= (os.cpu_count() or 1):
            continue
        with pinned_process(os.getpid(), ours), pinned_process(kernel_pid, theirs):
            samples = execute_round_trips(settings, rk)
        key = f"ipk_exec_{placement.replace(' ', '_')}"
        note = f"client and kernel pinned; median of {len(samples)}"
        results.add(
            "ipk", key, f"ipk execute round trip, {placement}", median_us(samples), "us", note
        )


def bench_ipk_pipelined(
    results: Results, settings: Settings, rk: Any, section: str = "ipk", label: str = "ipk"
) -> None:
    """``execute(block=False)`` N times, then ``get()`` all: requests per second."""
    count = settings.pipelined
    start = time.perf_counter()
    pending = [rk.execute("a=5", block=False) for _ in range(count)]
    for result in pending:
        result.get(CALL_TIMEOUT)
    rate = count / (time.perf_counter() - start)
    measure = f"{label} pipelined execute x{count}"
    results.add(section, f"{section}_pipelined", measure, rate, "ops/s")


def median_call_us(func: Callable[[], Any], reps: int) -> float:
    """Median duration of ``func()`` in microseconds, after a tenth as many warm-ups."""
    for _ in range(max(10, reps // 10)):
        func()
    samples = []
    for _ in range(reps):
        seconds, _ = timed(func)
        samples.append(seconds)
    return median_us(samples)


def bench_ipk_small(results: Results, settings: Settings, rk: Any) -> None:
    """push / pull of a small value and ``apply(lambda)``: medians."""
    reps = settings.small_reps
    note = f"median of {reps}"
    push = median_call_us(lambda: rk.push(1, "s"), reps)
    results.add("ipk", "ipk_push_small", "ipk push(1, 's')", push, "us", note)
    pull = median_call_us(lambda: rk.pull("s"), reps)
    results.add("ipk", "ipk_pull_small", "ipk pull('s')", pull, "us", note)
    apply = median_call_us(lambda: rk.apply(lambda x: x + 1, 1), reps)
    results.add("ipk", "ipk_apply", "ipk apply(lambda x: x + 1, 1)", apply, "us", note)


def bench_ipk_bulk(results: Results, size: int, warmup: int, reps: int, rk: Any) -> None:
    """Push (``rk['x'] = arr``) and pull (``rk['x']``) of a float64 array of ``size``
    bytes: median GB/s over ``reps`` after ``warmup`` transfers; for 1 GiB the first
    (cold) transfer is recorded too.
    """
    array = np.ones(size // 8)
    pushes, pulls = [], []
    # Pushes, then pulls, each repeated back to back: the steady state of a loop that
    # moves data one way. Interleaving them makes each side reallocate memory it has
    # just freed, which this VM returns to its host and then faults back in slowly.
    for i in range(warmup + reps):
        # Each push lands in a kernel with room for it: replacing a live array needs
        # twice its memory at once, which measures the VM's memory, not the transfer.
        rk.execute("x = None")
        push_s, _ = timed(lambda: rk.__setitem__("x", array))
        if i == 0 and size >= GiB:
            note = "first transfer, memory touched for the first time"
            label = f"ipk push {size_label(size)} cold"
            results.add("ipk", "ipk_push_cold", label, gbps(size, push_s), "GB/s", note)
        if i >= warmup:
            pushes.append(push_s)
    for i in range(warmup + reps):
        pull_s, pulled = timed(lambda: rk["x"])
        if pulled.shape != array.shape or pulled[-1] != 1.0:
            raise RuntimeError(f"pulled array differs: {pulled.shape} {pulled[-1]}")
        # Free the pulled copy at once: several GiB alive at a time would distort
        # the next transfer (and the kernel's RSS figures later).
        del pulled
        if i == 0 and size >= GiB:
            note = "first transfer, memory touched for the first time"
            label = f"ipk pull {size_label(size)} cold"
            results.add("ipk", "ipk_pull_cold", label, gbps(size, pull_s), "GB/s", note)
        if i >= warmup:
            pulls.append(pull_s)
    label = size_label(size)
    note = f"median of {reps} after {warmup} warm-up"
    push_rate = gbps(size, statistics.median(pushes))
    pull_rate = gbps(size, statistics.median(pulls))
    key = size_key(size)
    results.add("ipk", f"ipk_push_{key}", f"ipk push {label}", push_rate, "GB/s", note)
    results.add("ipk", f"ipk_pull_{key}", f"ipk pull {label}", pull_rate, "GB/s", note)


def bench_ipk_rss(results: Results, size: int, rk: Any, pid: int) -> None:
    """The kernel's RSS before and at its peak while it receives one push of ``size``
    bytes, sampled every 5 ms in a background thread.
    """
    rk.execute("import gc; x = None; del x; gc.collect()")
    process = psutil.Process(pid)
    array = np.ones(size // 8)
    # Let the kernel settle after the gc before taking the baseline.
    time.sleep(0.2)
    baseline = process.memory_info().rss
    peak = baseline
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            with contextlib.suppress(psutil.Error):
                peak = max(peak, process.memory_info().rss)
            stop.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        rk["x"] = array
        # One more sample after the reply: the peak may be at the very end.
        time.sleep(0.05)
    finally:
        stop.set()
        sampler.join(5)
    after = process.memory_info().rss
    del array
    label = size_label(size)
    growth = (peak - baseline) / GiB
    target = f"target <= {1.2 * size / GiB:.2g} GiB"
    results.add("ipk", "ipk_rss_base", f"kernel RSS before {label} push", baseline / GiB, "GiB")
    results.add(
        "ipk", "ipk_rss_peak", "kernel RSS peak during push", peak / GiB, "GiB", "5 ms samples"
    )
    results.add("ipk", "ipk_rss_after", "kernel RSS after push", after / GiB, "GiB")
    results.add("ipk", "ipk_rss_growth", f"kernel RSS growth ({label} push)", growth, "GiB", target)
    rk.execute("del x")


def bench_ipk(results: Results, settings: Settings, scratch: Path) -> None:
    """Start a kernel, connect a RemoteKernel and run every ipk measurement."""
    from ipython_parallel_kernel import RemoteKernel

    ipython_dir = scratch / "ipk-ipython"
    ipython_dir.mkdir()
    # RemoteKernel finds the kernel's key in the connection file under IPYTHONDIR.
    os.environ["IPYTHONDIR"] = str(ipython_dir)
    with ipk_kernel(ipython_dir) as kernel:
        rk = RemoteKernel((HOST, kernel.port), timeout=CALL_TIMEOUT)
        try:
            bench_ipk_execute(results, settings, rk)
            bench_ipk_placements(results, settings, rk, kernel.process.pid)
            bench_ipk_pipelined(results, settings, rk)
            bench_ipk_small(results, settings, rk)
            for size, warmup, reps in settings.sizes:
                bench_ipk_bulk(results, size, warmup, reps, rk)
            bench_ipk_rss(results, max(s for s, _, _ in settings.sizes), rk, kernel.process.pid)
        finally:
            rk.disconnect()


# -- GUI kernels ----------------------------------------------------------------------


@contextlib.contextmanager
def screen() -> Iterator[str | None]:
    """The DISPLAY to use: the current one, else a private Xvfb (stopped by pid), else None."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        yield None
        return
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        [xvfb, "-displayfd", str(write_end), "-noreset", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        with selectors.DefaultSelector() as selector, os.fdopen(read_end) as pipe:
            selector.register(pipe, selectors.EVENT_READ)
            if not selector.select(timeout=20):
                raise RuntimeError("Xvfb did not report its display within 20 s")
            os.environ["DISPLAY"] = f":{pipe.readline().strip()}"
        yield os.environ["DISPLAY"]
    finally:
        os.environ.pop("DISPLAY", None)
        stop_process(process)


def bench_gui(results: Results, settings: Settings, scratch: Path) -> None:
    """Each installed toolkit's kernel (``--gui T``): start-up to the ready line, execute
    round trip and pipelined executes, as for the plain kernel above."""
    from ipython_parallel_kernel import RemoteKernel

    ipython_dir = scratch / "gui-ipython"
    ipython_dir.mkdir()
    os.environ["IPYTHONDIR"] = str(ipython_dir)
    with screen() as display:
        # Checked here: the kernel shares this interpreter.
        for toolkit, info in TOOLKITS.items():
            section, label = f"gui_{toolkit}", f"--gui {toolkit}"
            missing = not info.installed()
            if missing or display is None:
                reason = f"{info.needs} not installed" if missing else "no screen and no Xvfb"
                results.problems.append(f"{label} unavailable: {reason}")
                results.add(section, f"{section}_unavailable", label, None, "", reason)
                continue
            started = time.perf_counter()
            with ipk_kernel(ipython_dir, ("--gui", toolkit)) as kernel:
                startup = time.perf_counter() - started
                results.add(section, f"{section}_start", f"{label} start to ready", startup, "s")
                idle = psutil.Process(kernel.process.pid)
                idle.cpu_percent()
                time.sleep(2)
                cpu = idle.cpu_percent()
                key = f"{section}_idle_cpu"
                results.add(section, key, f"{label} idle CPU", cpu, "%", "over 2 s")
                rk = RemoteKernel(kernel.connection_file, timeout=CALL_TIMEOUT)
                try:
                    bench_ipk_execute(results, settings, rk, section, label)
                    bench_ipk_pipelined(results, settings, rk, section, label)
                finally:
                    rk.disconnect()


# -- 3. cluster -------------------------------------------------------------------------

CLUSTER_APP = "ipython_parallel_kernel.apps.cluster"
#: Kernels the push / move comparison runs on.
MOVE_KERNELS = 4


def bench_cluster_execute(results: Results, settings: Settings, files: list[str]) -> None:
    """Blocking ``ic.execute('a=5')`` on every kernel of a cluster of ``len(files)``."""
    from ipython_parallel_kernel import InteractiveCluster

    count = len(files)
    ic = InteractiveCluster(files, timeout=CALL_TIMEOUT)
    try:
        for _ in range(settings.cluster_warmup):
            ic.execute("a=5")
        samples = []
        clock = time.perf_counter
        for _ in range(settings.cluster_round_trips):
            start = clock()
            replies = ic.execute("a=5")
            samples.append(clock() - start)
        if len(replies) != count:
            raise RuntimeError(f"execute on {count} kernels returned {len(replies)} replies")
    finally:
        ic.disconnect()
    note = f"median of {len(samples)} after {settings.cluster_warmup} warm-up"
    if count == 8:
        note += "; target <= 2 ms; ipyparallel 9.2: 18 ms here"
    label = f"cluster execute on {count} kernel{'s' if count > 1 else ''}"
    results.add("cluster", f"cluster_exec_{count}", label, median_us(samples), "us", note)


def bench_cluster_move(results: Results, settings: Settings, files: list[str]) -> None:
    """A float64 array to every kernel: pushed by the client to each (it sends it
    ``len(files)`` times) versus pushed once to kernel 0, which then ``move``s it to
    the others itself (only the move is timed). Medians, ms and aggregate GB/s.
    """
    from ipython_parallel_kernel import InteractiveCluster

    size, warmup, reps = settings.move_size, settings.move_warmup, settings.move_reps
    count = len(files)
    array = np.ones(size // 8)
    # Cheap proof that every kernel holds the whole array, without pulling it back.
    check = f"assert x.shape == ({size // 8},) and x[-1] == 1.0"
    ic = InteractiveCluster(files, timeout=CALL_TIMEOUT)
    try:
        pushes = []
        for i in range(warmup + reps):
            # Free the previous copy first, as for the single-kernel pushes.
            ic.execute("x = None")
            seconds, _ = timed(lambda: ic.push(array, "x"))
            if i >= warmup:
                pushes.append(seconds)
        ic.execute(check)
        ic.execute("x = None")
        ic[0]["x"] = array
        moves = []
        for i in range(warmup + reps):
            ic.execute("x = None", targets="1:")
            seconds, received = timed(lambda: ic.move("x", 0))
            if len(received) != count - 1:
                raise RuntimeError(f"move reached {len(received)} of {count - 1} kernels")
            if i >= warmup:
                moves.append(seconds)
        ic.execute(check)
        ic.execute("x = None")
    finally:
        ic.disconnect()
    label = size_label(size)
    note = f"median of {reps} after {warmup} warm-up"
    push_s, move_s = statistics.median(pushes), statistics.median(moves)
    results.add(
        "cluster",
        "cluster_push_all_ms",
        f"client push {label} to {count} kernels",
        push_s * 1e3,
        "ms",
        f"ic{count}.push(arr, 'x'): client sends it {count}x; {note}",
    )
    results.add(
        "cluster",
        "cluster_push_all_gbps",
        f"client push {label} to {count}, aggregate",
        gbps(count * size, push_s),
        "GB/s",
        f"{count} x {label} delivered / time",
    )
    results.add(
        "cluster",
        "cluster_move_ms",
        f"move {label} kernel 0 -> {count - 1} others",
        move_s * 1e3,
        "ms",
        f"ic{count}.move('x', 0): kernel 0 sends it itself; {note}",
    )
    results.add(
        "cluster",
        "cluster_move_gbps",
        f"move {label} to {count - 1}, aggregate",
        gbps((count - 1) * size, move_s),
        "GB/s",
        f"{count - 1} x {label} delivered / time",
    )


def running_with(marker: str, pids: Iterable[int] | None = None) -> set[int]:
    """Those of ``pids`` (default: every process) that are running, not zombies, with
    ``marker`` in their command line: a check that a pid is still the process we mean.
    """
    if pids is None:
        processes: Iterable[psutil.Process] = psutil.process_iter()
    else:
        processes = []
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                processes.append(psutil.Process(pid))
    found = set()
    for process in processes:
        with contextlib.suppress(psutil.Error):
            if process.status() != psutil.STATUS_ZOMBIE and marker in " ".join(process.cmdline()):
                found.add(process.pid)
    return found


def ipk_cluster_run(
    n: int, ipython_dir: Path, cluster_id: str, problems: list[str], launcher: str = "local"
) -> tuple[float, float, int]:
    """One ``ipk-cluster start -n n --launcher launcher``, checked with ``execute('1')``
    on every kernel, then ``ipk-cluster stop``; returns (seconds to the ready line,
    seconds ``stop`` took, kernels killed by pid after ``stop``). Whatever happens, no
    kernel of the cluster is left running: leftovers are killed by pid and listed in
    ``problems``.
    """
    from ipython_parallel_kernel import InteractiveCluster

    env = dict(os.environ, IPYTHONDIR=str(ipython_dir), PYTHONUNBUFFERED="1")
    app = [sys.executable, "-m", CLUSTER_APP]
    security = ipython_dir / "profile_default" / "security"
    default_path = security / f"ipk-cluster-{cluster_id}.json"
    # Each kernel's command line names its connection file, which starts with this
    # path under our private IPYTHONDIR: only this run's kernels can match it.
    marker = f"ipk-cluster-{cluster_id}-kernel-"
    stderr_path = ipython_dir / f"{cluster_id}.stderr"

    def stop() -> subprocess.CompletedProcess:
        command = [*app, "stop", "--cluster-id", cluster_id]
        return subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )

    pids: set[int] = set()
    stopped = False
    with open(stderr_path, "w") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(
            [*app, "start", "-n", str(n), "--cluster-id", cluster_id, "--launcher", launcher],
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
        )
    try:
        try:
            line = read_line(process, CLUSTER_READY, START_TIMEOUT)
        except RuntimeError:
            lines = stderr_path.read_text(errors="replace").strip().splitlines()
            status = process.poll()
            what = f"exited ({status})" if status is not None else f"ran {START_TIMEOUT:.0f} s"
            last = lines[-1] if lines else ""
            raise RuntimeError(f"start {what} without a ready line; stderr: {last}") from None
        start_s = time.perf_counter() - started
        path = Path(parse_cluster_ready_line(line) or default_path)
        pids = {entry["pid"] for entry in json.loads(path.read_text()) if entry.get("pid")}
        ic = InteractiveCluster.from_file(path, timeout=CALL_TIMEOUT)
        try:
            replies = ic.execute("1")
        finally:
            ic.disconnect()
        if len(replies) != n or len(pids) != n:
            raise RuntimeError(f"{len(replies)} replies, {len(pids)} pids from {n} kernels")
        # ``start`` exits by itself once it has printed the ready line.
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT)
        stop_s, done = timed(stop)
        stopped = True
        if done.returncode != 0:
            raise RuntimeError(f"ipk-cluster stop exited {done.returncode}: {done.stderr[-500:]}")
    finally:
        stop_process(process)
        if not stopped:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                stop()
        # A kernel that survived ``stop``: one the cluster file lists, or one that
        # ``start`` began without ever writing the file. A pid counts only while its
        # command line still names this cluster's kernel (pids are reused).
        listed = running_with(marker, pids)
        unlisted = running_with(str(security / marker)) - listed
        leftovers = kill_pids(listed | unlisted, grace=1.0)
        if leftovers:
            problems.append(
                f"ipk-cluster {cluster_id}: kernels left running, killed by pid: {leftovers}"
                + (f" ({sorted(unlisted)} not in the cluster file)" if unlisted else "")
            )
    return start_s, stop_s, len(leftovers)


def bench_ipk_cluster_app(results: Results, settings: Settings, ipython_dir: Path) -> None:
    """``ipk-cluster start -n N`` until its ready line, verified and stopped each time:
    median of the runs; reported as unavailable, not raised, if it is missing or fails.
    """
    n = settings.ipk_cluster_n
    label = f"ipk-cluster start -n {n}"
    if importlib.util.find_spec(CLUSTER_APP) is None:
        reason = f"unavailable: module {CLUSTER_APP} not found"
        results.problems.append(f"ipk-cluster {reason}")
        results.add("cluster", "ipk_cluster_unavailable", label, None, "", reason)
        return
    starts, stops, leftovers = [], [], 0
    try:
        for run in range(settings.ipk_cluster_runs):
            cluster_id = f"bench-{os.getpid()}-{run}"
            start_s, stop_s, left = ipk_cluster_run(n, ipython_dir, cluster_id, results.problems)
            starts.append(start_s)
            stops.append(stop_s)
            leftovers += left
    except Exception as e:
        reason = f"{type(e).__name__}: {e}"
        results.problems.append(f"ipk-cluster failed: {reason}")
        results.add(
            "cluster", "ipk_cluster_unavailable", label, None, "", f"unavailable: {reason}"[:160]
        )
        return
    runs = f"median of {len(starts)}" if len(starts) > 1 else "single run"
    note = f"to its ready line, {runs}; target <= 1.5 s; ipyparallel: 6.6 s (3.1 s tuned)"
    results.add("cluster", "ipk_cluster_start", label, statistics.median(starts), "s", note)
    results.add(
        "cluster",
        "ipk_cluster_stop",
        f"ipk-cluster stop ({n} kernels)",
        statistics.median(stops),
        "s",
        f"{runs}; kernels left after stop: {leftovers}",
    )


def bench_cluster(results: Results, settings: Settings, scratch: Path) -> None:
    """Start the kernels of the largest cluster at once, time ``execute`` on clusters
    of the first N of them and push versus move on the first 4; then, with those
    stopped, time ``ipk-cluster start``.
    """
    ipython_dir = scratch / "cluster-ipython"
    ipython_dir.mkdir()
    os.environ["IPYTHONDIR"] = str(ipython_dir)
    count = max(*settings.cluster_sizes, MOVE_KERNELS)
    with ipk_kernels(ipython_dir, count) as kernels:
        files = [kernel.connection_file for kernel in kernels]
        for n in settings.cluster_sizes:
            bench_cluster_execute(results, settings, files[:n])
        bench_cluster_move(results, settings, files[:MOVE_KERNELS])
    bench_ipk_cluster_app(results, settings, ipython_dir)


# -- 4. ipyparallel --------------------------------------------------------------------


def descendants() -> set[int]:
    """Pids of every process below this one."""
    return {p.pid for p in psutil.Process().children(recursive=True)}


def run_bounded(func: Callable[[], Any], timeout: float, what: str) -> Any:
    """``func()`` in a daemon thread, waited for at most ``timeout`` seconds."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = func()
        except BaseException as e:
            outcome["error"] = e

    thread = threading.Thread(target=target, daemon=True, name=what)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"{what} did not finish within {timeout:.0f} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def bench_ipp_measure(results: Results, settings: Settings, view: Any) -> None:
    """The ipk measurements that ipyparallel has an equivalent for, on one engine."""
    # block=False + get(timeout) is what block=True does, with a bound on the wait.
    for _ in range(30):
        view.execute("a=5", block=False).get(timeout=CALL_TIMEOUT)
    samples = []
    for _ in range(settings.ipp_round_trips):
        seconds, _ = timed(lambda: view.execute("a=5", block=False).get(timeout=CALL_TIMEOUT))
        samples.append(seconds)
    note = f"median of {len(samples)} after 30 warm-up"
    results.add("ipp", "ipp_exec_median", "ipp execute round trip", median_us(samples), "us", note)
    results.add("ipp", "ipp_exec_p99", "ipp execute round trip p99", p99_us(samples), "us")

    count = settings.ipp_pipelined
    start = time.perf_counter()
    pending = [view.execute("a=5", block=False) for _ in range(count)]
    for result in pending:
        result.get(timeout=CALL_TIMEOUT)
    rate = count / (time.perf_counter() - start)
    results.add("ipp", "ipp_pipelined", f"ipp pipelined execute x{count}", rate, "ops/s")

    size = settings.ipp_bulk_size
    array = np.ones(size // 8)
    pushes, pulls = [], []
    for i in range(settings.ipp_bulk_warmup + settings.ipp_bulk_reps):
        push_s, _ = timed(lambda: view.push({"x": array}, block=False).get(timeout=CALL_TIMEOUT))
        pull_s, pulled = timed(lambda: view.pull("x", block=False).get(timeout=CALL_TIMEOUT))
        # A DirectView over all engines returns one value per engine.
        value = pulled[0] if isinstance(pulled, list) else pulled
        if value.shape != array.shape:
            raise RuntimeError(f"ipyparallel pulled shape {value.shape}")
        del pulled, value
        if i >= settings.ipp_bulk_warmup:
            pushes.append(push_s)
            pulls.append(pull_s)
    label = size_label(size)
    note = f"median of {len(pushes)} after {settings.ipp_bulk_warmup} warm-up"
    push_rate = gbps(size, statistics.median(pushes))
    pull_rate = gbps(size, statistics.median(pulls))
    results.add("ipp", "ipp_push_bulk", f"ipp push {label}", push_rate, "GB/s", note)
    results.add("ipp", "ipp_pull_bulk", f"ipp pull {label}", pull_rate, "GB/s", note)


def bench_ipyparallel(results: Results, settings: Settings, scratch: Path) -> None:
    """One ipyparallel engine (``ipp.Cluster(n=1)``), measured like ipk; reported as
    unavailable, not raised, if it cannot be imported or started within 60 s.
    Every controller / engine process is killed by pid afterwards if still alive.
    """
    try:
        import ipyparallel as ipp
    except ImportError as e:
        unavailable(results, f"not importable: {e}")
        return
    profile_dir = scratch / "ipp-profile"
    profile_dir.mkdir()
    before = descendants()
    seen: set[int] = set()
    cluster = client = None

    def start() -> Any:
        nonlocal cluster
        cluster = ipp.Cluster(
            n=1,
            profile_dir=str(profile_dir),
            controller_ip=HOST,
            log_level=logging.WARNING,
            # Our finally block stops it; an atexit hook would run after we are done.
            shutdown_atexit=False,
        )
        return cluster.start_and_connect_sync(activate=False)

    try:
        try:
            started = time.perf_counter()
            client = run_bounded(start, START_TIMEOUT, "starting ipyparallel")
            startup = time.perf_counter() - started
        except Exception as e:
            unavailable(results, f"did not start: {type(e).__name__}: {e}")
            return
        finally:
            seen |= descendants() - before
        results.add(
            "ipp", "ipp_startup", "ipp cluster start (1 engine)", startup, "s", "single run"
        )
        try:
            bench_ipp_measure(results, settings, client[:])
        except Exception as e:
            # A failure inside ipyparallel is a finding to report, not a reason to
            # lose the figures measured so far.
            results.problems.append(f"ipyparallel measurement failed: {type(e).__name__}: {e}")
    finally:
        seen |= descendants() - before
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        if cluster is not None:
            try:
                run_bounded(cluster.stop_cluster_sync, 30, "stopping ipyparallel")
            except Exception as e:
                results.problems.append(f"ipyparallel stop_cluster failed: {e}")
        leftovers = kill_pids(seen | (descendants() - before))
        if leftovers:
            results.problems.append(f"killed ipyparallel leftovers by pid: {leftovers}")


def unavailable(results: Results, reason: str) -> None:
    """Record that ipyparallel could not be measured, and why."""
    results.problems.append(f"ipyparallel unavailable: {reason}")
    results.add("ipp", "ipp_unavailable", "ipyparallel", None, "", reason)


# -- 5. ratios and output -----------------------------------------------------------


def add_ratios(results: Results, settings: Settings) -> None:
    """ipk against the loopback limit and ipyparallel against ipk."""

    def ratio(measure: str, num: str, den: str, note: str) -> None:
        a, b = results.get(num), results.get(den)
        value = a / b if a is not None and b else None
        results.ratios.append(Row("ratio", f"{num}/{den}", measure, value, "x", note))

    largest_size = max(size for size, _, _ in settings.sizes)
    largest = size_label(largest_size)
    push, pull = f"ipk_push_{size_key(largest_size)}", f"ipk_pull_{size_key(largest_size)}"
    ratio("ipk execute / raw ping-pong", "ipk_exec_median", "raw_rtt_unpinned", "medians")
    for placement in ("same CPU", "across CPUs"):
        key = placement.replace(" ", "_")
        ratio(
            f"ipk execute / raw ping-pong, {placement}",
            f"ipk_exec_{key}",
            f"raw_rtt_{key}",
            "medians, both pinned alike",
        )
    ratio("ipk execute / Twisted echo", "ipk_exec_median", "twisted_rtt_across_CPUs", "medians")
    for toolkit in TOOLKITS:
        if results.get(f"gui_{toolkit}_exec_median") is not None:
            ratio(
                f"--gui {toolkit} / plain execute",
                f"gui_{toolkit}_exec_median",
                "ipk_exec_median",
                "medians: the cost of running jobs in the toolkit's loop",
            )
    ratio(f"ipk push {largest} / memcpy", push, "memcpy_gbps", "GB/s; 1 = memcpy speed")
    ratio(f"ipk pull {largest} / memcpy", pull, "memcpy_gbps", "GB/s; 1 = memcpy speed")
    ratio(
        f"client push x{MOVE_KERNELS} / move",
        "cluster_push_all_ms",
        "cluster_move_ms",
        f"time: > 1 = move faster ({MOVE_KERNELS} copies vs {MOVE_KERNELS - 1})",
    )
    if results.get("ipp_exec_median") is None:
        return
    ipp_size = size_label(settings.ipp_bulk_size)
    ipp_key = size_key(settings.ipp_bulk_size)
    ipk_push, ipk_pull = f"ipk_push_{ipp_key}", f"ipk_pull_{ipp_key}"
    ratio("ipp / ipk execute", "ipp_exec_median", "ipk_exec_median", "latency: > 1 = ipk faster")
    ratio("ipp / ipk pipelined", "ipp_pipelined", "ipk_pipelined", "ops/s: < 1 = ipk faster")
    ratio(f"ipp / ipk push {ipp_size}", "ipp_push_bulk", ipk_push, "GB/s: < 1 = ipk faster")
    ratio(f"ipp / ipk pull {ipp_size}", "ipp_pull_bulk", ipk_pull, "GB/s: < 1 = ipk faster")


def table(rows: list[Row]) -> str:
    """Rows as a plain aligned text table: measure, value, unit, note."""
    cells = [("measure", "value", "unit", "note")]
    cells += [
        (r.measure, "n/a" if r.value is None else format_value(r.value), r.unit, r.note)
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    lines = []
    for i, (measure, value, unit, note) in enumerate(cells):
        lines.append(
            f"{measure:<{widths[0]}}  {value:>{widths[1]}}  {unit:<{widths[2]}}  {note}".rstrip()
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 4)
    return "\n".join(lines)


def print_tables(results: Results, heading: str) -> None:
    """Print a benchmark's heading, its table, its ratios (if any) and its notes."""
    print(f"\n{heading}\n")
    print(table(results.rows))
    if results.ratios:
        print("\nratios")
        print(table(results.ratios))
    for problem in results.problems:
        print(f"note: {problem}")


def report(results: Results, settings: Settings, elapsed: float, json_path: str | None) -> None:
    """Print the table and the ratios; write JSON if asked."""
    print_tables(
        results,
        f"bench_core {'(quick) ' if settings.quick else ''}on {platform.node()}: "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{psutil.virtual_memory().total / GiB:.1f} GiB RAM, {elapsed:.0f} s",
    )
    if json_path:
        data = {
            "settings": asdict(settings),
            "machine": {
                "node": platform.node(),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "memory_bytes": psutil.virtual_memory().total,
            },
            "elapsed_s": elapsed,
            "rows": [asdict(r) for r in results.rows],
            "ratios": [asdict(r) for r in results.ratios],
            "problems": results.problems,
        }
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {json_path}")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run every section, print the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, < 60 s, no ipyparallel")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--skip-ipyparallel", action="store_true", help="do not measure ipyparallel"
    )
    parser.add_argument(
        "--skip-gui", action="store_true", help="do not measure GUI kernels (--gui wx/tk/qt)"
    )
    args = parser.parse_args(argv)
    settings = Settings.make(args.quick)
    results = Results()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ipk-bench-") as scratch:
        # Nothing this run starts may touch ~/.ipython: every section uses a private
        # IPYTHONDIR (this one, or its own below ``scratch``), and children inherit it.
        os.environ["IPYTHONDIR"] = str(Path(scratch) / "ipython")
        (Path(scratch) / "ipython").mkdir()
        print("reference", flush=True)
        bench_raw_ping_pong(results, settings)
        bench_twisted_echo(results, settings)
        bench_memcpy(results, settings)
        print("ipk", flush=True)
        bench_ipk(results, settings, Path(scratch))
        if not args.skip_gui:
            print("GUI kernels", flush=True)
            bench_gui(results, settings, Path(scratch))
        print("cluster", flush=True)
        bench_cluster(results, settings, Path(scratch))
        if not (args.quick or args.skip_ipyparallel):
            print("ipyparallel", flush=True)
            bench_ipyparallel(results, settings, Path(scratch))
    add_ratios(results, settings)
    report(results, settings, time.perf_counter() - started, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
