# Kernels that `ipk-cluster start --profile ssh` starts on each host load this file
# there (installed into that host's profile on first use). ipk-cluster already gives
# each one --ip (the address the client reaches the host at) and --allow (the
# client's address); add what every kernel of the cluster should have, e.g.
# c.KernelApp.sign_buffers = True   # integrity of array buffers without TLS
c = get_config()  # noqa: F821
