# Configuration for ipk-kernel in this profile. Every flag of `ipk-kernel --help-all`
# can be set here as c.KernelApp.<name>; the command line overrides this file.
c = get_config()  # noqa: F821

c.KernelApp.ip = "127.0.0.1"
c.KernelApp.port = 10105
# Clients other than this machine, as addresses or networks (CIDR):
# c.KernelApp.allow = ["10.0.0.0/8"]
