"""Every exception this package raises, drawn as one tree so callers catch by layer.

::

    KernelError                     anything from ipython_parallel_kernel
    +-- WireError                   a frame that must be refused (connection closed)
    |   +-- FrameTooLarge           length prefix over the configured maximum
    |   +-- MalformedFrame          bad magic, bad header, truncated parts
    |   +-- UnsignedMessage         a frame without a signature
    |   +-- InvalidSignature        signature does not match the key
    |   +-- ReplayedMessage         a valid signature seen out of sequence
    +-- ConnectionFailed            could not reach or stay with a kernel
    |   +-- KeyNotFound             no key given and no connection file names the kernel
    |   +-- ConnectionRefused       the kernel refused us (allow/deny list, wrong key)
    |   +-- KernelDied              the connection to a kernel was lost
    |       +-- NoKernels           a view has no kernel left to run its work
    +-- KernelTimeout               a deadline passed before the kernel answered
    +-- RemoteError                 code raised an exception on the kernel
    |   +-- CompositeError          one request to several kernels failed on some of them
    +-- DependencyError             a task's dependencies (@require, @depend, after, follow)
    |   +-- UnmetDependency         not met on this kernel yet
    |       +-- ImpossibleDependency  can never be met (a dependency failed, no kernel can)
    |           +-- DependencyTimeout     not met within the load-balanced view's ``timeout``
    +-- TaskAborted                 a load-balanced task withdrawn (abort()) before it was sent
    +-- LaunchError                 kernels could not be started (ipk-cluster, %kernel start)
    |   +-- LaunchTimeout           a kernel was still starting at the deadline
    |   +-- ClusterRunning          a cluster of that id already runs in that profile
    +-- GuiUnavailable              a --gui toolkit cannot run here (what to install or set)

Arguments are checked at the API edge with Python's own exceptions: ``TypeError`` for
a value of the wrong type (a request field, as ``core.messages`` declares it),
``ValueError`` for a wrong value (an address, a cluster file, a target list). Inside a
kernel, ``EngineShutdown`` (a ``BaseException``, so user code cannot catch it) unwinds
the main thread when the kernel stops; it never reaches a client.

``RemoteError`` carries the remote exception's name, value and traceback text, and
renders as that traceback in IPython (``_render_traceback_``); raised by ``execute``,
its ``result`` is the command's record (output printed before the exception). ``CompositeError``
holds one exception per failed kernel (a RemoteError, or KernelDied for a kernel that
went away) with its target number and address, and the results of the others; its
``str()`` names the first few failed kernels in one line, as its rendering does. As in
ipyparallel, a CompositeError is a RemoteError, so ``except RemoteError`` catches a
failure whether the request went to one kernel or to several.

``ipython_parallel_kernel.error`` gives these classes ipyparallel's names
(``RemoteError``, ``CompositeError``, ``EngineError``, ``NoEnginesRegistered``,
``UnmetDependency``...), for code written against ``ipyparallel.error``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ClusterRunning",
    "CompositeError",
    "ConnectionFailed",
    "ConnectionRefused",
    "DependencyError",
    "DependencyTimeout",
    "FrameTooLarge",
    "GuiUnavailable",
    "ImpossibleDependency",
    "InvalidSignature",
    "KernelDied",
    "KernelError",
    "KernelTimeout",
    "KeyNotFound",
    "LaunchError",
    "LaunchTimeout",
    "MalformedFrame",
    "NoKernels",
    "RemoteError",
    "ReplayedMessage",
    "TaskAborted",
    "UnmetDependency",
    "UnsignedMessage",
    "WireError",
]


class KernelError(Exception):
    """Base of every exception raised by ipython_parallel_kernel."""


class WireError(KernelError):
    """A frame that must be refused; the connection that sent it is closed."""


class FrameTooLarge(WireError):
    """A frame whose announced length exceeds the configured maximum."""


class MalformedFrame(WireError):
    """A frame that does not follow the wire format."""


class UnsignedMessage(WireError):
    """A frame that carries no signature."""


class InvalidSignature(WireError):
    """A frame whose signature does not match the shared key."""


class ReplayedMessage(WireError):
    """A correctly signed frame that is not the next one expected on its connection."""


class ConnectionFailed(KernelError):
    """A kernel could not be reached, or the connection to it could not be kept."""


class KeyNotFound(ConnectionFailed):
    """No key was given and no connection file for the kernel's address was found."""


class ConnectionRefused(ConnectionFailed):
    """The kernel refused this client: not on its allow list, or a wrong key."""


class KernelDied(ConnectionFailed):
    """The connection to a kernel was lost while requests were outstanding."""


class NoKernels(KernelDied):
    """A view has no kernel left to run its work: every one of them has gone."""


class KernelTimeout(KernelError, TimeoutError):
    """A deadline passed before the kernel answered."""


