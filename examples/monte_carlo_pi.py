"""Estimate pi on four kernels: ``ipk-cluster start``, then scatter, map and gather.

Run with ``python examples/monte_carlo_pi.py``. Each kernel throws darts at the unit
square with its own random seed and counts those inside the quarter circle; the
counts come back to this process, which turns them into an estimate of pi. The
cluster is stopped at the end, whatever happens.
"""

from __future__ import annotations

import subprocess
import sys
import time

from ipython_parallel_kernel import InteractiveCluster

KERNELS = 4
DARTS_PER_KERNEL = 2_000_000
CLUSTER = [sys.executable, "-m", "ipython_parallel_kernel.apps.cluster"]


def start_cluster(cluster_id: str) -> str:
    """``ipk-cluster start -n 4`` and the path of the cluster file it wrote."""
    done = subprocess.run(
        [*CLUSTER, "start", "-n", str(KERNELS), "--cluster-id", cluster_id],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise SystemExit(f"ipk-cluster start failed:\n{done.stdout}{done.stderr}")
    print(done.stdout.strip())
    ready = next(line for line in done.stdout.splitlines() if line.startswith("ipk-cluster ready:"))
    return ready.rsplit("cluster file ", 1)[1].strip()


def count_inside(seed: int, darts: int) -> int:
    """Darts, of ``darts`` thrown with ``seed``, that land inside the quarter circle."""
    import numpy as np

    xy = np.random.default_rng(seed).random((darts, 2))
    return int(((xy**2).sum(axis=1) <= 1.0).sum())


def main() -> None:
    cluster_id = "monte-carlo-pi"
    path = start_cluster(cluster_id)
    try:
        ic = InteractiveCluster.from_file(path, timeout=120)
        started = time.perf_counter()

        # map: one call of count_inside per seed, spread over the kernels.
        seeds = list(range(KERNELS))
        counts = ic.map(count_inside, seeds, [DARTS_PER_KERNEL] * KERNELS)
        estimate = 4 * sum(counts) / (KERNELS * DARTS_PER_KERNEL)
        print(f"map:     pi ~ {estimate:.5f} from {KERNELS * DARTS_PER_KERNEL:,} darts")

        # scatter and gather: each kernel gets a block of seeds and keeps its counts.
        ic.scatter("my_seeds", list(range(100, 100 + 2 * KERNELS)))
        ic.push(count_inside, "count_inside")
        ic.execute(f"hits = [count_inside(s, {DARTS_PER_KERNEL // 2}) for s in my_seeds]")
        hits = ic.gather("hits")
        estimate = 4 * sum(hits) / (len(hits) * DARTS_PER_KERNEL // 2)
        print(f"gather:  pi ~ {estimate:.5f} from {len(hits)} blocks of darts")
        print(f"on {len(ic)} kernels in {time.perf_counter() - started:.2f} s")
        ic.disconnect()
    finally:
        subprocess.run([*CLUSTER, "stop", "--cluster-id", cluster_id], timeout=60, check=False)


if __name__ == "__main__":
    main()
