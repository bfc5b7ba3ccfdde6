"""The GUI toolkits a kernel can run (``--gui NAME``), as data: no toolkit is imported.

One table for every place that names them: the kernel app and ``ipk-cluster``
(their ``--gui`` choices), the ``%kernel start --gui`` magic, the kernel's GUI loops
(``kernel/gui.py``, which imports the modules), the tests and the benchmark.

>>> TOOLKITS["qt"].modules
('PySide6.QtWidgets', 'qreactor')
>>> GUI_CHOICES
('none', 'wx', 'tk', 'qt')
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class ToolkitInfo:
    """What a kernel needs to run one toolkit's event loop, and what to tell a user
    who lacks it."""

    name: str
    #: matplotlib backend drawing into this toolkit's windows.
    backend: str
    #: Modules the toolkit takes, all importable where it is installed.
    modules: tuple[str, ...]
    #: What those modules are called for users.
    needs: str
    #: How to get them.
    install_hint: str

    def installed(self) -> bool:
        """Whether this interpreter can find every module the toolkit takes."""
        try:
            return all(importlib.util.find_spec(module) is not None for module in self.modules)
        except ModuleNotFoundError:  # a dotted name whose package is absent
            return False


TOOLKITS: dict[str, ToolkitInfo] = {
    info.name: info
    for info in (
        ToolkitInfo(
            "wx",
            "WXAgg",
            ("wx",),
            "wxPython",
            "on Debian/Ubuntu: sudo apt install python3-wxgtk4.0, then use /usr/bin/python3 "
            "or a venv made with --system-site-packages; on macOS or Windows: "
            "pip install wxPython",
        ),
        ToolkitInfo(
            "tk",
            "TkAgg",
            ("tkinter",),
            "tkinter",
            "on Debian/Ubuntu: sudo apt install python3-tk; elsewhere use a Python built "
            "with Tk (python.org installers have it)",
        ),
        ToolkitInfo(
            "qt",
            "QtAgg",
            ("PySide6.QtWidgets", "qreactor"),
            "PySide6 and qt-reactor",
            "install them with: pip install 'ipython_parallel_kernel[qt]'",
        ),
    )
}

#: Every value ``--gui`` takes: no toolkit, or one of the table's.
GUI_CHOICES: tuple[str, ...] = ("none", *TOOLKITS)
