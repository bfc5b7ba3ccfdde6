"""Interactive parallel computing: drive many Python kernels at once from IPython.

>>> from ipython_parallel_kernel import RemoteKernel
>>> rk = RemoteKernel(("127.0.0.1", 10105))
>>> rk.execute("a = 5")
>>> rk["b"] = 10
>>> rk["a"] + rk["b"]
15

The client classes are imported on first use, so a kernel process that imports this
package for its wire format never loads them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "AsyncResult",
    "ClusterResult",
    "CompositeError",
    "InteractiveCluster",
    "RemoteError",
    "RemoteKernel",
    "__version__",
]

_LAZY = {
    "RemoteKernel": "ipython_parallel_kernel.client.kernel",
    "AsyncResult": "ipython_parallel_kernel.client.kernel",
    "InteractiveCluster": "ipython_parallel_kernel.client.cluster",
    "ClusterResult": "ipython_parallel_kernel.client.cluster",
    "RemoteError": "ipython_parallel_kernel.errors",
    "CompositeError": "ipython_parallel_kernel.errors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
