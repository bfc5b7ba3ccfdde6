# A cluster of wx kernels: each runs wx's event loop, so windows and WXAgg figures
# made by %px stay live while the kernel takes more commands.
#
#   ipk-cluster start --profile wx        # or, in IPython: %kernel start --profile wx
#
# Works as shipped on one machine with wxPython installed (on Debian and Ubuntu:
# apt install python3-wxgtk4.0) and a display ($DISPLAY, or Xvfb for none).
c = get_config()  # noqa: F821

c.Cluster.gui = "wx"
c.Cluster.n = 2
# Windows take a moment to come up on a slow X server:
c.Cluster.timeout = 60.0
# For kernels on other machines, use the ssh launcher and each host's display, e.g.
# c.Cluster.launcher = "ssh" with c.SSHLauncher.hosts (see the ssh profile).
