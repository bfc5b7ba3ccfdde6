"""``publish_data``: code running on a kernel sends a dict to the client that asked for it.

While a request runs (an ``apply``, or code run by ``execute`` or ``%px``), each call
sends the dict, pickled (numpy arrays travel as out-of-band buffers), to that
request's client as a ``data_pub`` notice; the client merges every dict published so
far into the request's result, ``ar.data``, as they arrive, before the reply::

    # on the kernel, in the function the client applied:
    from ipython_parallel_kernel.datapub import publish_data

    for i in range(100):
        step(i)
        publish_data({"progress": i})

The server sets the publisher of the running request (``publishing``); only one
request runs at a time, so a module-level slot is enough, and threads that code starts
publish for its request too while it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: Sends a dict to the client of the running request; None between requests.
Publisher = Callable[[dict[Any, Any]], None]

_publisher: Publisher | None = None


@contextmanager
def publishing(publisher: Publisher) -> Iterator[None]:
    """Within the block, ``publish_data`` calls ``publisher`` (the engine thread, around
    one request's job)."""
    global _publisher
    outer, _publisher = _publisher, publisher
    try:
        yield
    finally:
        _publisher = outer


def publish_data(data: dict[Any, Any]) -> None:
    """Send ``data`` (a dict, think of it as a namespace) to the client of the request
    now running; it updates that request's ``ar.data``.

    >>> publish_data({"progress": 0.5, "partial": partial_result})
    """
    if not isinstance(data, dict):
        raise TypeError(
            f"publish_data() takes a dict of names and values, not {type(data).__name__}: "
            "publish_data({'progress': i})"
        )
    publisher = _publisher
    if publisher is None:
        raise RuntimeError(
            "publish_data() sends data to the client of a running request: call it in "
            "code a client runs on a kernel (apply, execute, %px), while it runs"
        )
    publisher(data)
