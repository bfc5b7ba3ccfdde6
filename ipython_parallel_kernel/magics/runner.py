"""The ``%px`` runner: run code on a cluster's kernels, wait, and show what each did.

It needs no IPython shell, only a cluster, so ``%px`` is this plus argument parsing::

    >>> runner = PxRunner(cluster, stream=True, progress_after=2.0)
    >>> outcomes = runner.run("print(a * 2)", [0, 1])
    [stdout:0] 10
    [stdout:1] 10
    >>> runner.raise_failures([0, 1], outcomes)  # CompositeError if some kernel failed

The wait happens in the caller's thread, so streamed output is printed there (the
shell's thread, in IPython); a command that outlasts ``progress_after`` seconds gets a
progress bar; a KeyboardInterrupt (Ctrl-C) during the wait interrupts the kernels.
"""

from __future__ import annotations

import queue
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ..client import display
from ..client.cluster import ClusterResult, InteractiveCluster
from ..errors import CompositeError
from ..launchers.cluster import signal_kernels

#: How long an interrupted command may take to end before the wait gives up on it.
INTERRUPT_GRACE = 30.0
#: How often the wait wakes to print streamed output and move the progress bar.
POLL_INTERVAL = 0.05

Chunk = tuple[int, str, str]


@dataclass
class PxRunner:
    """Runs code on ``cluster`` the way ``%px`` does, with ``%px``'s options."""

    cluster: InteractiveCluster
    #: Print kernels' output as it comes (else when the command ends, grouped).
    stream: bool = True
    #: How output shown at the end is grouped: one of ``display.GROUPINGS``.
    group: str = "engine"
    #: Colour error labels (ANSI escapes).
    colour: bool = False
    #: Seconds a command runs before a progress bar is shown (negative: never).
    progress_after: float = 2.0
    #: What Ctrl-C during the wait does: "SIGINT" interrupts the kernels' commands (an
    #: interrupt request); another signal (a name or number) is sent to the kernels'
    #: processes on this machine, 0 sends nothing.
    signal_on_interrupt: str = "SIGINT"
    #: The ClusterResult of the last ``start`` or ``run``.
    result: ClusterResult | None = field(default=None, init=False)

    def start(self, code: str, targets: list[int]) -> ClusterResult:
        """Send ``code`` to ``targets`` and return at once; nothing is shown (``wait``
        waits for it as ``run`` does)."""
        self.result = self.cluster.execute(code, targets, block=False)
        return self.result

    def run(self, code: str, targets: list[int]) -> list[Any]:
        """Run ``code`` on ``targets``, wait, show the output; one outcome per target
        (an ExecuteResult, or the exception it failed with), in target order.

        Failures are shown with their output but not raised: see ``raise_failures``.
        """
        outputs: queue.SimpleQueue[Chunk] = queue.SimpleQueue()
        on_output = (lambda *chunk: outputs.put(chunk)) if self.stream else None
        self.result = self.cluster.execute(code, targets, block=False, on_output=on_output)
        outcomes = self.wait(self.result, targets, outputs)
        display.show_outputs(
            targets,
            outcomes,
            streamed=self.stream,
            group=self.group,
            colour=self.colour,
            errors=False,
        )
        return outcomes

    def wait(
        self,
        pending: ClusterResult,
        targets: list[int],
        outputs: queue.SimpleQueue[Chunk] | None = None,
    ) -> list[Any]:
        """Wait for every target (progress bar, Ctrl-C as ``run``), printing the streamed
        output ``outputs`` brings from this thread as it comes; the outcomes."""
        outputs = queue.SimpleQueue() if outputs is None else outputs
        bar = None
        started = time.monotonic()
        try:
            while not pending.wait(POLL_INTERVAL):
                _drain(outputs)
                if bar is None and 0 <= self.progress_after < time.monotonic() - started:
                    bar = display.progress_bar(len(targets), "%px", "kernel")
                if bar is not None and pending.progress != bar.n:
                    bar.update(pending.progress - bar.n)
        except KeyboardInterrupt:
            self.interrupt(targets)
            pending.wait(INTERRUPT_GRACE)
        finally:
            if bar is not None:
                bar.close()
        _drain(outputs)
        error = pending.exception(0) if pending.done() else None
        if isinstance(error, CompositeError):
            return list(error.results)
        if error is not None:
            raise error
        return list(pending.result(0)) if pending.done() else []

    def interrupt(self, targets: list[int]) -> None:
        """What Ctrl-C does to ``targets`` (see ``signal_on_interrupt``)."""
        names = ", ".join(map(str, targets))
        signum = self.signal_on_interrupt.strip()
        if signum.upper() in ("SIGINT", "INT", "2"):
            self.cluster.interrupt(targets, block=False)
            print(f"interrupted kernels {names}", file=sys.stderr)
        elif signum != "0":
            number = int(signum) if signum.isdigit() else signum
            signal_kernels([self.cluster[i].info for i in targets], number)
            print(f"sent {signum} to kernels {names}", file=sys.stderr)

    def raise_failures(self, targets: list[int], outcomes: list[Any]) -> None:
        """Raise a CompositeError naming each target whose outcome is an exception."""
        failures = [
            (target, self.cluster[target].name, outcome)
            for target, outcome in zip(targets, outcomes, strict=True)
            if isinstance(outcome, BaseException)
        ]
        if failures:
            raise CompositeError("execute", failures, outcomes)


def _drain(outputs: queue.SimpleQueue[Chunk]) -> None:
    while True:
        try:
            target, name, text = outputs.get_nowait()
        except queue.Empty:
            return
        display.print_stream(target, name, text)
