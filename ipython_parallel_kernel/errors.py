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
    +-- KernelTimeout               a deadline passed before the kernel answered
    +-- RemoteError                 code raised an exception on the kernel

``RemoteError`` carries the remote exception's name, value and traceback text, and
renders as that traceback in IPython (``_render_traceback_``).
"""

from __future__ import annotations

__all__ = [
    "ConnectionFailed",
    "ConnectionRefused",
    "FrameTooLarge",
    "InvalidSignature",
    "KernelDied",
    "KernelError",
    "KernelTimeout",
    "KeyNotFound",
    "MalformedFrame",
    "RemoteError",
    "ReplayedMessage",
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
        self, ename: str, evalue: str, traceback: list[str], kernel: str = "", number: int = 0
    ) -> None:
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback
        self.kernel = kernel
        self.number = number
        super().__init__(f"{ename}: {evalue}")

    @classmethod
    def from_error(cls, error: dict, kernel: str = "", number: int = 0) -> RemoteError:
        """Build from the error record a kernel sends (``ename``, ``evalue``, ``traceback``)."""
        return cls(error["ename"], error["evalue"], error["traceback"], kernel, number)

    def render_traceback(self) -> str:
        """The remote traceback as text, headed by the kernel it came from."""
        where = f"[{self.kernel}] " if self.kernel else ""
        return f"{where}{''.join(self.traceback)}".rstrip("\n")

    def __str__(self) -> str:
        return f"{self.ename}: {self.evalue}\n\nRemote traceback:\n{self.render_traceback()}"

    def _render_traceback_(self) -> list[str]:
        return self.render_traceback().splitlines()
