"""MPI benchmark: kernels as MPI ranks against plain kernels, measured in one run.

What is measured
----------------
1. ``move`` of a 100 MiB float64 array from kernel 0 to the 3 others of a 4-rank MPI
   cluster (``Cluster(engines="mpi", n=4)``): over MPI (``InteractiveCluster.move``:
   ``comm.Bcast`` of the buffer, shared memory between the ranks) and, on the same
   kernels, over TCP (``RemoteKernel.copy_to``: kernel 0 pushes to each over its own
   connection). The first call of each is reported apart (it pays for the receivers'
   fresh pages); then the median of the repeats, and aggregate GB/s (bytes delivered
   to kernels / time). Each copy is checked on every target (sum of the array).
2. ``ipk-cluster start -n 8`` until its ready line, ``--launcher mpi`` against
   ``--launcher local``, each verified with ``execute('1')`` on every kernel and
   stopped with ``ipk-cluster stop`` (median of the runs; stop times too).
3. Ratios: TCP / MPI move time, MPI / local start time.

Everything runs with a private temporary IPYTHONDIR; any kernel or mpiexec left over
is killed by pid and reported.

Run it (from the repository root; needs mpiexec and ``pip install .[mpi]``)::

    .venv/bin/python benchmarks/bench_mpi.py            # about a minute
    .venv/bin/python benchmarks/bench_mpi.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import Results, Row, gbps, ipk_cluster_run, kill_pids, print_tables

MOVE_BYTES = 100 * 2**20
MOVE_KERNELS = 4
START_KERNELS = 8


def bench_move(results: Results, repeats: int) -> None:
    """100 MiB from kernel 0 to the 3 others: MPI Bcast against TCP pushes."""
    from ipython_parallel_kernel import InteractiveCluster
    from ipython_parallel_kernel.launchers.cluster import Cluster

    cluster = Cluster(engines="mpi", n=MOVE_KERNELS, cluster_id=f"bench-move-{os.getpid()}")
    cluster.start()
    pids: set[int] = set()
    try:
        ic = InteractiveCluster.from_file(cluster.path, timeout=120)
        pids = {k.kernel_info["pid"] for k in ic.kernels}
        pids |= {psutil.Process(pid).ppid() for pid in pids}  # and their mpiexec
        count = MOVE_BYTES // 8
        ic.execute(f"import numpy as np; a = np.arange({count}, dtype=np.float64)", targets=0)
        expected = float(count * (count - 1) // 2)
        others = ic.kernels[1:]
        delivered = MOVE_BYTES * len(others)

        def over_mpi() -> None:
            ic.move("a", 0)

        def over_tcp() -> None:
            ic.kernels[0].copy_to("a", others, block=True)

        for key, label, move in (("mpi", "MPI Bcast", over_mpi), ("tcp", "TCP push", over_tcp)):
            times = []
            for _ in range(repeats + 1):
                ic.execute("a = None", targets=slice(1, None))
                started = time.perf_counter()
                move()
                times.append(time.perf_counter() - started)
                sums = [r.result["text/plain"] for r in ic.execute("float(a.sum())")]
                if any(float(s) != expected for s in sums):
                    raise RuntimeError(f"{label}: the copies differ from the source: {sums}")
            steady = statistics.median(times[1:])
            note = f"100 MiB to {len(others)} kernels"
            results.add(
                "move",
                f"move_{key}_first_ms",
                f"move over {label}, first call",
                times[0] * 1e3,
                "ms",
                note,
            )
            results.add(
                "move",
                f"move_{key}_ms",
                f"move over {label}, median",
                steady * 1e3,
                "ms",
                f"{note}, {repeats} runs",
            )
            results.add(
                "move",
                f"move_{key}_gbps",
                f"move over {label}, aggregate",
                gbps(delivered, steady),
                "GB/s",
                "bytes delivered / time",
            )
        ic.disconnect()
    finally:
        cluster.stop()
        left = kill_pids({pid for pid in pids if psutil.pid_exists(pid)}, grace=2.0)
        if left:
            results.problems.append(f"move cluster left running, killed by pid: {left}")


def bench_start(results: Results, ipython_dir: Path, runs: int) -> None:
    """``ipk-cluster start -n 8`` with each launcher, verified and stopped each time."""
    for launcher in ("mpi", "local"):
        starts, stops = [], []
        for run in range(runs):
            cluster_id = f"bench-{launcher}-{os.getpid()}-{run}"
            start_s, stop_s, _ = ipk_cluster_run(
                START_KERNELS, ipython_dir, cluster_id, results.problems, launcher
            )
            starts.append(start_s)
            stops.append(stop_s)
        note = f"median of {runs}, until the ready line"
        results.add(
            "start",
            f"start_{launcher}_s",
            f"ipk-cluster start -n {START_KERNELS} --launcher {launcher}",
            statistics.median(starts),
            "s",
            note,
        )
        results.add(
            "start",
            f"stop_{launcher}_s",
            f"ipk-cluster stop ({launcher})",
            statistics.median(stops),
            "s",
            f"median of {runs}",
        )


def add_ratios(results: Results) -> None:
    for key, measure, top, bottom, note in (
        ("move_tcp/mpi", "move time, TCP / MPI", "move_tcp_ms", "move_mpi_ms", "> 1 = MPI faster"),
        (
            "start_mpi/local",
            "start time, mpi / local",
            "start_mpi_s",
            "start_local_s",
            "< 1 = mpi faster",
        ),
    ):
        a, b = results.get(top), results.get(bottom)
        if a and b:
            results.ratios.append(Row("ratio", key, measure, a / b, "x", note))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, for a smoke test")
    args = parser.parse_args(argv)
    if shutil.which("mpiexec") is None:
        print("bench_mpi: mpiexec is not on PATH (install Open MPI or MPICH)", file=sys.stderr)
        return 2
    results = Results()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ipk-bench-mpi-") as scratch:
        ipython_dir = Path(scratch) / "ipython"
        os.environ["IPYTHONDIR"] = str(ipython_dir)
        print("move", flush=True)
        bench_move(results, 1 if args.quick else 7)
        print("start", flush=True)
        bench_start(results, ipython_dir, 1 if args.quick else 5)
    add_ratios(results)
    print_tables(
        results, f"bench_mpi, {os.cpu_count()} CPUs, {time.perf_counter() - started:.0f} s"
    )
    return 1 if results.problems else 0


if __name__ == "__main__":
    sys.exit(main())
