"""README.md as steps to run: its fenced blocks, each split into what a user types.

The fence's info string says what a block is; its first word is the kind:

- ``python``: code typed into one IPython session that lasts the whole README. Each
  top-level statement (statements sharing a line go together) is one cell. A trailing
  comment ``# ... -> VALUE`` says the cell's value equals the literal VALUE; a comment
  starting ``# raises NAME`` says the cell raises NAME (or a subclass).
- ``console``: ``$ COMMAND`` lines run in a shell, each followed by what it prints.
- ``ipython``: an IPython session, ``In [N]:`` and ``...:`` lines followed by what the
  cell prints. A block starting at ``In [1]:`` is a new session.
- ``output``: what the code block before it prints, possibly later (e.g. from a thread).
- ``text``: not code (a layout, a table of figures); shown only.

Further words are options, ``key=value`` in shell quoting: ``run-by=FILE`` marks a console
block that is not run here because FILE runs its commands (the test suite's own command,
which CI's script runs); the test checks that FILE really does.

Shown output is compared on its stable parts (``stable``): addresses, pids, the home
directory and colours are ignored, and a line ``...`` stands for lines left out.
"""

from __future__ import annotations

import ast
import io
import re
import shlex
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

RUNNABLE = ("python", "console", "ipython", "output")
KINDS = (*RUNNABLE, "text")
ELISION = "..."

_FENCE = re.compile(r"^(`{3,})(.*)$")
_IN_PROMPT = re.compile(r"^In \[(\d+)\]: ?(.*)$")
_CONTINUATION = re.compile(r"^\s+\.\.\.: ?(.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ADDRESS = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}[:-]\d+\b")
_PIDS = re.compile(r"\bpids? \d+(?:, \d+)*")
_POINTER = re.compile(r"\b0x[0-9a-f]+\b")
_SECTION = re.compile(r"^#{1,6} ")


@dataclass
class Step:
    """One thing a user types, and what the README says comes of it."""

    source: str
    line: int
    shown: list[str] = field(default_factory=list)
    value: str | None = None
    raises: str | None = None

    def shows_failure(self) -> bool:
        """Whether the shown output is an error (the README means the step to fail)."""
        return any(re.match(r"^\[\d+:\w+\]", s) or re.search(r"\w+Error\b", s) for s in self.shown)


@dataclass
class Block:
    """A fenced block of README.md."""

    kind: str
    options: dict[str, str]
    lines: list[str]
    line: int
    section: str

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def steps(self) -> list[Step]:
        """The block as steps, in order; ValueError if it cannot be read as its kind."""
        if self.kind == "python":
            return python_steps(self.lines, self.line + 1)
        if self.kind == "console":
            return console_steps(self.lines, self.line + 1)
        if self.kind == "ipython":
            return ipython_steps(self.lines, self.line + 1)
        if self.kind == "output":
            return [Step("", self.line + 1, [line for line in self.lines if line.strip()])]
        raise ValueError(f"a {self.kind!r} block has no steps")


def read_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, in order."""
    blocks: list[Block] = []
    section = ""
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        if _SECTION.match(lines[i]):
            section = lines[i].lstrip("#").strip()
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, info = opening.groups()
        end = next(
            (j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(fence)), None
        )
        if end is None:
            raise ValueError(f"{path.name}:{i + 1}: a fenced block is never closed")
        words = shlex.split(info)
        kind = words[0] if words else ""
        options = dict(word.partition("=")[::2] for word in words[1:])
        blocks.append(Block(kind, options, lines[i + 1 : end], i + 1, section))
        i = end + 1
    return blocks


def python_steps(lines: list[str], first_line: int) -> list[Step]:
    """Top-level statements as cells, with the value or exception their comment names."""
    source = "\n".join(lines) + "\n"
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise ValueError(f"line {first_line + (e.lineno or 1) - 1}: {e.msg}") from None
    comments = {
        token.start[0]: token.string.lstrip("#").strip()
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }
    groups: list[list[int]] = []
    for node in tree.body:
        start, end = node.lineno, node.end_lineno or node.lineno
        if groups and start <= groups[-1][1]:
            groups[-1][1] = max(groups[-1][1], end)
        else:
            groups.append([start, end])
    steps = []
    for start, end in groups:
        comment = comments.get(end, "")
        step = Step("\n".join(lines[start - 1 : end]), first_line + start - 1)
        if comment.startswith("raises "):
            step.raises = comment.split()[1].strip(".,:;")
        elif "-> " in comment:
            step.value = comment.rsplit("-> ", 1)[1].strip()
            try:
                ast.literal_eval(step.value)
            except (ValueError, SyntaxError):
                raise ValueError(
                    f"line {step.line}: {step.value!r} after '->' is not a Python literal"
                ) from None
        steps.append(step)
    return steps


def console_steps(lines: list[str], first_line: int) -> list[Step]:
    """``$ COMMAND`` lines, each with the output lines after it."""
    steps: list[Step] = []
    for offset, line in enumerate(lines):
        if line.startswith("$ "):
            steps.append(Step(line[2:], first_line + offset))
        elif not steps:
            raise ValueError(f"line {first_line + offset}: output before any '$ ' command")
        elif line.strip():
            steps[-1].shown.append(line)
    return steps


def ipython_steps(lines: list[str], first_line: int) -> list[Step]:
    """``In [N]:`` cells (with their ``...:`` lines), each with the output after it."""
    steps: list[Step] = []
    for offset, line in enumerate(lines):
        prompt = _IN_PROMPT.match(line)
        more = _CONTINUATION.match(line)
        if prompt:
            steps.append(Step(prompt.group(2), first_line + offset))
        elif not steps:
            raise ValueError(f"line {first_line + offset}: output before any 'In [N]:' prompt")
        elif more and not steps[-1].shown:
            steps[-1].source += "\n" + more.group(1)
        elif line.strip():
            steps[-1].shown.append(line)
    return steps


def first_prompt(block: Block) -> int:
    """The number of the block's first ``In [N]:`` prompt."""
    for line in block.lines:
        prompt = _IN_PROMPT.match(line)
        if prompt:
            return int(prompt.group(1))
    raise ValueError("no 'In [N]:' prompt")


def stable(line: str, home: str | None = None) -> str:
    """What of an output line must match: no colours, addresses, pids or home path."""
    line = _ANSI.sub("", line)
    if home:
        line = line.replace(home.rstrip("/") + "/", "~/")
    line = _ADDRESS.sub("ADDRESS", line)
    line = _PIDS.sub("pid N", line)
    line = _POINTER.sub("0x0", line)
    return " ".join(line.split())


def missing_lines(shown: list[str], printed: str, home: str | None = None) -> list[str]:
    """The shown lines (less elisions) that are not among the printed ones."""
    available = [stable(line, home) for line in printed.splitlines()]
    missing = []
    for line in shown:
        if line.strip() == ELISION:
            continue
        want = stable(line, home)
        if want in available:
            available.remove(want)
        else:
            missing.append(line)
    return missing
