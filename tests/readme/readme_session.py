"""One IPython session for the README runner: cells in on stdin, answers out on a pipe.

Run as ``python readme_session.py FD``. Each line on stdin is a JSON request, and each
gets one JSON line written to file descriptor FD:

- ``{"cell": SOURCE, "value": LITERAL or null}`` runs SOURCE in a real InteractiveShell
  and answers ``{"success", "error", "error_types", "value", "equal", "output"}``:
  ``equal`` says whether the cell's value equals the literal, when one was given.
- ``{"poll": true}`` answers ``{"output"}`` only.

``output`` is everything printed since the previous answer, stdout and stderr together
and from any thread, as a terminal would show it (gatherers and progress bars print from
threads of their own). End of input ends the session, as leaving IPython does, so its
exit hooks run (kernels started by ``%kernel start`` are stopped).
"""

from __future__ import annotations

import ast
import io
import json
import os
import sys
import threading
from typing import Any


class Capture(io.TextIOBase):
    """A stdout shared by every thread; ``take`` returns what was written since last time."""

    encoding = "utf-8"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._parts: list[str] = []

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._parts.append(text)
        return len(text)

    def take(self) -> str:
        with self._lock:
            text, self._parts = "".join(self._parts), []
        return text


def run_cell(shell: Any, request: dict[str, Any], capture: Capture) -> dict[str, Any]:
    """Run one cell as IPython does when it is typed; describe what came of it."""
    result = shell.run_cell(request["cell"], store_history=True)
    error = result.error_before_exec or result.error_in_exec
    answer: dict[str, Any] = {
        "success": result.success,
        "error": None if error is None else f"{type(error).__name__}: {error}"[:2000],
        "error_types": [] if error is None else [c.__name__ for c in type(error).__mro__],
        "value": None if result.result is None else repr(result.result)[:2000],
        "equal": None,
    }
    if request.get("value") is not None and error is None:
        answer["equal"] = bool(result.result == ast.literal_eval(request["value"]))
    answer["output"] = capture.take()
    return answer


def main() -> None:
    answers = os.fdopen(int(sys.argv[1]), "w")
    capture = Capture()
    sys.stdout = sys.stderr = capture
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.colors = "nocolor"
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("poll"):
            answer = {"output": capture.take()}
        else:
            answer = run_cell(shell, request, capture)
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
