"""Watch kernels from a second session: two sessions, played by one script.

Run with ``python examples/watch_kernels.py``. In real life two people (or two
terminals) share the work:

- the *colleague* runs ``ipk-gather --port 0 --watch CLUSTER_FILE`` and watches;
- the *driver* connects to the kernels, tells them to notify the colleague's
  gatherer, and runs commands.

Here the colleague's ``ipk-gather`` is a subprocess; when the driver is done, the
script stops it and prints what it saw. The cluster is stopped at the end, whatever
happens.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import time

from ipython_parallel_kernel import InteractiveCluster

CLUSTER_ID = "watch-demo"
CLUSTER = [sys.executable, "-m", "ipython_parallel_kernel.apps.cluster"]
GATHER = [sys.executable, "-m", "ipython_parallel_kernel.apps.gather"]


def start_cluster() -> str:
    """``ipk-cluster start -n 2`` and the path of the cluster file it wrote."""
    done = subprocess.run(
        [*CLUSTER, "start", "-n", "2", "--cluster-id", CLUSTER_ID],
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


def start_gatherer(cluster_file: str, output) -> tuple[subprocess.Popen, str]:
    """The colleague's ``ipk-gather``, and the address it listens on."""
    process = subprocess.Popen(
        [*GATHER, "--port", "0", "--watch", cluster_file, "--no-color"],
        stdout=output,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        output.seek(0)
        match = re.search(rb"ipk-gather listening on (\S+)", output.read())
        if match:
            return process, match.group(1).decode()
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise SystemExit("ipk-gather did not start")


def main() -> None:
    cluster_file = start_cluster()
    gatherer = None
    try:
        with tempfile.TemporaryFile() as seen:
            gatherer, address = start_gatherer(cluster_file, seen)
            print(f"colleague: gathering on {address}")

            ic = InteractiveCluster.from_file(cluster_file)
            try:
                ic.notify(address)
                print(f"driver: kernels {', '.join(k.name for k in ic)} now notify {address}")
                ic.execute("import os; a = 21")
                ic.execute("print('pid', os.getpid())")
                ic.execute("a * 2")
                ic.notify(address, False)
            finally:
                ic.disconnect()

            time.sleep(0.5)  # records travel asynchronously: let the last ones arrive
            gatherer.send_signal(signal.SIGTERM)
            gatherer.wait(30)
            seen.seek(0)
            print("colleague saw:")
            print(seen.read().decode(errors="replace").rstrip())
    finally:
        if gatherer is not None and gatherer.poll() is None:
            gatherer.kill()
            gatherer.wait()
        subprocess.run(
            [*CLUSTER, "stop", "--cluster-id", CLUSTER_ID],
            capture_output=True,
            timeout=60,
            check=False,
        )


if __name__ == "__main__":
    main()
