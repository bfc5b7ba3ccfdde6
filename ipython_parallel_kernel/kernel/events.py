"""Connection events that a flood repeats, logged once per burst instead of once each.

A peer without the key can open connections as fast as the kernel accepts them; if
every refusal were a log line, the log would grow as fast. ``BurstLog`` logs the first
event of each kind, counts the others for ``window`` seconds, then logs the count::

    [... WARNING] refusing 127.0.0.2:40112: 127.0.0.2 is not allowed by kernel 127.0.0.1:10105
    [... WARNING] ... and 1841 more refused connections in the last 10 s
"""

from __future__ import annotations

import logging
from typing import Any

#: Seconds during which further events of a kind logged once are only counted.
BURST_WINDOW = 10.0


class BurstLog:
    """Warnings of repeated kinds of event, at most two log lines per kind and window.

    Reactor thread only (the window is timed with the reactor's clock).
    """

    def __init__(self, logger: logging.Logger, reactor: Any, window: float = BURST_WINDOW) -> None:
        self.logger = logger
        self.reactor = reactor
        self.window = window
        self._more: dict[str, int] = {}  # kind -> events counted since its logged one

    def event(self, kind: str, message: str, *args: Any) -> None:
        """Log ``message % args``, unless one of ``kind`` was logged in the window: count it.

        ``kind`` names the events in the plural ("refused connections"), for the count.
        """
        if kind in self._more:
            self._more[kind] += 1
            return
        self._more[kind] = 0
        self.logger.warning(message, *args)
        self.reactor.callLater(self.window, self._report, kind)

    def _report(self, kind: str) -> None:
        more = self._more.pop(kind)
        if more:
            self.logger.warning("... and %d more %s in the last %g s", more, kind, self.window)
