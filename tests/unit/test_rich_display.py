"""Rich output on the engine: display() calls and matplotlib figures become display data."""

from __future__ import annotations

import base64
import io
import sys
from collections.abc import Iterator

import pytest
from conftest import skip_or_fail
from IPython.core.interactiveshell import InteractiveShell

from ipython_parallel_kernel.kernel.capture import CapturedStream
from ipython_parallel_kernel.kernel.engine import Engine


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """An engine with captured streams (StringIO fallbacks).

    A real IPython shell another test left in this process is hidden meanwhile: the
    kernel never replaces one, and it would receive the display calls instead.
    """
    monkeypatch.setattr(InteractiveShell, "_instance", None)
    streams = (CapturedStream("stdout", io.StringIO()), CapturedStream("stderr", io.StringIO()))
    yield Engine(streams=streams)


@pytest.fixture
def pyplot() -> None:
    """matplotlib, with the Agg backend a kernel without a display gets."""
    try:
        import matplotlib
    except ImportError:
        skip_or_fail("matplotlib is not installed")
    matplotlib.use("Agg")


def png_bytes(data: str) -> bytes:
    return base64.b64decode(data, validate=True)


def test_display_html_is_recorded(engine: Engine) -> None:
    """display(HTML(...)) gives a bundle with text/html, not printed output."""
    record = engine.execute("from IPython.display import HTML, display; display(HTML('<b>x</b>'))")
    assert record.error is None
    assert record.displays[0]["text/html"] == "<b>x</b>"
    assert "text/plain" in record.displays[0]
    assert record.stdout == ""


def test_two_displays_keep_their_order(engine: Engine) -> None:
    """Each display() call is one bundle, in the order made."""
    record = engine.execute(
        "from IPython.display import HTML, display\n"
        "display(HTML('<p>one</p>'))\n"
        "display(HTML('<p>two</p>'))"
    )
    assert [d["text/html"] for d in record.displays] == ["<p>one</p>", "<p>two</p>"]


def test_markdown_is_recorded(engine: Engine) -> None:
    """A Markdown object is displayed as text/markdown."""
    record = engine.execute(
        "from IPython.display import Markdown, display; display(Markdown('*m*'))"
    )
    assert record.displays[0]["text/markdown"] == "*m*"


def test_pyplot_figure_is_shown_once_at_end_of_command(engine: Engine, pyplot: None) -> None:
    """A figure drawn with pyplot becomes one image/png bundle, then is closed."""
    record = engine.execute("import matplotlib.pyplot as plt; plt.plot([1, 3, 2])")
    assert record.error is None
    assert len(record.displays) == 1
    assert png_bytes(record.displays[0]["image/png"]).startswith(b"\x89PNG")
    assert record.displays[0]["text/plain"].startswith("<Figure")
    assert engine.execute("plt.get_fignums()").result["text/plain"] == "[]"
    assert engine.execute("x = 1").displays == []


def test_figure_as_result_is_png_and_not_shown_twice(engine: Engine, pyplot: None) -> None:
    """A Figure as trailing expression gives image/png in the result, and no extra display."""
    record = engine.execute(
        "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1])\nfig"
    )
    assert record.error is None
    assert png_bytes(record.result["image/png"]).startswith(b"\x89PNG")
    assert record.displays == []


