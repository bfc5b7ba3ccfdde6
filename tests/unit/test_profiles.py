"""The shipped profiles: each loads as traitlets config, and first use copies it into
the IPython profile without ever replacing the user's own files."""

from __future__ import annotations

import pytest
from traitlets.config.loader import PyFileConfigLoader

from ipython_parallel_kernel.core.profiles import (
    SHIPPED_PROFILES,
    install_shipped,
    is_shipped,
    shipped_profiles,
)
from ipython_parallel_kernel.launchers.cluster import Cluster

CONFIG_FILES = sorted(SHIPPED_PROFILES.glob("*/*.py"))


def test_the_shipped_profiles():
    """default and lan, a cluster profile per way of running kernels, and wx."""
    names = shipped_profiles()
    assert {"default", "lan", "wx"} <= set(names)
    assert all(is_shipped(name) for name in names) and not is_shipped("lna")


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_file_loads(path):
    """Each file is commented config that traitlets loads without error."""
    config = PyFileConfigLoader(path.name, path=str(path.parent)).load_config()
    assert all(section.endswith(("App", "Cluster", "Launcher")) for section in config), config
    assert path.read_text().lstrip().startswith("#"), f"{path} does not say what it is for"


def test_first_use_copies_and_never_replaces(ipython_dir):
    """install_shipped copies what is missing; a file the user changed stays theirs."""
    directory = install_shipped("lan")
    assert directory == ipython_dir / "profile_lan"
    shipped = {p.name for p in (SHIPPED_PROFILES / "lan").glob("*.py")}
    assert {p.name for p in directory.glob("*.py")} == shipped
    mine = directory / "ipk_cluster_config.py"
    mine.write_text("c = get_config()\nc.Cluster.n = 7\n")
    install_shipped("lan")
    assert "n = 7" in mine.read_text()
    assert Cluster.from_profile("lan").n == 7
    assert install_shipped("nothing-shipped") == ipython_dir / "profile_nothing-shipped"
    assert not (ipython_dir / "profile_nothing-shipped").exists()


def test_a_shipped_cluster_profile_applies_on_first_use(ipython_dir):
    """Cluster.from_profile('wx') reads the wx profile's settings on its first use."""
    assert Cluster.from_profile("wx").gui == "wx"
    assert (ipython_dir / "profile_wx" / "ipk_cluster_config.py").is_file()
