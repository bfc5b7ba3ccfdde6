# Kernels as the ranks of one MPI world: `ipk-cluster start --profile mpi -n 4`.
#
# One `mpiexec` runs every kernel; in %px code `from mpi4py import MPI` gives a
# COMM_WORLD whose rank 0 is target 0. Needs an MPI (Open MPI or MPICH: `mpiexec` on
# PATH) and mpi4py (`pip install ipython-parallel-kernel[mpi]`).
#
# As shipped it works on this machine alone. The launcher adds, unless the environment
# already says otherwise: OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM) when run as root;
# oversubscribing (and yielding idle ranks) when there are more kernels than cores;
# and OMPI_MCA_btl=self,vader, so ranks talk over shared memory and open no TCP ports.

c = get_config()  # noqa: F821

c.Cluster.launcher = "mpi"
c.Cluster.n = 4

# The MPI launcher command, if `mpiexec` on PATH is not the one: mpirun, or a path.
# c.MPILauncher.mpiexec = "/opt/openmpi/bin/mpiexec"

# On a real cluster (several machines):
# - Name the machines, and let ranks talk over the network (a --mca on the command
#   line wins over the launcher's shared-memory-only default; pin the interface):
#     c.MPILauncher.mpi_args = [
#         "--hostfile", "/home/me/hosts",   # lines such as "node1 slots=8"
#         "--mca", "btl", "self,vader,tcp",
#         "--mca", "btl_tcp_if_include", "10.0.0.0/8",
#     ]
#   or once, on the command line: --mpi-args "--hostfile /home/me/hosts".
#   With MPICH: ["-f", "/home/me/hosts"].
# - Every machine needs the same Python (this one's path) with this package installed,
#   and a home directory shared with this one: each kernel writes its connection file
#   into this profile's security/ directory, where ipk-cluster reads it.
# - Clients reach each kernel at the address its connection file gives, which is the
#   address it listens on (127.0.0.1 by default: this machine only). Ranks on other
#   machines must listen where clients can reach them, and then should use TLS and an
#   allow list (see the `lan` profile for those settings):
#     c.Cluster.kernel_args = ["--ip", "0.0.0.0", "--allow", "10.0.0.0/8"]
#   A kernel listening on 0.0.0.0 also writes its machine's outward address into its
#   file ("location"): clients on other machines connect there, clients on the
#   kernel's own machine over loopback.
