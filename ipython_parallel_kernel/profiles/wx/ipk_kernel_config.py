# Kernels of the wx profile: wx's event loop, user code run inside it.
c = get_config()  # noqa: F821

c.KernelApp.gui = "wx"
c.KernelApp.ip = "127.0.0.1"
# Clients other than this machine, as addresses or networks (CIDR):
# c.KernelApp.allow = ["10.0.0.0/8"]
