# A cluster for a local network you share with others: each kernel serves TLS on
# every interface and accepts clients from the private ranges only (this profile's
# ipk_kernel_config.py says how; make its certificate first, as that file shows).
#
#   ipk-cluster start -n 4 --profile lan
#
# Clients on other machines connect with the cluster file, which holds the kernels'
# keys and certificate: copy it over a channel you trust (scp), then
#   rc = ipp.Client("ipk-cluster-default.json")
c = get_config()  # noqa: F821

c.Cluster.n = 4
# Narrow who may connect to the kernels of this cluster, e.g. one lab's subnet:
# c.Cluster.kernel_args = ["--allow", "192.168.10.0/24"]
