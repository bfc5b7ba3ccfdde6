"""The README is a test: every code block of README.md runs as written, in order.

Each block is one test, run in the README's order against one private home directory
(``~/.ipython`` inside it), as one user following the README would: console commands in
a shell with this interpreter's ``bin`` first on PATH, from the repository root; Python
blocks in one IPython session that lasts the whole README; each ``In [1]:`` block in a
new IPython session. What a block shows as output is checked on its stable parts (see
``readme_blocks``). Kernels the README leaves running are stopped at the end, by pid.
Blocks that use ``--gui`` run under the session's Xvfb. Run the module whole: like the
README's reader, a block relies on the ones before it.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import IPythonSession, require_toolkit, skip_or_fail, stop_group, stop_kernels_left
from readme_blocks import RUNNABLE, Block, Step, first_prompt, missing_lines, read_blocks

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
#: Longest a command or cell may run; the README's longest waits 10 s.
STEP_TIMEOUT = 60.0
#: How long shown output may take to appear after its command returned.
OUTPUT_TIMEOUT = 30.0

BLOCKS = read_blocks(README)

pytestmark = pytest.mark.slow
_NAMED_PORT = re.compile(r"127\.0\.0\.1(?:'\s*,\s*|:)(\d+)")


def named_ports(blocks: list[Block]) -> set[int]:
    """The fixed ports of 127.0.0.1 that the README's code uses."""
    ports = set()
    for block in blocks:
        if block.kind in ("python", "console", "ipython") and "skip" not in block.options:
            # A block that cannot be read fails its own test, saying why.
            with contextlib.suppress(ValueError):
                for step in block.steps():
                    ports.update(int(port) for port in _NAMED_PORT.findall(step.source))
    return ports - {0}


def check_port_free(port: int) -> None:
    """Fail, saying which port, if something on 127.0.0.1 holds it (TCP or UDP)."""
    for kind, protocol in ((socket.SOCK_STREAM, "TCP"), (socket.SOCK_DGRAM, "UDP")):
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
                continue
            except OSError:
                pass
        pytest.fail(
            f"{protocol} port {port} on 127.0.0.1 is taken, and the README's commands use it: "
            f"stop what holds it (ss -lntup 'sport = :{port}' names it)"
        )


class Printed:
    """Everything a session printed from one point on; calling it collects what is new."""

    def __init__(self, session: IPythonSession) -> None:
        self.session = session
        self.seen: list[str] = []

    def __call__(self) -> str:
        self.seen.append(self.session.poll())
        return "".join(self.seen)


