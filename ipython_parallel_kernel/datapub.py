"""Publish data from a kernel to the client waiting on the running request, as
``ipyparallel.datapub`` does::

    from ipython_parallel_kernel.datapub import publish_data

    publish_data({"progress": i})  # on the kernel; ar.data on the client

The implementation lives with the kernel (``kernel.datapub``); importing this loads no
client code.
"""

from __future__ import annotations

from .kernel.datapub import publish_data

__all__ = ["publish_data"]
