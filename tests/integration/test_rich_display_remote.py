"""Rich output made on a real kernel arrives at the client as display data."""

from __future__ import annotations

import base64

from conftest import skip_or_fail


def test_kernel_starts_without_ipython_or_matplotlib(rk):
    """A fresh kernel has loaded neither IPython nor matplotlib before user code does."""
    assert rk.execute("import sys; 'IPython' in sys.modules").text == "False"
    assert rk.execute("'matplotlib' in sys.modules").text == "False"


def test_display_html_arrives(rk):
    """display(HTML(...)) in the command that first imports IPython reaches the client."""
    record = rk.execute("from IPython.display import HTML, display; display(HTML('<i>hi</i>'))")
    assert record.displays[0]["text/html"] == "<i>hi</i>"
    assert rk.execute("import sys; 'matplotlib' in sys.modules").text == "False"


def test_matplotlib_figure_arrives_as_png(rk):
    """A pyplot figure drawn on the kernel arrives as one base64 PNG."""
    if rk.execute("import importlib.util; importlib.util.find_spec('matplotlib')").text == "None":
        skip_or_fail("matplotlib is not installed")
    record = rk.execute(
        "import matplotlib\n"
        "matplotlib.use('Agg')\n"
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2])"
    )
    assert record.error is None
    assert len(record.displays) == 1
    assert base64.b64decode(record.displays[0]["image/png"]).startswith(b"\x89PNG")
