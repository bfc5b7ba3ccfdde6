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
    "BroadcastView",
    "Client",
    "Cluster",
    "ClusterResult",
    "CompositeError",
    "Dependency",
    "DirectView",
    "InteractiveCluster",
    "LoadBalancedView",
    "Reference",
    "RemoteError",
    "RemoteKernel",
    "ResultGatherer",
    "__version__",
    "depend",
    "error",
    "interactive",
    "register_joblib_backend",
    "require",
]

_LAZY = {
    "RemoteKernel": "ipython_parallel_kernel.client.kernel",
    "AsyncResult": "ipython_parallel_kernel.client.kernel",
    "InteractiveCluster": "ipython_parallel_kernel.client.cluster",
    "Client": "ipython_parallel_kernel.client.client",
    "Cluster": "ipython_parallel_kernel.launchers.cluster",
    "DirectView": "ipython_parallel_kernel.client.views",
    "BroadcastView": "ipython_parallel_kernel.client.views",
    "LoadBalancedView": "ipython_parallel_kernel.client.balancer",
    "ClusterResult": "ipython_parallel_kernel.client.cluster",
    "RemoteError": "ipython_parallel_kernel.errors",
    "CompositeError": "ipython_parallel_kernel.errors",
    "ResultGatherer": "ipython_parallel_kernel.client.gatherer",
    "Reference": "ipython_parallel_kernel.core.references",
    "interactive": "ipython_parallel_kernel.core.references",
    "require": "ipython_parallel_kernel.core.requirements",
    "depend": "ipython_parallel_kernel.core.requirements",
    "Dependency": "ipython_parallel_kernel.client.dependencies",
    "register_joblib_backend": "ipython_parallel_kernel.client.bridges",
}


#: Modules reached as attributes (``ipp.error.RemoteError``), as ipyparallel's are.
_SUBMODULES = frozenset({"error"})


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext ipython_parallel_kernel``: register %kernel, %px, %%px, %autopx, %pxresult."""
    from .magics import KernelMagics

    magics = KernelMagics(ipython)
    ipython.register_magics(magics)
    ipython.magics_manager.register_alias("result", "pxresult")


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext``: stop what the magics started, and remove them."""
    from .magics import KernelMagics

    for magics in [m for m in ipython.configurables if isinstance(m, KernelMagics)]:
        owners = [magics, *magics.suffixed.values()]
        magics.close()
        ipython.configurables.remove(magics)
        for kind in ("line", "cell"):
            for name in list(ipython.magics_manager.magics[kind]):
                owner = getattr(ipython.magics_manager.magics[kind][name], "__self__", None)
                if any(owner is o for o in owners):
                    del ipython.magics_manager.magics[kind][name]
    for kind in ("line",):
        ipython.magics_manager.magics[kind].pop("result", None)


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
