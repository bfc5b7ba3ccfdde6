"""The one Twisted reactor of a client process, running in a daemon thread.

Thread rules: every RemoteKernel of the process shares this reactor. Twisted calls
(connecting, protocol callbacks, reply dispatch) happen on its thread; the caller's
thread (IPython's, usually) reaches it only through ``call``, which has a deadline,
or through the protocol's thread-safe ``send``. Replies resolve futures on the
reactor thread, which wakes exactly the caller waiting for them; a caller that waits
for its one outstanding reply reads it on its own thread instead (see
``core.transport``), so the reactor thread is not woken for it at all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure

from ..core.reactors import private_reactor
from ..errors import KernelTimeout

_lock = threading.Lock()
_reactor: Any = None


def get_reactor() -> Any:
    """The clients' reactor, running in its own daemon thread from the first call on.

    Twisted's global reactor, unless something else already runs that one: in a
    kernel, the global reactor is the kernel's (in a GUI kernel, the toolkit's loop, on
    the very thread that would then wait for replies), so clients there get a private
    reactor of their own.
    """
    global _reactor
    with _lock:
        if _reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor: Any = private_reactor() if global_reactor.running else global_reactor
            threading.Thread(
                target=reactor.run,
                kwargs={"installSignalHandlers": False},
                name="ipk-client-reactor",
                daemon=True,
            ).start()
            _reactor = reactor
    return _reactor


def call(func: Callable[..., Any], *args: Any, timeout: float | None, what: str) -> Any:
    """Run ``func(*args)`` on the reactor thread and wait (at most ``timeout`` s) for its
    result; a Deferred is waited for too. KernelTimeout names ``what`` took too long.
    """
    reactor = get_reactor()
    future: Future[Any] = Future()

    def run() -> None:
        d: Deferred = maybeDeferred(func, *args)

        def ok(value: Any) -> None:
            if not future.done():
                future.set_result(value)

        def failed(failure: Failure) -> None:
            if not future.done():
                future.set_exception(failure.value)

        d.addCallbacks(ok, failed)

    reactor.callFromThread(run)
    try:
        return future.result(timeout)
    except FutureTimeout:
        raise KernelTimeout(f"{what} took longer than {timeout} s") from None
