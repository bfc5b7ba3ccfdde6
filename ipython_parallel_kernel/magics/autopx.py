"""``%autopx``: every cell runs on the active kernels, as if it began with ``%%px``.

An input transformer, run after IPython's own, rewrites each cell into a ``%%px`` call;
the ``%autopx`` that turns the mode off is left to run here.
"""

from __future__ import annotations

from typing import Any


def autopx_transformer(lines: list[str]) -> list[str]:
    """Rewrite a cell to run on the kernels, except the %autopx that turns it off."""
    source = "".join(lines)
    if not source.strip() or source.lstrip().startswith(
        ("%autopx", "get_ipython().run_line_magic('autopx'")
    ):
        return lines
    return [f"get_ipython().run_cell_magic('px', '', {source!r})\n"]


class AutoPx:
    """The ``%autopx`` mode of one shell: on while its transformer is installed."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell

    @property
    def enabled(self) -> bool:
        """Whether cells are sent to the kernels."""
        return autopx_transformer in self._transformers()

    def enable(self) -> None:
        """Send every following cell to the kernels."""
        if not self.enabled:
            self.shell.input_transformers_post.append(autopx_transformer)

    def disable(self) -> None:
        """Run cells here again."""
        if self.enabled:
            self.shell.input_transformers_post.remove(autopx_transformer)

    def _transformers(self) -> list[Any]:
        # A shell without input transformers (not an InteractiveShell) has no mode to undo.
        return list(getattr(self.shell, "input_transformers_post", []))
