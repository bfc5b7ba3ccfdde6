"""What the socket-free protocol tests share: a kernel service on Twisted's
``MemoryReactorClock``, connections on ``StringTransport``, frames and alerts as bytes.

Nothing here touches a socket or sleeps: time passes only when a test advances the
clock, so deadlines are tested to the second without waiting for them.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from ipython_parallel_kernel.core.wire import Channel
from ipython_parallel_kernel.kernel.engine import Engine
from ipython_parallel_kernel.kernel.server import KernelFactory, KernelProtocol, KernelService

KEY = "protocol-test-key"
KERNEL = ("127.0.0.1", 10105)


class TCPStringTransport(StringTransport):
    """Twisted's StringTransport with TCP's half-close, as the kernel's sockets have.

    ``write_closed`` tells a refusal's half-close; ``disconnected`` an abort.
    """

    write_closed = False

    def loseWriteConnection(self) -> None:
        self.write_closed = True


def kernel_service(**options: Any) -> KernelService:
    """A kernel service with a real (never served) engine on a fresh MemoryReactorClock."""
    return KernelService(Engine(), KEY, KERNEL, MemoryReactorClock(), **options)


def connect(
    service: KernelService, host: str = "127.0.0.1", port: int = 50000
) -> tuple[KernelProtocol, TCPStringTransport]:
    """A connection from ``host:port``, built by the kernel's factory as an accept would."""
    address = IPv4Address("TCP", host, port)
    protocol = KernelFactory(service).buildProtocol(address)
    transport = TCPStringTransport(peerAddress=address)
    protocol.makeConnection(transport)
    return protocol, transport


def hello(key: str = KEY) -> bytes:
    """The connect_request a client opens with."""
    channel = Channel(key)
    return b"".join(bytes(p) for p in channel.seal("connect_request", {"nonce": channel.nonce}))


def alert_sent(transport: StringTransport) -> str | None:
    """The text of the alert written to ``transport``, if one was."""
    decoder = Channel(b"").decoder()
    decoder.feed(transport.value())
    return decoder.alert
