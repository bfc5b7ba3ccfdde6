"""Python objects to bytes and back: a pickler with pickle protocol 5 out-of-band buffers.

Three picklers can write a payload, chosen per connection (``DirectView.use_pickle``,
``use_cloudpickle``, ``use_dill``), never by patching anything process-wide:

- ``cloudpickle``, the default, ships what plain pickle cannot: lambdas, closures,
  functions and classes defined interactively. Plain pickle is tried first, as it is
  several times faster (cloudpickle's hook runs in Python for every object), and its
  stream kept unless it failed or names ``__main__``: something defined interactively,
  which plain pickle would refer to by a name the other end does not have.
- ``pickle``, the standard library's: functions and classes by reference only (they
  must be importable where they are loaded), and the least work per object.
- ``dill`` ships still more (locks, for one) and functions with only the globals they
  use; it keeps numpy arrays inside the pickle stream, out-of-band buffers being
  pickle's own.

Whichever wrote it, a payload is read with ``pickle.loads``: cloudpickle's and dill's
pickles name the helpers that rebuild their objects, so they load wherever that
library is importable. Large contiguous buffers, such as a numpy array's data, are
kept out of the pickle stream and travel as separate frame parts, so they are never
copied into it and arrive in memory of their own.

>>> payload, buffers = dumps({"a": 1})
>>> loads(payload, buffers)
{'a': 1}
>>> loads(*dumps(lambda: 42, "dill"))()
42
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable, Sequence
from typing import Any

import cloudpickle

# Below this size a buffer stays inside the pickle stream: a separate frame part costs
# more than copying a few kilobytes.
OUT_OF_BAND_MIN = 64 * 1024

#: The picklers a connection can send with, by name.
PICKLERS = ("pickle", "cloudpickle", "dill")
#: What every connection sends with unless told otherwise.
DEFAULT_PICKLER = "cloudpickle"

_DUMPS: dict[str, Callable[..., bytes]] = {
    "pickle": pickle.dumps,
    "cloudpickle": cloudpickle.dumps,
}


def require_pickler(name: str) -> None:
    """Check that pickler ``name`` works here: ImportError saying what to install if it
    is missing, ValueError for a name that is no pickler.

    ``use_dill()`` calls it on the client, and applies it on each kernel, so that a
    kernel without dill says so at once.
    """
    _writer(name)


def _writer(name: str) -> Callable[..., bytes]:
    """The ``dumps`` of pickler ``name``, imported on first use (as ``require_pickler``)."""
    dumps = _DUMPS.get(name)
    if dumps is not None:
        return dumps
    if name != "dill":
        raise ValueError(f"no pickler {name!r}: use one of {', '.join(PICKLERS)}")
    try:
        import dill
    except ImportError:
        raise ImportError(
            "use_dill() needs dill, which this Python cannot import: pip install dill "
            "(on the client and on every kernel)"
        ) from None
    # recurse: a function's pickle holds the globals it uses, not all of its module's.
    dumps = _DUMPS["dill"] = functools.partial(dill.dumps, recurse=True)
    return dumps


def dumps(
    obj: Any, pickler: str = DEFAULT_PICKLER, mentions: int = 0
) -> tuple[bytes, list[memoryview]]:
    """Pickle ``obj`` with ``pickler``; return the pickle stream and its out-of-band buffers.

    ``mentions``: how many times pickles that ``obj`` holds as bytes (a ``Chunk``'s
    function) name ``__main__``; those do not make the default pickler fall back to
    cloudpickle.
    """
    buffers: list[memoryview] = []

    def keep_large(buffer: pickle.PickleBuffer) -> bool:
        view = buffer.raw()
        if view.nbytes < OUT_OF_BAND_MIN:
            return True
        buffers.append(view)
        return False

    if pickler == DEFAULT_PICKLER:
        try:
            payload = pickle.dumps(obj, protocol=5, buffer_callback=keep_large)
        except Exception:
            pass
        else:
            if payload.count(b"__main__") <= mentions:
                return payload, buffers
        buffers.clear()
    write = _DUMPS.get(pickler) or _writer(pickler)
    try:
        payload = write(obj, protocol=5, buffer_callback=keep_large)
    except (pickle.PicklingError, AttributeError) as e:
        if pickler != "pickle":
            raise
        raise pickle.PicklingError(
            f"{e}: plain pickle (use_pickle()) takes functions and classes only by "
            "reference; use_cloudpickle() or use_dill() ship those defined here"
        ) from e
    return payload, buffers


def loads(payload: bytes | bytearray | memoryview, buffers: Sequence[memoryview] = ()) -> Any:
    """Rebuild an object from ``dumps`` output. Only ever call this on verified frames."""
    return pickle.loads(payload, buffers=buffers)
