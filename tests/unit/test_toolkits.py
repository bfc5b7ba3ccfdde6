"""The one table of GUI toolkits, and the places that take their names from it."""

from ipython_parallel_kernel.apps.kernel import KernelApp
from ipython_parallel_kernel.core.toolkits import GUI_CHOICES, TOOLKITS
from ipython_parallel_kernel.kernel.gui import TOOLKIT_LOOPS
from ipython_parallel_kernel.launchers.cluster import Cluster


def test_every_toolkit_has_an_event_loop_and_every_loop_an_entry():
    """The kernel's GUI loops and the table name the same toolkits."""
    assert set(TOOLKIT_LOOPS) == set(TOOLKITS)
    assert all(TOOLKIT_LOOPS[name].info is TOOLKITS[name] for name in TOOLKITS)


def test_the_apps_offer_exactly_the_tables_choices():
    """ipk-kernel --gui and ipk-cluster start --gui accept what the table lists, and none."""
    assert tuple(KernelApp.gui.values) == GUI_CHOICES == ("none", *TOOLKITS)
    assert tuple(Cluster.gui.values) == GUI_CHOICES


def test_a_missing_toolkit_is_not_installed():
    """installed() is False when a module of the toolkit cannot be found."""
    info = TOOLKITS["qt"]
    absent = type(info)("x", "Agg", ("no_such_module_anywhere.sub",), "nothing", "no hint")
    assert not absent.installed()
    assert "pip install" in info.install_hint