class RemoteError(KernelError):
    """An exception raised by code running on a kernel.

    >>> try:
    ...     rk.execute("1/0")
    ... except RemoteError as e:
    ...     print(e.ename, e.evalue)
    ZeroDivisionError division by zero
    """

    def __init__(
        self,
        ename: str,
        evalue: str,
        traceback: list[str],
        kernel: str = "",
        number: int = 0,
        result: Any = None,
    ) -> None:
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback
        self.kernel = kernel
        self.number = number
        #: The record of the command that raised (its output, timings), where known.
        self.result = result
        super().__init__(f"{ename}: {evalue}")

    @classmethod
    def from_error(
        cls, error: dict, kernel: str = "", number: int = 0, result: Any = None
    ) -> RemoteError:
        """Build from the error record a kernel sends (``ename``, ``evalue``, ``traceback``)."""
        return cls(error["ename"], error["evalue"], error["traceback"], kernel, number, result)

    def render_traceback(self) -> str:
        """The remote traceback as text, headed by the kernel it came from."""
        where = f"[{self.kernel}] " if self.kernel else ""
        return f"{where}{''.join(self.traceback)}".rstrip("\n")

    def __str__(self) -> str:
        return f"{self.ename}: {self.evalue}\n\nRemote traceback:\n{self.render_traceback()}"

    def _render_traceback_(self) -> list[str]:
        return self.render_traceback().splitlines()


class CompositeError(RemoteError):
    """Failures of one request sent to several kernels, listed by target.

    ``errors`` holds ``(target, kernel, exception)`` for each failure, ``results`` the
    value of every target in order (the exception in place of a failed one). As a
    RemoteError its ``ename`` is ``"CompositeError"``, its ``evalue`` the one-line
    summary and its ``traceback`` every failure rendered.

    >>> try:
    ...     ic.execute("1/0", targets=[0, 2])
    ... except CompositeError as e:
    ...     e.raise_exception(0)  # re-raise the first failure on its own
    """

    #: Failures shown with their whole traceback; the rest are summarised.
    SHOWN_IN_FULL = 3

    def __init__(
        self, what: str, errors: list[tuple[int, str, BaseException]], results: list
    ) -> None:
        self.what = what
        self.errors = errors
        self.results = results
        super().__init__("CompositeError", self._summary(), [f"{self.render_traceback()}\n"])

    def raise_exception(self, index: int = 0) -> None:
        """Raise the ``index``-th failure (in target order) by itself."""
        raise self.errors[index][2]

    def render_traceback(self) -> str:
        """Every failure headed ``[target:verb] address``, the first few in full."""
        lines = [f"{self._count()}:"]
        for target, kernel, error in self.errors[: self.SHOWN_IN_FULL]:
            lines.append(f"[{target}:{self.what}] {kernel}")
            if isinstance(error, RemoteError):
                lines.append("".join(error.traceback).rstrip("\n"))
            else:
                lines.append(f"{type(error).__name__}: {error}")
        hidden = self.errors[self.SHOWN_IN_FULL :]
        if hidden:
            lines.append(f"... and {len(hidden)} more:")
            for target, kernel, error in hidden:
                lines.append(f"[{target}:{self.what}] {kernel}: {_one_line(error)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self._summary()

    def _count(self) -> str:
        return f"{self.what} failed on {len(self.errors)} of {len(self.results)} kernels"

    def _summary(self) -> str:
        """One line naming each failed kernel, the first few, as ``render_traceback`` does."""
        named = [
            f"[{target}:{self.what}] {kernel}: {_one_line(error)}"
            for target, kernel, error in self.errors[: self.SHOWN_IN_FULL]
        ]
        hidden = len(self.errors) - len(named)
        if hidden:
            named.append(f"... and {hidden} more")
        return f"{self._count()}: {'; '.join(named)}"

    def _render_traceback_(self) -> list[str]:
        return self.render_traceback().splitlines()


def _one_line(error: BaseException) -> str:
    if isinstance(error, RemoteError):
        text = f"{error.ename}: {error.evalue}"
    else:
        text = f"{type(error).__name__}: {error}"
    return text.splitlines()[0]


class DependencyError(KernelError):
    """A task's dependencies (``@require``, ``@depend``, ``after``, ``follow``) stand in
    its way."""


class UnmetDependency(DependencyError):
    """A task's dependencies are not met on this kernel yet: it waits, or runs elsewhere."""


class ImpossibleDependency(UnmetDependency):
    """A task's dependencies can never be met: one it waits for failed, or no kernel of
    the view can satisfy them. As in ipyparallel, an ``UnmetDependency`` too."""


class LaunchError(KernelError):
    """Kernels could not be started, or did not become ready in time."""


class LaunchTimeout(LaunchError):
    """A kernel was still starting when the deadline passed."""


class ClusterRunning(LaunchError):
    """A cluster with that id already runs in that profile; the message says how to stop it."""


class GuiUnavailable(KernelError):
    """The toolkit cannot run here; the message says what to install or set."""


class TaskAborted(KernelError):
    """A load-balanced task withdrawn (``abort()``) before it was sent to a kernel."""


class DependencyTimeout(ImpossibleDependency):
    """A task's dependencies were not met within the view's ``timeout`` seconds."""
