"""The examples under examples/ run as a user would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str) -> subprocess.CompletedProcess:
    """Run ``examples/NAME`` as a user would, bounded."""
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def test_seed_session_demo(ipython_dir):
    """The demo replays the seed's session and stops its kernel cleanly."""
    result = run_example("seed_session.py")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "ipk-kernel ready: 127.0.0.1:" in out
    assert ">>> rk.pull('b')\n10\n" in out
    assert "[0, 1, 4]" in out
    assert "[stdout] a + b = 15" in out and "Out[2]: 50" in out
    assert "ZeroDivisionError: division by zero" in out and "<ipk-input-3>" in out
    assert out.rstrip().endswith("kernel exited with status 0")


def test_monte_carlo_pi(ipython_dir):
    """The Monte Carlo example estimates pi on four kernels and stops its cluster."""
    result = run_example("monte_carlo_pi.py")
    assert result.returncode == 0, result.stderr
    estimates = [
        float(line.split("pi ~ ")[1].split()[0])
        for line in result.stdout.splitlines()
        if "pi ~ " in line
    ]
    assert len(estimates) == 2
    assert all(abs(estimate - 3.14159) < 0.01 for estimate in estimates)
    assert "stopped cluster monte-carlo-pi: 4 kernels" in result.stdout
    assert not list(ipython_dir.glob("profile_default/security/ipk-*.json"))


def test_watch_kernels_walkthrough(ipython_dir):
    """The two-session walkthrough: the watcher sees the driver's commands."""
    result = run_example("watch_kernels.py")
    assert result.returncode == 0, result.stderr
    assert "] In [" in result.stdout and "[stdout]" in result.stdout
    assert not list(ipython_dir.glob("profile_default/security/ipk-*.json"))
