"""Watching kernels: real kernels, a driving session, and gatherers in other processes."""

from __future__ import annotations

import re
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import kernel_env, start_kernel, stop_process

from ipython_parallel_kernel import RemoteKernel
from ipython_parallel_kernel.client.gatherer import ResultGatherer

GATHER = [sys.executable, "-m", "ipython_parallel_kernel.apps.gather"]
LISTENING = re.compile(r"ipk-gather listening on 127\.0\.0\.1:(\d+)")
IN_LINE = re.compile(r"^\[127\.0\.0\.1:(\d+)\] In \[(\d+)\]: (.*)$")
WAIT = 60.0
BIG = 1_000_000

COMMANDS = [
    "a = 5",
    "print(a * 2)",
    "b = a + 1",
    "print('x' * 1_000_000)",
    "import sys; print('to stderr', file=sys.stderr)",
    "a * 3",
]

DRIVER = """
import sys
from IPython.core.interactiveshell import InteractiveShell

files, ports, commands = sys.argv[1].split(","), sys.argv[2].split(","), sys.argv[3:]
ip = InteractiveShell.instance()
ip.colors = "nocolor"
def run(cell):
    result = ip.run_cell(cell)
    if not result.success:
        raise SystemExit(f"failed: {cell!r}: {result.error_in_exec or result.error_before_exec}")
run("%load_ext ipython_parallel_kernel")
run("%kernel connect " + " ".join(files))
for port in ports:
    run(f"%kernel notify 127.0.0.1:{port}")
for command in commands:
    run("%px " + command)
run("%unload_ext ipython_parallel_kernel")
print("DRIVER DONE", flush=True)
"""


def start_gatherer(ipython_dir: Path, files: list[str]) -> tuple[subprocess.Popen, Path, int]:
    """``ipk-gather --port 0 --watch FILES --no-color``, its output file and its port."""
    out = ipython_dir / f"gather-{time.monotonic_ns()}.out"
    with open(out, "w") as f:
        process = subprocess.Popen(
            [*GATHER, "--port", "0", *(["--watch", *files] if files else []), "--no-color"],
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=kernel_env(ipython_dir),
        )
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        match = LISTENING.search(out.read_text())
        if match:
            return process, out, int(match.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.05)
    stop_process(process, 5)
    raise AssertionError(f"ipk-gather did not start:\n{out.read_text()}")


def commands_seen(text: str) -> dict[int, list[tuple[int, str]]]:
    """Per kernel port, the (number, source) of every record a gatherer printed, in order."""
    seen: dict[int, list[tuple[int, str]]] = {}
    for line in text.splitlines():
        match = IN_LINE.match(line)
        if match:
            seen.setdefault(int(match.group(1)), []).append((int(match.group(2)), match.group(3)))
    return seen


@pytest.mark.timeout(300)
def test_two_gatherers_see_every_record_of_three_kernels(ipython_dir):
    """Records reach every gatherer whole, in order per kernel; 1 MB of output too."""
    kernels = []
    gatherers: list[subprocess.Popen] = []
    driver = None
    inproc = None
    try:
        for _ in range(3):
            kernels.append(start_kernel(ipython_dir))
        files = [str(k.connection_file) for k in kernels]
        ports = {k.port for k in kernels}
        outputs, gather_ports = [], []
        for _ in range(2):
            process, out, port = start_gatherer(ipython_dir, files)
            gatherers.append(process)
            outputs.append(out)
            gather_ports.append(port)
        # A third watcher in this process, to check records field by field.
        inproc = ResultGatherer(("127.0.0.1", 0), output=None, profile_keys=False)
        for path in files:
            inproc.watch(path)
        inproc.start()
        gather_ports.append(inproc.address[1])

        driver_out = ipython_dir / "driver.out"
        with open(driver_out, "w") as f:
            driver = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    textwrap.dedent(DRIVER),
                    ",".join(files),
                    ",".join(map(str, gather_ports)),
                    *COMMANDS,
                ],
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=kernel_env(ipython_dir),
            )
        try:
            driver.wait(180)
        except subprocess.TimeoutExpired:
            raise AssertionError("the driver did not finish") from None
        driven = driver_out.read_text()
        assert driver.returncode == 0 and "DRIVER DONE" in driven, driven[-3000:]

        expected = {port: COMMANDS for port in ports}
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            texts = [out.read_text() for out in outputs]
            got = [commands_seen(text) for text in texts]
            if all({p: [s for _, s in v] for p, v in g.items()} == expected for g in got) and (
                len(inproc.records) >= 3 * len(COMMANDS)
            ):
                break
            time.sleep(0.1)
        for text, g in zip(texts, got, strict=True):
            assert {p: [s for _, s in v] for p, v in g.items()} == expected, text[-3000:]
            for port, seen in g.items():
                numbers = [n for n, _ in seen]
                assert numbers == sorted(set(numbers)), (port, numbers)
            # The 1 MB line, whole, once per kernel.
            assert sum(1 for line in text.splitlines() if line.endswith("x" * BIG)) == 3
            assert "pieces lost" not in text

        by_kernel: dict[str, list[dict]] = {}
        for record in inproc.records:
            by_kernel.setdefault(record["kernel"], []).append(record)
        assert sorted(by_kernel) == sorted(f"127.0.0.1:{port}" for port in ports)
        for name, records in by_kernel.items():
            assert [r["source"] for r in records] == COMMANDS, name
            assert records[1]["stdout"] == "10\n"
            assert records[3]["stdout"] == "x" * BIG + "\n"
            assert len(records[3]["stdout"]) == BIG + 1
            assert "to stderr" in records[4]["stderr"]
            assert records[5]["result"] == "15"
        assert inproc.lost == [] and inproc.rejected == 0
    finally:
        if inproc is not None:
            inproc.stop()
        if driver is not None:
            stop_process(driver, 5)
        for process in gatherers:
            status = stop_process(process, 10)
            assert status == 0, f"ipk-gather exited with {status}"
        for kernel in kernels:
            kernel.stop()


