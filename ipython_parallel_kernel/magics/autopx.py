"""``%autopx``: every cell runs on the active kernels, as if it began with ``%%px``.

An input transformer, run after IPython's own, rewrites each cell into a ``%%px`` call
(``%%px<suffix>`` for the magics of a target activated with a suffix); the ``%autopx``
that turns the mode off is left to run here.
"""

from __future__ import annotations

import re
from typing import Any


class AutoPx:
    """The ``%autopx<suffix>`` mode of one shell: on while its transformer is installed."""

    def __init__(self, shell: Any, suffix: str = "") -> None:
        self.shell = shell
        self.suffix = suffix
        # The toggle as typed, or as IPython's own transformers have rewritten it; \b
        # keeps %autopx from matching %autopx_even.
        name = re.escape(f"autopx{suffix}")
        self._toggle = re.compile(rf"\s*(%{name}\b|get_ipython\(\)\.run_line_magic\('{name}'\s*,)")

    @property
    def enabled(self) -> bool:
        """Whether cells are sent to the kernels."""
        return self.transform in self._transformers()

    def enable(self) -> None:
        """Send every following cell to the kernels."""
        if not self.enabled:
            self.shell.input_transformers_post.append(self.transform)

    def disable(self) -> None:
        """Run cells here again."""
        if self.enabled:
            self.shell.input_transformers_post.remove(self.transform)

    def transform(self, lines: list[str]) -> list[str]:
        """Rewrite a cell to run on the kernels, except the %autopx that turns it off."""
        source = "".join(lines)
        if not source.strip() or self._toggle.match(source):
            return lines
        return [f"get_ipython().run_cell_magic('px{self.suffix}', '', {source!r})\n"]

    def _transformers(self) -> list[Any]:
        # A shell without input transformers (not an InteractiveShell) has no mode to undo.
        return list(getattr(self.shell, "input_transformers_post", []))
