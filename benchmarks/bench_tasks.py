"""Task benchmark: many small tasks and uneven tasks on 2 workers, beside ipyparallel,
dask.distributed and multiprocessing, in one run.

What is measured (2 worker processes each)
------------------------------------------
1. ipk: ``LoadBalancedView.map_sync`` of N tiny tasks (``lambda x: x + 1``,
   chunksize 1), tasks/s; ``apply_async`` round robin over the two kernels; a
   DirectView ``map_sync`` and ``InteractiveCluster.map`` of the same N items;
   ``Cluster(n=4).start_and_connect_sync()`` until all four answer (median of 3).
2. Uneven tasks: 400 sleeps of 0, 1, 2 or 20 ms (seeded), load balanced; the wall time
   against the ideal (total sleep / 2 workers).
3. The same through ipyparallel's ``LoadBalancedView.map_sync``, dask.distributed's
   ``client.map`` on a ``LocalCluster`` (2 worker processes of 1 thread) and
   ``multiprocessing.Pool(2).imap_unordered`` (chunksize 1), where installed.
4. Ratios: ipk against each, in this run.

Run it (from the repository root, after ``bash scripts/bootstrap.sh --extras bench``)::

    .venv/bin/python benchmarks/bench_tasks.py            # a few minutes
    .venv/bin/python benchmarks/bench_tasks.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import Results, Row, print_tables

WORKERS = 2
UNEVEN_TASKS = 400
UNEVEN_CHOICES = (0.0, 0.001, 0.002, 0.02)
SEED = 20261202


def tiny(x: int) -> int:
    """The tiny task: as cheap as a task can be."""
    return x + 1


def uneven_delays() -> list[float]:
    """The seeded sleeps of the uneven benchmark."""
    rng = random.Random(SEED)
    return [rng.choice(UNEVEN_CHOICES) for _ in range(UNEVEN_TASKS)]


def rate(run: Callable[[], Any], count: int, repeats: int) -> float:
    """Best tasks/s of ``repeats`` runs of ``run`` (which does ``count`` tasks)."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = max(best, count / (time.perf_counter() - start))
    return best


def uneven_ratio(run: Callable[[list[float]], Any]) -> float:
    """Wall time of ``run(delays)`` over the ideal, total sleep / workers."""
    delays = uneven_delays()
    start = time.perf_counter()
    run(delays)
    return (time.perf_counter() - start) / (sum(delays) / WORKERS)


def bench_ipk(results: Results, count: int, repeats: int) -> None:
    import ipython_parallel_kernel as ipp

    timings = []
    for _ in range(3):
        start = time.perf_counter()
        cluster = ipp.Cluster(n=4)
        client = cluster.start_and_connect_sync()
        client[:].apply_sync(tiny, 1)
        timings.append(time.perf_counter() - start)
        client.close()
        cluster.stop_cluster_sync()
    results.add(
        "ipk",
        "ipk_cluster4",
        "ipp.Cluster(n=4).start_and_connect_sync()",
        statistics.median(timings),
        "s",
        "until all 4 answer; median of 3; target <= 1.5 s",
    )
    with ipp.Cluster(n=WORKERS) as rc:
        lview = rc.load_balanced_view()
        lview.map_sync(tiny, range(500))
        note = f"{count} tasks, chunksize 1, best of {repeats}"
        lb = rate(lambda: lview.map_sync(tiny, range(count)), count, repeats)
        results.add("ipk", "ipk_lb_rate", "ipk LoadBalancedView.map_sync", lb, "tasks/s", note)
        kernels = rc.kernels

        def round_robin() -> None:
            pending = [kernels[i % WORKERS].apply_async(tiny, i) for i in range(count)]
            for result in pending:
                result.get(120)

        robin = rate(round_robin, count, repeats)
        results.add("ipk", "ipk_rr_rate", "ipk apply_async round robin", robin, "tasks/s", note)
        dview = rc[:]
        direct = rate(lambda: dview.map_sync(tiny, range(count)), count, repeats)
        results.add("ipk", "ipk_dv_rate", "ipk DirectView.map_sync", direct, "tasks/s", note)
        cluster_map = rate(
            lambda: dview._cluster.map(tiny, range(count), block=True), count, repeats
        )
        results.add(
            "ipk", "ipk_ic_rate", "ipk InteractiveCluster.map", cluster_map, "tasks/s", note
        )
        ratio = uneven_ratio(lambda delays: lview.map_sync(time.sleep, delays))
        results.add(
            "ipk",
            "ipk_uneven",
            "ipk uneven tasks, load balanced",
            ratio,
            "x ideal",
            f"{UNEVEN_TASKS} sleeps of 0/1/2/20 ms; target <= 1.10",
        )


