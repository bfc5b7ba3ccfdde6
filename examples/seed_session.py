"""The 2005 note's session, end to end: start a kernel in the background, drive it, stop it.

Run with ``bash scripts/demo.sh`` (or ``python examples/seed_session.py``). It starts
``ipk-kernel --port 0 &``, waits for its ready line, then, as a user at an IPython
prompt would, executes code, pushes and pulls values, uses the dictionary interface,
prints a result, shows a remote error with its traceback, and shuts the kernel down.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile

from ipython_parallel_kernel import RemoteError, RemoteKernel


def start_kernel(ipython_dir: str) -> tuple[subprocess.Popen, tuple[str, int]]:
    """``ipk-kernel --port 0`` in the background; returns the process and its address."""
    command = shutil.which("ipk-kernel", path=os.path.dirname(sys.executable)) or "ipk-kernel"
    process = subprocess.Popen(
        [command, "--port", "0", "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "IPYTHONDIR": ipython_dir},
    )
    line = process.stdout.readline().strip()  # the ready line, printed once bound
    if not line.startswith("ipk-kernel ready:"):
        process.kill()
        raise SystemExit(f"the kernel did not start: {line!r}")
    print(f"$ ipk-kernel --port 0 &\n{line}\n")
    host, _, port = line.split()[2].rpartition(":")
    return process, (host, int(port))


def show(code: str, value: object = None) -> None:
    """Print a line as an IPython session would show it."""
    print(f">>> {code}")
    if value is not None:
        print(value)


def main() -> None:
    ipython_dir = tempfile.mkdtemp(prefix="ipk-demo-")
    os.environ["IPYTHONDIR"] = ipython_dir  # where the client finds the kernel's key
    process, address = start_kernel(ipython_dir)
    try:
        rk = RemoteKernel(address, timeout=60)
        show(f"rk = RemoteKernel({address!r})", rk)
        show("rk.execute('a = 5')")
        rk.execute("a = 5")
        show("rk.push(10, 'b')")
        rk.push(10, "b")
        show("rk.pull('b')", rk.pull("b"))
        show("rk['c'] = [a * b for a, b in zip(range(3), range(3))]")
        rk["c"] = [a * b for a, b in zip(range(3), range(3), strict=True)]
        show("rk['c']", rk["c"])
        show("'b' in rk, rk.keys()", ("b" in rk, rk.keys()))
        result = rk.execute("print('a + b =', a + b)\na * b")
        show("rk.execute(\"print('a + b =', a + b)\\na * b\")", result)
        show("rk.apply(lambda x: x + a, 1)", rk.apply(lambda x: x + a, 1))  # noqa: F821
        show("rk.execute('1 / 0')")
        try:
            rk.execute("1 / 0")
        except RemoteError as error:
            print(f"RemoteError: {error}")
        show("rk.status()['commands_run']", rk.status()["commands_run"])
        show("rk.kill()")
        rk.kill()
        process.wait(30)
        print(f"\nkernel exited with status {process.returncode}")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(10)
        shutil.rmtree(ipython_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
