"""IPython syntax in commands: which sources need IPython, and the Python they become.

A kernel runs ``%timeit f(x)``, ``%%timeit`` cells, ``!hostname``, ``files = !ls`` and
``np?`` as IPython does: IPython's own input transformers turn such a source into
Python that calls ``get_ipython()`` (``get_ipython().run_line_magic('timeit', 'f(x)')``),
which the engine runs with an IPython shell whose namespace is its own.

Plain Python must not pay for any of it (kernels start by the dozen, and most commands
are plain Python): this module imports nothing of IPython. A source is transformed only
when it is not Python (it fails to compile) and has one of the marks the transformers
look for; the engine's compile cache then keeps the result, so a command sent again
(``%px %timeit`` in a loop) is not transformed again. Python that already calls
``get_ipython()`` (what ``%autopx`` sends: the client's IPython has transformed the
cell) needs the shell too, and gets it, without being transformed.

>>> may_be_ipython("%timeit f(x)"), may_be_ipython("a = (")
(True, False)
>>> to_python("!hostname")
"get_ipython().system('hostname')\\n"
"""

from __future__ import annotations

import re
import sys
from typing import Any

#: What IPython's transformers act on: an escape at the start of a line (``%magic``,
#: ``%%cell_magic``, ``!cmd``, ``?obj``, and the autocall escapes ``,`` ``;`` ``/``), a
#: help ``?`` at its end, ``x = !cmd`` or ``x = %magic``, and pasted prompts (``>>>``,
#: ``In [1]:``, ``...``).
_MARKS = re.compile(
    r"^[ \t]*(?:[%!?,;/]|>>>|\.\.\.|In \[\d+\]:)"
    r"|\?[ \t]*$"
    r"|=[ \t]*[%!]",
    re.MULTILINE,
)
_CALLS_SHELL = re.compile(r"\bget_ipython\s*\(")

_transformer: Any = None  # IPython's TransformerManager, made on first use


def may_be_ipython(source: str) -> bool:
    """Whether ``source`` has a mark of IPython syntax: worth transforming when it is
    not valid Python (valid Python is never transformed)."""
    return _MARKS.search(source) is not None


def calls_shell(python: str) -> bool:
    """Whether Python code calls ``get_ipython()``, so needs the IPython shell to run."""
    return _CALLS_SHELL.search(python) is not None


def to_python(source: str) -> str:
    """``source`` as IPython turns it into Python (imports IPython's transformers)."""
    global _transformer
    if _transformer is None:
        from IPython.core.inputtransformer2 import TransformerManager

        _transformer = TransformerManager()
    python: str = _transformer.transform_cell(source)
    return python


def is_usage_error(exc: BaseException) -> bool:
    """Whether ``exc`` is IPython's ``UsageError`` (a magic's "wrong input"), shown as
    its message alone; never imports IPython."""
    errors = sys.modules.get("IPython.core.error")
    return errors is not None and isinstance(exc, errors.UsageError)
