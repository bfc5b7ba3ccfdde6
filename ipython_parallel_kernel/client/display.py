"""Showing what kernels did, labelled the way IPython users know it.

``[stdout:0]`` and ``[stderr:1]`` head each kernel's output, ``Out[0:3]:`` its result
(kernel 0, command 3), ``[0:execute]`` its error. In a notebook, rich results (a PNG,
HTML) are published as display data; in a terminal their text/plain form is printed.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from ..errors import RemoteError

RED, BOLD, RESET = "\x1b[31m", "\x1b[1m", "\x1b[0m"
#: Orders in which the outputs of several kernels can be shown.
GROUPINGS = ("engine", "type", "order")


def _colour(text: str, colour: str, use: bool) -> str:
    return f"{colour}{text}{RESET}" if use else text


def labelled(label: str, text: str) -> str:
    """``text`` headed by ``label``: on its first line when that fits, as ipyparallel does."""
    text = text.rstrip("\n")
    return f"{label} {text}" if "\n" not in text else f"{label}\n{text}"


def print_stream(target: int, name: str, text: str) -> None:
    """One kernel's streamed output, to our stdout or stderr."""
    stream = sys.stderr if name == "stderr" else sys.stdout
    print(labelled(f"[{name}:{target}]", text), file=stream, flush=True)


def show_result(target: int, record: Any) -> None:
    """A command's display data: published where rich output is possible, else printed."""
    for bundle in getattr(record, "displays", None) or []:
        _publish(bundle, None)
    if record.result is not None:
        _publish(record.result, f"Out[{target}:{record.number}]:")


def _publish(bundle: dict[str, Any], prompt: str | None) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    text = bundle.get("text/plain", "")
    rich = set(bundle) - {"text/plain"}
    shell = InteractiveShell.instance() if InteractiveShell.initialized() else None
    if rich and shell is not None and type(shell.display_pub).__name__ != "DisplayPublisher":
        # A frontend that renders display data (ipykernel): send every type we have.
        from IPython.display import publish_display_data

        if prompt:
            bundle = {**bundle, "text/plain": f"{prompt} {text}"}
        publish_display_data(bundle)
        return
    print(labelled(prompt, text) if prompt else text, flush=True)


def show_error(target: int, verb: str, error: BaseException, colour: bool) -> None:
    """One kernel's failure: ``[0:execute]`` and the remote traceback."""
    print(_colour(f"[{target}:{verb}]", RED + BOLD, colour), file=sys.stderr)
    if isinstance(error, RemoteError):
        lines = "".join(error.traceback).rstrip("\n").splitlines()
        if lines:
            lines[-1] = _colour(lines[-1], RED, colour)
        print("\n".join(lines), file=sys.stderr, flush=True)
    else:
        print(_colour(f"{type(error).__name__}: {error}", RED, colour), file=sys.stderr)


def show_outputs(
    targets: list[int],
    outcomes: list[Any],
    *,
    streamed: bool,
    group: str = "engine",
    colour: bool = True,
    errors: bool = True,
) -> None:
    """Everything ``outcomes`` (ExecuteResults, or exceptions) did, kernel by kernel.

    With ``streamed`` the printed output was shown already, as it came. Otherwise it is
    grouped by ``engine`` (each kernel's output together, in target order), ``order``
    (each kernel's output together, in the order the kernels finished) or ``type``
    (all stdout, then all stderr). Results and (unless ``errors`` is false, for a
    caller that raises them) errors follow, in target order.
    """
    pairs = list(zip(targets, outcomes, strict=True))
    if not streamed:
        records = [(target, _record_of(outcome)) for target, outcome in pairs]
        records = [(t, r) for t, r in records if r is not None]
        if group == "order":
            records.sort(key=lambda pair: pair[1].completed)
        if group == "type":
            printed = [(t, r, name) for name in ("stdout", "stderr") for t, r in records]
        else:
            printed = [(t, r, name) for t, r in records for name in ("stdout", "stderr")]
        for target, record, name in printed:
            text = getattr(record, name)
            if text:
                print_stream(target, name, text)
    for target, outcome in pairs:
        if isinstance(outcome, BaseException):
            if errors:
                show_error(target, "execute", outcome, colour)
        else:
            show_result(target, outcome)


def _record_of(outcome: Any) -> Any:
    """The ExecuteResult behind an outcome: itself, or the one a RemoteError carries."""
    if isinstance(outcome, BaseException):
        return getattr(outcome, "result", None)
    return outcome


def progress_bar(total: int, desc: str, unit: str, widget: bool | None = None) -> Any:
    """A tqdm bar: its widget where ipywidgets can draw it (a notebook; ``widget``
    True or False decides instead), else its text bar."""
    if widget is None:
        widget = importlib.util.find_spec("ipywidgets") is not None
    if widget:
        from tqdm.auto import tqdm
    else:
        # tqdm.auto would fall back to this too, but warn that ipywidgets is missing.
        from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, leave=False)