def test_print_still_goes_to_stdout(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """print() output is captured as stdout, alongside the display data."""
    # As capture.install() does in a kernel; here in the test, as pytest's own capture
    # sets sys.stdout again when the test starts.
    assert engine.streams is not None
    monkeypatch.setattr(sys, "stdout", engine.streams[0])
    record = engine.execute(
        "from IPython.display import display, HTML\nprint('hi')\ndisplay(HTML('h'))"
    )
    assert record.stdout == "hi\n"
    assert record.displays[0]["text/html"] == "h"


def test_command_without_display_has_none(engine: Engine) -> None:
    """A command that displays nothing has an empty list."""
    assert engine.execute("a = 1").displays == []


def test_html_as_result_is_text_html(engine: Engine) -> None:
    """An HTML object as trailing expression goes to the result, as text/html."""
    record = engine.execute("from IPython.display import HTML; HTML('<i>r</i>')")
    assert record.result is not None and record.result["text/html"] == "<i>r</i>"
    assert record.displays == []


def test_binary_display_data_is_base64(engine: Engine) -> None:
    """Bytes published as display data are base64 strings, as Jupyter sends them."""
    record = engine.execute(
        "from IPython.display import publish_display_data\n"
        "publish_display_data({'image/png': b'\\x89PNG', 'text/plain': 'p'})"
    )
    assert record.displays == [{"image/png": "iVBORw==", "text/plain": "p"}]


def test_update_display_replaces_its_bundle(engine: Engine) -> None:
    """Updating a display made in the same command replaces it in place."""
    record = engine.execute(
        "from IPython.display import display\n"
        "handle = display('old', display_id=True)\n"
        "display('other')\n"
        "handle.update('new')"
    )
    assert [d["text/plain"] for d in record.displays] == ["'new'", "'other'"]


def test_clear_output_drops_earlier_bundles(engine: Engine) -> None:
    """clear_output() forgets what the command displayed before it."""
    record = engine.execute(
        "from IPython.display import clear_output, display\n"
        "display('gone'); clear_output(); display('kept')"
    )
    assert [d["text/plain"] for d in record.displays] == ["'kept'"]


def test_shell_is_visible_only_while_a_command_runs(engine: Engine) -> None:
    """IPython's shell singleton is the display shell during a command (one that does
    not call get_ipython(), which would make the full shell), and None between commands."""
    from IPython import get_ipython

    record = engine.execute(
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "type(InteractiveShell.instance()).__name__"
    )
    assert record.result == {"text/plain": "'DisplayShell'"}
    assert get_ipython() is None


def test_a_command_calling_get_ipython_gets_the_kernel_shell(engine: Engine) -> None:
    """IPython's get_ipython(), called by a command, is the shell that runs magics (it
    replaces the display shell, attached as the command began), and None afterwards."""
    from IPython import get_ipython

    engine.execute("from IPython.display import display; display(1)")
    record = engine.execute(
        "from IPython import get_ipython\n"
        "get_ipython().run_line_magic('precision', '2')\n"
        "display(3.14159)\n"
        "type(get_ipython()).__name__"
    )
    assert record.error is None
    assert record.result == {"text/plain": "'KernelShell'"}
    assert record.displays == [{"text/plain": "3.14"}]
    assert get_ipython() is None


@pytest.mark.parametrize(
    "source", ["5", "2**70", "1.5", "1j", "True", "'text'", "'a\\nb'", "b'\\x00'", "'x' * 100"]
)
def test_numbers_and_strings_display_as_ipython_would(engine: Engine, source: str) -> None:
    """A number's or string's result, formatted without IPython's formatter, is exactly
    what that formatter gives."""
    from IPython.core.formatters import DisplayFormatter

    value = eval(source)
    expected, _ = DisplayFormatter().format(value)
    assert engine.execute(source).result == expected


def test_printers_registered_for_builtin_types_are_used(engine: Engine) -> None:
    """Printers registered for int (a richer type, or text/plain itself) and %precision
    for floats change a result's display data, as in IPython."""
    engine.execute(
        "from IPython import get_ipython\nformatters = get_ipython().display_formatter.formatters"
    )
    assert engine.execute("7").result == {"text/plain": "7"}
    engine.execute("formatters['text/latex'].for_type(int, lambda v: f'${v}$')")
    assert engine.execute("7").result == {"text/plain": "7", "text/latex": "$7$"}
    engine.execute("formatters['text/plain'].for_type(int, lambda v, p, c: p.text(f'int {v}'))")
    assert engine.execute("8").result["text/plain"] == "int 8"
    engine.execute("formatters['text/plain'].float_format = '%.2f'")
    assert engine.execute("3.14159").result == {"text/plain": "3.14"}
    assert engine.execute("'s'").result == {"text/plain": "'s'"}


def test_a_subclass_of_a_builtin_keeps_its_own_display(engine: Engine) -> None:
    """Only exact builtin types are formatted the short way: a subclass's _repr_html_
    is honoured."""
    engine.execute("class Tagged(int):\n    def _repr_html_(self):\n        return '<b>t</b>'")
    assert engine.execute("Tagged(3)").result == {"text/plain": "3", "text/html": "<b>t</b>"}