class Reader:
    """One user following the README: a private home, their shells and IPython sessions."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.ipython_dir = home / ".ipython"
        self.logs = home.parent / "logs"
        self.logs.mkdir()
        venv_bin = str(Path(sys.executable).parent)
        self.env = {
            **os.environ,
            "HOME": str(home),
            "IPYTHONDIR": str(self.ipython_dir),
            "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
        }
        self.python: IPythonSession | None = None
        self.ipython: IPythonSession | None = None
        self.groups: list[int] = []
        self.printed: Callable[[], str] = str

    def run(self, block: Block) -> None:
        """Run a block, checking what it shows; fails naming the README's line."""
        steps = block.steps()
        if block.kind == "console":
            for step in steps:
                self.run_command(step)
        elif block.kind == "python":
            self.python = self.python or self.session("python")
            self.run_python(self.python, steps)
        elif block.kind == "ipython":
            if self.ipython is None or first_prompt(block) == 1:
                if self.ipython is not None:
                    self.ipython.close()
                self.ipython = self.session(f"ipython-{block.line}")
            for step in steps:
                self.run_ipython_cell(self.ipython, step)
        elif block.kind == "output":
            self.wait_for_output(steps[0])

    def session(self, name: str) -> IPythonSession:
        return IPythonSession(sys.executable, self.env, ROOT, self.logs / f"{name}.log")

    def run_command(self, step: Step) -> None:
        log_path = self.logs / f"line-{step.line}.log"
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                ["bash", "-c", step.source],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.groups.append(process.pid)
        try:
            process.wait(STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            stop_group(process.pid)
            pytest.fail(
                f"README.md:{step.line}: `{step.source}` still running after {STEP_TIMEOUT} s"
            )
        self.printed = log_path.read_text
        assert process.returncode == 0, (
            f"README.md:{step.line}: `{step.source}` exited with status {process.returncode}:\n"
            f"{log_path.read_text()}"
        )
        self.wait_for_output(step)

    def run_python(self, session: IPythonSession, steps: list[Step]) -> None:
        self.printed = printed = Printed(session)
        for step in steps:
            answer = session.run_cell(step.source, step.value, STEP_TIMEOUT)
            printed.seen.append(answer["output"])
            where = f"README.md:{step.line}: {step.source.splitlines()[0]}"
            if step.raises:
                assert step.raises in answer["error_types"], (
                    f"{where}: should raise {step.raises}, got {answer['error'] or answer['value']}"
                )
                continue
            assert answer["success"], f"{where}\n{answer['error']}\n{answer['output']}"
            if step.value is not None:
                assert answer["equal"], f"{where}: is {answer['value']}, README says {step.value}"

    def run_ipython_cell(self, session: IPythonSession, step: Step) -> None:
        answer = session.run_cell(step.source, timeout=STEP_TIMEOUT)
        self.printed = printed = Printed(session)
        printed.seen.append(answer["output"])
        where = f"README.md:{step.line}: In [...]: {step.source.splitlines()[0]}"
        if step.shows_failure():
            assert not answer["success"], f"{where}: should fail, as shown; it did not"
        else:
            assert answer["success"], f"{where}\n{answer['error']}\n{answer['output']}"
        self.wait_for_output(step)

    def wait_for_output(self, step: Step) -> None:
        """Wait, bounded, until what the step shows has been printed."""
        deadline = time.monotonic() + OUTPUT_TIMEOUT
        while True:
            text = self.printed()
            missing = missing_lines(step.shown, text, str(self.home))
            if not missing:
                return
            if time.monotonic() > deadline:
                pytest.fail(
                    f"README.md:{step.line}: not printed within {OUTPUT_TIMEOUT} s: "
                    f"{missing}\nprinted:\n{text}"
                )
            time.sleep(0.1)

    def close(self) -> None:
        """End every session, then stop what the README left running."""
        for session in (self.python, self.ipython):
            if session is not None:
                session.close()
        for pgid in self.groups:
            stop_group(pgid)
        stop_kernels_left(self.ipython_dir)


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reader]:
    """The user following the README, with the ports it names free."""
    for port in sorted(named_ports(BLOCKS)):
        check_port_free(port)
    home = tmp_path_factory.mktemp("readme") / "home"
    home.mkdir()
    person = Reader(home)
    try:
        yield person
    finally:
        person.close()


def check_run_by(block: Block, script: Path) -> None:
    """Every command of a block marked ``run-by=FILE`` is one that FILE runs."""
    lines = [line.strip() for line in script.read_text().splitlines()]
    for step in block.steps():
        command = re.sub(r"\s+#.*", "", step.source).strip()
        assert command in lines or f"exec {command}" in lines, (
            f"README.md:{step.line}: {command!r} is said to be run by {script.name}, "
            f"which does not run it"
        )


def _param(block: Block) -> Any:
    code = "\n".join(re.sub(r"\s#.*", "", line) for line in block.lines)
    toolkits = sorted(set(re.findall(r"--gui (\w+)", code)))
    marks = [pytest.mark.gui] if toolkits else []
    return pytest.param(
        block, toolkits, id=f"line{block.line}-{block.kind or 'unmarked'}", marks=marks
    )


@pytest.mark.parametrize(("block", "toolkits"), [_param(b) for b in BLOCKS if b.kind != "text"])
def test_block(block: Block, toolkits: list[str], reader: Reader, request: pytest.FixtureRequest):
    """This README block runs as written and prints what it shows."""
    assert block.kind in RUNNABLE, (
        f"README.md:{block.line}: a ```{block.kind} block the README test cannot run: fence "
        f"code as python, console or ipython, output as output, and anything else as text"
    )
    if "run-by" in block.options:
        check_run_by(block, ROOT / block.options["run-by"])
        return
    if "requires" in block.options and not (ROOT / block.options["requires"]).exists():
        needed = block.options["requires"]
        skip_or_fail(f"README.md:{block.line} needs {needed} at the repository's root")
    for toolkit in toolkits:
        require_toolkit(toolkit)
    if toolkits:
        request.getfixturevalue("display")
        reader.env["DISPLAY"] = os.environ["DISPLAY"]
    reader.run(block)
