"""Shared by the adversarial tests: a process's memory, watched while it is attacked."""

from __future__ import annotations

import threading
from types import TracebackType

import psutil

MiB = 1024**2


class PeakRss:
    """Samples a process's resident memory every 10 ms while in the ``with`` block.

    ``baseline`` is taken on entry; ``growth`` is the peak seen minus the baseline.
    """

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def __enter__(self) -> PeakRss:
        self.baseline = self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(
        self, kind: type | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(10)
        self.sample()

    def sample(self) -> int:
        """Take one sample now; return the growth so far."""
        self.peak = max(self.peak, self.process.memory_info().rss)
        return self.growth

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            try:
                self.sample()
            except psutil.NoSuchProcess:
                return

    def __str__(self) -> str:
        return (
            f"RSS {self.baseline / MiB:.0f} -> {self.peak / MiB:.0f} MiB "
            f"(growth {self.growth / MiB:.1f} MiB)"
        )