def bench_ipyparallel(results: Results, count: int) -> None:
    if importlib.util.find_spec("ipyparallel") is None:
        results.problems.append("ipyparallel is not installed: its rows are left out")
        return
    import ipyparallel

    cluster = ipyparallel.Cluster(n=WORKERS, log_level=40)
    rc = cluster.start_and_connect_sync()
    try:
        rc.wait_for_engines(WORKERS, timeout=120)
        lview = rc.load_balanced_view()
        lview.map_sync(tiny, range(100))
        lb = rate(lambda: lview.map_sync(tiny, range(count)), count, 1)
        results.add(
            "ipp",
            "ipp_lb_rate",
            "ipyparallel LoadBalancedView.map_sync",
            lb,
            "tasks/s",
            f"{count} tasks, single run",
        )
        ratio = uneven_ratio(lambda delays: lview.map_sync(time.sleep, delays))
        results.add("ipp", "ipp_uneven", "ipyparallel uneven tasks", ratio, "x ideal")
    finally:
        rc.close()
        cluster.stop_cluster_sync()


def bench_dask(results: Results, count: int) -> None:
    if importlib.util.find_spec("distributed") is None:
        results.problems.append("dask.distributed is not installed: its rows are left out")
        return
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        client.gather(client.map(tiny, range(100), pure=False))

        def run() -> None:
            client.gather(client.map(tiny, range(count), pure=False))

        results.add(
            "dask",
            "dask_rate",
            "dask.distributed client.map",
            rate(run, count, 1),
            "tasks/s",
            f"{count} tasks, single run",
        )
        ratio = uneven_ratio(
            lambda delays: client.gather(client.map(time.sleep, delays, pure=False))
        )
        results.add("dask", "dask_uneven", "dask.distributed uneven tasks", ratio, "x ideal")


def bench_multiprocessing(results: Results, count: int) -> None:
    with multiprocessing.Pool(WORKERS) as pool:
        list(pool.imap_unordered(tiny, range(100)))

        def run() -> None:
            list(pool.imap_unordered(tiny, range(count), chunksize=1))

        results.add(
            "mp",
            "mp_rate",
            "multiprocessing Pool.imap_unordered",
            rate(run, count, 1),
            "tasks/s",
            f"{count} tasks, chunksize 1: the local floor",
        )
        ratio = uneven_ratio(lambda delays: list(pool.imap_unordered(time.sleep, delays)))
        results.add("mp", "mp_uneven", "multiprocessing uneven tasks", ratio, "x ideal")


def add_ratios(results: Results) -> None:
    for other, name, target in (
        ("ipp_lb_rate", "ipyparallel", "; target >= 20"),
        ("dask_rate", "dask", ""),
    ):
        ours, theirs = results.get("ipk_lb_rate"), results.get(other)
        if ours and theirs:
            results.ratios.append(
                Row(
                    "ratio",
                    f"ipk_lb/{other}",
                    f"ipk / {name} load-balanced tasks/s",
                    ours / theirs,
                    "x",
                    f"> 1 = ipk faster{target}",
                )
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke test")
    parser.add_argument("--skip-others", action="store_true", help="ipk only")
    args = parser.parse_args(argv)
    count = 1000 if args.quick else 10_000
    others = 200 if args.quick else 2000
    results = Results()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ipk-bench-") as scratch:
        os.environ["IPYTHONDIR"] = str(Path(scratch) / "ipython")
        print("ipk", flush=True)
        bench_ipk(results, count, 1 if args.quick else 3)
        if not args.skip_others:
            print("multiprocessing", flush=True)
            bench_multiprocessing(results, count)
            print("dask", flush=True)
            bench_dask(results, others)
            print("ipyparallel", flush=True)
            bench_ipyparallel(results, others)
    add_ratios(results)
    print_tables(
        results,
        f"bench_tasks on {WORKERS} workers, {os.cpu_count()} CPUs, "
        f"{time.perf_counter() - started:.0f} s",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
