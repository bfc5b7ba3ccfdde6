"""How the README test reads Markdown: blocks, steps, expectations, stable output."""

from __future__ import annotations

from pathlib import Path

import pytest
from readme_blocks import Block, missing_lines, read_blocks, stable

MARKDOWN = """# Title

## Section one

```console requires=.venv
$ ipk-kernel &
ipk-kernel ready: 127.0.0.1:10105 pid 4242
```

```python
x = 1; y = 2
x + y                  # three -> 3
1/0                    # raises ZeroDivisionError, as shown
```

```
unmarked
```

## Section two

```ipython
In [1]: %%px -t 1
   ...: a * 3
Out[1:3]: 15
In [2]: %px 1/0
[0:execute] 127.0.0.1:41023
...
```

```text skip="not code, a table"
| a | b |
```
"""


@pytest.fixture
def blocks(tmp_path: Path) -> list[Block]:
    """The blocks of MARKDOWN."""
    path = tmp_path / "README.md"
    path.write_text(MARKDOWN)
    return read_blocks(path)


def test_blocks_kinds_options_and_sections(blocks):
    """Each fence gives its kind (first word), its options and the section it is in."""
    assert [b.kind for b in blocks] == ["console", "python", "", "ipython", "text"]
    assert blocks[0].options == {"requires": ".venv"}
    assert blocks[4].options == {"skip": "not code, a table"}
    assert [b.section for b in blocks] == ["Section one"] * 3 + ["Section two"] * 2
    assert blocks[0].line == 5


def test_an_unclosed_fence_is_an_error(tmp_path):
    """A fence left open is reported with its line, not read as the rest of the file."""
    path = tmp_path / "README.md"
    path.write_text("text\n```python\nx = 1\n")
    with pytest.raises(ValueError, match=r"README\.md:2: a fenced block is never closed"):
        read_blocks(path)


def test_python_steps_group_statements_and_read_expectations(blocks):
    """Statements sharing a line are one cell; '-> VALUE' and 'raises NAME' are read."""
    steps = blocks[1].steps()
    assert steps[0].source == "x = 1; y = 2"
    assert [(s.line, s.value, s.raises) for s in steps] == [
        (11, None, None),
        (12, "3", None),
        (13, None, "ZeroDivisionError"),
    ]


def test_a_value_that_is_not_a_literal_is_an_error():
    """'-> something' that Python cannot read as a literal is reported with its line."""
    block = Block("python", {}, ["f()  # -> a list"], 1, "")
    with pytest.raises(ValueError, match=r"line 2: 'a list' after '->' is not a Python literal"):
        block.steps()


def test_console_and_ipython_steps_keep_their_output(blocks):
    """'$ ' and 'In [N]:' lines are steps; the lines after them are what they show."""
    (command,) = blocks[0].steps()
    assert command.source == "ipk-kernel &"
    assert command.shown == ["ipk-kernel ready: 127.0.0.1:10105 pid 4242"]
    cell, failing = blocks[3].steps()
    assert cell.source == "%%px -t 1\na * 3"
    assert cell.shown == ["Out[1:3]: 15"] and not cell.shows_failure()
    assert failing.shows_failure()


def test_output_lines_compare_on_their_stable_parts():
    """Addresses, pids, pointers, colours and the home directory do not count; '...' skips."""
    home = "/tmp/home"
    assert stable("\x1b[32m[127.0.0.1:41023] In [3]\x1b[0m", home) == "[ADDRESS] In [3]"
    assert stable("file /tmp/home/.ipython/ipk-kernel-127.0.0.1-41023.json", home) == (
        "file ~/.ipython/ipk-kernel-ADDRESS.json"
    )
    assert stable("stopped (pids 12, 13)  <Line2D at 0x7f3a>") == "stopped (pid N) <Line2D at 0x0>"
    printed = "[stdout:1] 10\n[stdout:0] 10\n"
    assert missing_lines(["[stdout:0] 10", "...", "[stdout:1] 10"], printed) == []
    assert missing_lines(["[stdout:0] 10", "[stdout:0] 10"], printed) == ["[stdout:0] 10"]
    assert missing_lines(["[stdout:0] 11"], printed) == ["[stdout:0] 11"]
