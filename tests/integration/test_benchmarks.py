"""The benchmark script keeps working (its figures are not asserted: machines are noisy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_core.py"


def test_quick_benchmark_runs_and_reports(tmp_path):
    """`bench_core.py --quick` measures every ipk figure and leaves no process behind."""
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--skip-ipyparallel", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    measured = {row["key"]: row["value"] for row in report["rows"]}
    for key in ("raw_rtt_across_CPUs", "ipk_exec_median", "ipk_pipelined", "ipk_push_100MiB"):
        assert measured[key] > 0
    assert report["problems"] == []
    assert "ipk execute round trip" in result.stdout
