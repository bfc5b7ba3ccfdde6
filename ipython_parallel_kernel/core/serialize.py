"""Python objects to bytes and back: cloudpickle with pickle protocol 5 out-of-band buffers.

cloudpickle ships what plain pickle cannot (lambdas, closures, functions and classes
defined interactively); plain pickle is tried first, as it is several times faster
(cloudpickle's hook runs in Python for every object), and its stream is kept unless
it failed or names ``__main__``: a function or class defined interactively, which
plain pickle would refer to by a name the other end does not have. Large contiguous
buffers, such as a numpy array's data, are kept out of the pickle stream and travel
as separate frame parts, so they are never copied into it and arrive in memory of
their own.

>>> payload, buffers = dumps({"a": 1})
>>> loads(payload, buffers)
{'a': 1}
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import cloudpickle

# Below this size a buffer stays inside the pickle stream: a separate frame part costs
# more than copying a few kilobytes.
OUT_OF_BAND_MIN = 64 * 1024


def dumps(obj: Any) -> tuple[bytes, list[memoryview]]:
    """Pickle ``obj``; return the pickle stream and its out-of-band buffers."""
    buffers: list[memoryview] = []

    def keep_large(buffer: pickle.PickleBuffer) -> bool:
        view = buffer.raw()
        if view.nbytes < OUT_OF_BAND_MIN:
            return True
        buffers.append(view)
        return False

    try:
        payload = pickle.dumps(obj, protocol=5, buffer_callback=keep_large)
    except Exception:
        payload = b"__main__"
    if b"__main__" in payload:
        buffers.clear()
        payload = cloudpickle.dumps(obj, protocol=5, buffer_callback=keep_large)
    return payload, buffers


def loads(payload: bytes | bytearray | memoryview, buffers: Sequence[memoryview] = ()) -> Any:
    """Rebuild an object from ``dumps`` output. Only ever call this on verified frames."""
    return pickle.loads(payload, buffers=buffers)
