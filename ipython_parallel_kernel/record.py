"""The record of one command, as kept in a kernel's history and sent to its clients.

Shared by the kernel (which fills it in) and the client (which reads it), so both
sides agree on one definition of the fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CommandRecord:
    """What one numbered command did.

    ``result`` is the display data of a trailing expression (mimetype -> data);
    ``displays`` the display data the command published (``display()``, matplotlib
    figures), in order, binary data such as PNG base64-encoded as in Jupyter; ``error``
    is ``{"ename", "evalue", "traceback"}``; timings are Unix times.
    """

    number: int
    source: str
    stdout: str = ""
    stderr: str = ""
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    submitted: float = 0.0
    started: float = 0.0
    completed: float = 0.0
    displays: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy of the fields."""
        return dict(self.__dict__)
