# Kernels as the tasks of a Slurm job:
#
#     ipk-cluster start -n 8 --profile slurm [--partition P] [--time T] [--account A] [--mpi]
#     ipk-cluster list --profile slurm      # the job id of each kernel
#     ipk-cluster stop --profile slurm      # scancel, then checks every kernel is gone
#
# `start` submits one job (sbatch) that runs one kernel per task (srun), waits until
# each kernel has written its connection file into this profile's security/ directory,
# and shows the job's state meanwhile (PENDING and why, RUNNING). A job that sbatch
# refuses, or that fails before its kernels are ready, ends it at once with the
# scheduler's words or the last line of the kernel's log (this profile's log/).
#
# As shipped it works where this machine is the cluster's node, or shares its home
# directory and Python with the nodes. For a real cluster, change what is marked below.

c = get_config()  # noqa: F821

c.Cluster.launcher = "slurm"
# A job may wait in the queue: give it this long to start (seconds) before giving up.
c.Cluster.timeout = 300.0

# Kernels listen on 127.0.0.1 by default, which a client on another node cannot reach.
# On a real cluster, listen on every interface and accept the cluster's network, e.g.:
# c.Cluster.kernel_args = ["--ip", "0.0.0.0", "--allow", "10.0.0.0/8"]

# Where the job goes and what it may use (the same as --partition, --time, --account).
# c.SlurmLauncher.partition = "short"
# c.SlurmLauncher.time = "1:00:00"
# c.SlurmLauncher.account = "my-lab"
# More #SBATCH options, one per line of the job script:
# c.SlurmLauncher.extra_directives = ["--mem-per-cpu=2G", "--cpus-per-task=1"]

# The Python the nodes run the kernels with, if it is not this one at the same path:
# c.SlurmLauncher.kernel_command = [
#     "/shared/envs/ipk/bin/python", "-m", "ipython_parallel_kernel.apps.kernel",
# ]

# --mpi, always: the kernels become the ranks of one MPI program (srun --mpi=pmix).
# c.SlurmLauncher.mpi = True

# The whole job script, for what a site needs around the kernels (modules, a conda
# environment). Keep {directives}, the ipk_kernel function and {launch}:
# c.SlurmLauncher.job_template = """#!/bin/bash
# {directives}
# module load python/3.11
# ipk_kernel() {{
#     IPK_INDEX=$1
#     exec {kernel}
# }}
# export -f ipk_kernel
# {launch}
# """
