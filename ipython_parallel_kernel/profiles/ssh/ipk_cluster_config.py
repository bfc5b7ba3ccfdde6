# Kernels started over ssh on the hosts listed in this profile's `hosts` file:
#   ipk-cluster start --profile ssh      (then: ipk-cluster list / stop --profile ssh)
#
# As shipped it starts two kernels on this machine through `ssh localhost`, which
# needs a key that logs you in there without a prompt (ssh-keygen, then add the .pub
# to ~/.ssh/authorized_keys; check with: ssh -o BatchMode=yes localhost true).
#
# For a real cluster:
#   - list your machines in `hosts` (host, host:N, user@host, user@host:N);
#   - set kernel_command to how those machines start a kernel, if this Python is not
#     at the same path there (a shared file system, or the same venv on each);
#   - give ssh what it needs in ssh_args (a config file, a key); ipk-cluster stop uses
#     the same settings, so keep them here rather than on the command line.
# Each kernel listens on the address this machine reaches its host at and accepts
# clients from this machine only (and its own localhost): open those ports between
# the machines, or start the kernels with TLS (-- --tls-cert ... --tls-key ...).
import os
import shlex
import sys

c = get_config()  # noqa: F821

here = os.path.dirname(os.path.abspath(__file__))
c.Cluster.launcher = "ssh"
c.Cluster.n = 2  # dealt out over the slots of `hosts`, one per host per round
c.SSHLauncher.hosts = os.path.join(here, "hosts")
# The Python running ipk-cluster, which is at the same path on this very machine.
python = shlex.quote(sys.executable)
c.SSHLauncher.kernel_command = f"{python} -m ipython_parallel_kernel.apps.kernel"
# c.SSHLauncher.ssh_args = "-F ~/.ssh/cluster_config -i ~/.ssh/id_cluster"
# c.SSHLauncher.remote_dir = ".ipk-cluster"  # logs and connection files on each host
# c.SSHLauncher.ssh_timeout = 30.0
