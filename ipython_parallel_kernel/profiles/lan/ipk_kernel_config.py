# A kernel for a local network you share with others: TLS on, listening on every
# interface, clients accepted from the private ranges only.
#
# Put a certificate and its key in this profile's security/ directory first, e.g.
#   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
#       -subj /CN=$(hostname) -keyout kernel-key.pem -out kernel-cert.pem
# Clients read the certificate from the kernel's connection file and trust only it.
import os

c = get_config()  # noqa: F821

security = os.path.join(os.path.dirname(os.path.abspath(__file__)), "security")
c.KernelApp.ip = "0.0.0.0"
c.KernelApp.allow = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
c.KernelApp.tls_cert = os.path.join(security, "kernel-cert.pem")
c.KernelApp.tls_key = os.path.join(security, "kernel-key.pem")