def closed_udp_port() -> int:
    """A UDP port on 127.0.0.1 where nothing listens (bound, noted, closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def median_execute(rk: RemoteKernel, n: int = 40) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        rk.execute("a=1")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@pytest.mark.timeout(180)
def test_vanished_gatherer_costs_the_kernel_nothing(rk):
    """Notifying a port where nothing listens: every command completes, nothing dropped."""
    median_execute(rk, 5)  # warm up
    alone = median_execute(rk)
    port = closed_udp_port()
    rk.notify(("127.0.0.1", port))
    try:
        watched = median_execute(rk)
        status = rk.status()
    finally:
        rk.notify(("127.0.0.1", port), False)
    figures = f"median execute('a=1'): {alone * 1e3:.2f} ms alone, {watched * 1e3:.2f} ms notifying"
    print(figures)
    assert status["commands_run"] >= 5 + 40 + 40, (status, figures)
    assert status["records_dropped"] == 0, (status, figures)
    assert status["notify"] == [f"127.0.0.1:{port}"], (status, figures)


@pytest.mark.timeout(240)
def test_ipk_gather_sees_cluster_kernels_started_after_it(ipython_dir, tmp_path):
    """ipk-gather with no --watch shows the records of an ipk-cluster started after it, and
    names once a kernel whose key it cannot read, instead of dropping its records silently."""
    from ipython_parallel_kernel import InteractiveCluster

    cluster = [sys.executable, "-m", "ipython_parallel_kernel.apps.cluster"]
    run = dict(capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    gather, out, port = start_gatherer(ipython_dir, [])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    stranger = start_kernel(elsewhere)
    started = None
    try:
        started = subprocess.run([*cluster, "start", "-n", "2", "--cluster-id", "w"], **run)
        assert started.returncode == 0, started.stderr
        path = re.search(r"cluster file (\S+)$", started.stdout, re.M)[1]
        ic = InteractiveCluster.from_file(path, timeout=30)
        ic.notify(("127.0.0.1", port))
        ic.execute("watched = 1")
        ports = {k.address[1] for k in ic}
        ic.disconnect()
        rk = RemoteKernel(str(stranger.connection_file), timeout=30)
        rk.notify(("127.0.0.1", port))
        for _ in range(3):
            rk.execute("unseen = 1")
        rk.disconnect()

        def settled() -> bool:
            text = out.read_text()
            seen = commands_seen(text)
            return {p: [s for _, s in seen.get(p, [])] for p in ports} == {
                p: ["watched = 1"] for p in ports
            } and f"kernel 127.0.0.1:{stranger.port} sends records signed" in text

        deadline = time.monotonic() + WAIT
        while not settled() and time.monotonic() < deadline:
            time.sleep(0.1)
        text = out.read_text()
        assert settled(), text
        assert text.count("does not know") == 1, text
        assert "unseen" not in text
    finally:
        if started is not None:
            subprocess.run([*cluster, "stop", "--cluster-id", "w"], **run)
        stranger.stop()
        assert stop_process(gather, 10) == 0
